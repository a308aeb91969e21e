/* 事件 events page: a grid worker's phone form (category, description, the phone's position or a tap on
   the map) that files POST /api/events; the event list with filters and the next moves the account may
   make (POST /api/events/{id}/transition with the version it shows); open events clustered by grid
   (GET /api/events/geojson). Position: navigator.geolocation gives WGS84, sent as is (CGCS2000 is the
   same at this precision). Vendored Leaflet, no CDN; requests through web/common/gisgov.js. */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var S = { catalog: null, pos: null, marker: null, offset: 0, limit: 20, clusters: null };

  function when(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString("zh-CN", { hour12: false, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit" });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function say(box, text, error) {
    box = $(box);
    box.textContent = text;
    box.classList.toggle("error", !!error);
    box.hidden = !text;
  }

  // ---- tabs ---------------------------------------------------------------------------------------
  function show(tab) {
    ["report", "list", "map"].forEach(function (t) {
      $("tab-" + t).setAttribute("aria-selected", t === tab ? "true" : "false");
      $("pane-" + t).hidden = t !== tab;
    });
    $("map-hint").hidden = tab !== "report";
    if (tab === "list") loadList(true);
    if (tab === "map") loadClusters();
    setTimeout(function () { map.invalidateSize(); }, 0);
  }
  document.querySelectorAll(".tabs button").forEach(function (b) {
    b.addEventListener("click", function () { show(b.dataset.tab); });
  });

  // ---- map ----------------------------------------------------------------------------------------
  var map = L.map("map", { zoomControl: true, attributionControl: true }).setView([31.8, 117.2], 13);
  var gridLayer = L.geoJSON(null, { style: { color: "#2e7d32", weight: 1.2, fillOpacity: 0.06 }, interactive: false }).addTo(map);
  var clusterLayer = L.layerGroup().addTo(map);

  function setPosition(lat, lon, how) {
    S.pos = { lat: lat, lon: lon };
    if (!S.marker) S.marker = L.marker([lat, lon], { keyboard: false }).addTo(map);
    else S.marker.setLatLng([lat, lon]);
    $("position").textContent = lon.toFixed(6) + ", " + lat.toFixed(6) + "（" + how + "）";
    updateSubmit();
  }
  map.on("click", function (e) { setPosition(e.latlng.lat, e.latlng.lng, "地图点选 tapped"); });
  // once the worker has touched the map, the grid outlines arriving later must not move it
  ["mousedown", "touchstart", "wheel"].forEach(function (t) {
    $("map").addEventListener(t, function () { S.userMoved = true; }, { passive: true });
  });

  $("locate").addEventListener("click", function () {
    if (!navigator.geolocation) { say("report-msg", "此设备无法定位，请在地图上点选 no location on this device: tap the map", true); return; }
    $("locate").disabled = true;
    navigator.geolocation.getCurrentPosition(function (p) {
      $("locate").disabled = false;
      setPosition(p.coords.latitude, p.coords.longitude, "定位 GPS ±" + Math.round(p.coords.accuracy) + " m");
      map.setView([p.coords.latitude, p.coords.longitude], Math.max(map.getZoom(), 16));
    }, function (err) {
      $("locate").disabled = false;
      say("report-msg", "定位失败，请在地图上点选 location failed, tap the map: " + err.message, true);
    }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  });

  function loadGrids() {
    return gisgov.api("/api/layers/grid?limit=2000").then(function (fc) {
      gridLayer.addData(fc);
      var b = gridLayer.getBounds();
      if (b.isValid() && !S.pos && !S.userMoved) map.fitBounds(b, { padding: [10, 10] });
    }).catch(function () { /* no grid layer for this account: the map stays on its default view */ })
      .then(function () { document.body.dataset.grids = "1"; });
  }

  // ---- report form ------------------------------------------------------------------------------
  function updateSubmit() {
    $("submit").disabled = !(S.catalog && S.catalog.can_report && S.pos && $("category").value &&
      $("description").value.trim());
  }
  $("description").addEventListener("input", updateSubmit);
  $("category").addEventListener("change", updateSubmit);

  $("report-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if ($("submit").disabled) return;
    $("submit").disabled = true;
    gisgov.api("/api/events", { method: "POST", body: {
      lon: S.pos.lon, lat: S.pos.lat, crs: "wgs84", category: $("category").value, description: $("description").value
    } }).then(function (e) {
      var files = Array.prototype.slice.call($("photos").files || [], 0, 6);
      return uploadPhotos(e.id, files).then(function (n) {
        say("report-msg", "已上报 reported #" + e.id + " · 网格 grid " + (e.grid_code || "—") + " · 期限 deadline " +
          when(e.deadline) + (files.length ? " · 照片 photos " + n + "/" + files.length : ""));
        return e;
      });
    }).then(function (e) {
      document.body.dataset.lastEvent = String(e.id);
      $("photos").value = "";
      $("description").value = "";
      updateSubmit();
      loadClusters();
    }).catch(function (err) {
      say("report-msg", err.message, true);
      document.body.dataset.reportError = err.message || String(err);
      updateSubmit();
    });
  });

  // ---- photos: scaled down on the phone (long side 1600 px, JPEG) before sending; the server checks
  // them again and drops every metadata field (GPS position, device) --------------------------------
  function shrink(file) {
    return new Promise(function (resolve) {
      var img = new Image();
      var url = URL.createObjectURL(file);
      // a phone that cannot decode the picture in time sends it as it is: the server scales it
      var late = setTimeout(function () { resolve(file); }, 15000);
      img.onload = function () {
        clearTimeout(late);
        var k = Math.min(1, 1600 / Math.max(img.naturalWidth, img.naturalHeight));
        var c = document.createElement("canvas");
        c.width = Math.round(img.naturalWidth * k); c.height = Math.round(img.naturalHeight * k);
        c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
        URL.revokeObjectURL(url);
        c.toBlob(function (b) { resolve(b || file); }, "image/jpeg", 0.85);
      };
      img.onerror = function () { clearTimeout(late); URL.revokeObjectURL(url); resolve(file); };  // the server will say why
      img.src = url;
    });
  }
  function uploadPhotos(id, files) {
    var done = 0;
    return files.reduce(function (chain, file) {
      return chain.then(function () { return shrink(file); }).then(function (blob) {
        var fd = new FormData();
        fd.append("file", blob, (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg");
        return window.fetch("/api/events/" + id + "/photos", { method: "POST", credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRF-Token": gisgov.csrf() }, body: fd });
      }).then(function (r) {
        if (r.ok) done += 1;
        else return r.json().catch(function () { return {}; }).then(function (b) {
          say("report-msg", "照片未上传 photo not uploaded: " + (b.detail || r.status), true);
        });
      });
    }, Promise.resolve()).then(function () { return done; });
  }

  // ---- list -------------------------------------------------------------------------------------
  function label(code, kind) {
    var items = S.catalog ? S.catalog[kind] : [];
    for (var i = 0; i < items.length; i++) if (items[i].code === code) return items[i].zh || items[i].label;
    return code;
  }
  function query() {
    var q = new URLSearchParams();
    if ($("f-status").value) q.set("status", $("f-status").value);
    if ($("f-category").value) q.set("category", $("f-category").value);
    if ($("f-overdue").checked) q.set("overdue", "true");
    if ($("f-from").value) q.set("from", $("f-from").value);
    if ($("f-to").value) q.set("to", $("f-to").value);
    q.set("limit", S.limit);
    q.set("offset", S.offset);
    return q.toString();
  }
  function loadList(reset) {
    if (!S.catalog) return;
    if (!S.catalog.can_list) {
      say("list-msg", "本角色只能查看统计，不能查看事件明细 this role sees aggregates only, not event details", true);
      return;
    }
    if (reset) { S.offset = 0; $("event-list").textContent = ""; }
    gisgov.api("/api/events?" + query()).then(function (page) {
      say("list-msg", "共 " + page.total + " 件 events: " + page.total);
      page.items.forEach(function (e) { $("event-list").appendChild(card(e)); });
      S.offset += page.items.length;
      $("more").hidden = S.offset >= page.total;
    }).catch(function (err) { say("list-msg", err.message, true); });
  }
  $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); loadList(true); });
  $("more").addEventListener("click", function () { loadList(false); });

  function card(e) {
    var li = el("li", e.overdue ? "overdue" : "");
    li.dataset.id = e.id;
    li.dataset.status = e.status;
    var head = el("div", "head");
    head.appendChild(el("b", "", "#" + e.id + " " + (e.category_label || e.category)));
    head.appendChild(el("span", "status", e.status_label + (e.overdue ? " · 超期" : "")));
    li.appendChild(head);
    li.appendChild(el("div", "desc", e.description));
    li.appendChild(el("div", "meta", "网格 " + (e.grid_code || "—") + " · 上报 " + when(e.reported_at) +
      " · 期限 " + when(e.deadline) + (e.department ? " · " + (e.department_label || e.department) : "") +
      (e.reporter ? " · " + e.reporter : "")));
    var acts = el("div", "actions");
    (e.next || []).forEach(function (to) {
      var b = el("button", "", label(to, "states"));
      b.type = "button";
      b.dataset.to = to;
      b.addEventListener("click", function () { moveForm(li, e, to); });
      acts.appendChild(b);
    });
    li.appendChild(acts);
    return li;
  }

  function moveForm(li, e, to) {
    var old = li.querySelector("form");
    if (old) old.remove();
    var f = el("form", "move");
    var dep = null;
    if (to === "dispatched") {
      dep = el("select");
      dep.setAttribute("aria-label", "处置部门 department");
      S.catalog.departments.forEach(function (d) {
        var o = el("option", "", d.zh + " " + d.en);
        o.value = d.code;
        dep.appendChild(o);
      });
      f.appendChild(dep);
    }
    var note = el("textarea");
    note.rows = 2;
    note.placeholder = "说明 note" + (["rejected", "escalated_community", "escalated_street"].indexOf(to) >= 0 ? "（必填 required）" : "");
    f.appendChild(note);
    var ok = el("button", "primary", "确认 " + label(to, "states") + " Confirm");
    ok.type = "submit";
    f.appendChild(ok);
    var msg = el("div", "msg");
    msg.hidden = true;
    f.appendChild(msg);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      ok.disabled = true;
      gisgov.api("/api/events/" + e.id + "/transition", { method: "POST", body: {
        to: to, version: e.version, note: note.value || null, department: dep ? dep.value : null
      } }).then(function (n) {
        li.replaceWith(card(n));
        loadClusters();
      }).catch(function (err) {
        ok.disabled = false;
        msg.textContent = err.message + (err.status === 409 ? "（请刷新列表 reload the list）" : "");
        msg.className = "msg error";
        msg.hidden = false;
      });
    });
    li.appendChild(f);
  }

  // ---- clusters ---------------------------------------------------------------------------------
  function loadClusters() {
    return gisgov.api("/api/events/geojson").then(function (fc) {
      S.clusters = fc;
      clusterLayer.clearLayers();
      $("cluster-list").textContent = "";
      fc.features.forEach(function (f) {
        var p = f.properties, c = f.geometry.coordinates;
        var size = 22 + Math.min(24, Math.round(Math.sqrt(p.open) * 4));
        var icon = L.divIcon({ className: "", iconSize: [size, size],
          html: '<div class="cluster' + (p.overdue ? " late" : "") + '" data-code="' + p.code + '" style="width:' + size +
            "px;height:" + size + 'px">' + p.open + "</div>" });
        var tip = (p.name || p.code) + "：未结 " + p.open + "，超期 " + p.overdue + " / open " + p.open + ", overdue " + p.overdue;
        L.marker([c[1], c[0]], { icon: icon, keyboard: false, title: tip }).bindTooltip(tip).addTo(clusterLayer);
        var li = el("li");
        li.dataset.code = p.code;
        li.dataset.open = p.open;
        li.appendChild(el("span", "", (p.name || p.code) + " " + p.code));
        li.appendChild(el("b", "", p.open + (p.overdue ? "（超期 " + p.overdue + "）" : "")));
        $("cluster-list").appendChild(li);
      });
      document.body.dataset.openEvents = String(fc.total_open);
    }).catch(function () { /* shown as an empty layer */ });
  }

  // ---- start ------------------------------------------------------------------------------------
  gisgov.whoami("who");
  gisgov.bindSignOut("logout");
  gisgov.api("/api/events/catalog").then(function (cat) {
    S.catalog = cat;
    cat.categories.forEach(function (c) {
      var o = el("option", "", c.zh + " " + c.en);
      o.value = c.code;
      $("category").appendChild(o);
      $("f-category").appendChild(o.cloneNode(true));
    });
    cat.states.forEach(function (s) {
      var o = el("option", "", s.label + " " + s.code);
      o.value = s.code;
      $("f-status").appendChild(o);
    });
    if (!cat.can_report) {
      say("report-msg", "本角色不能上报事件 this role (" + cat.role_label + ") cannot report events", true);
    }
    updateSubmit();
    document.body.dataset.ready = "1";
  }).catch(function (err) { say("report-msg", err.message, true); });
  loadGrids().then(loadClusters);

  window.eventsPage = { map: map, state: S, setPosition: setPosition, loadList: loadList };
})();

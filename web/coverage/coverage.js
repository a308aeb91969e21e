/* 便民服务圈 the coverage page: pick a service category, circle and profile (kept in the URL hash); see the
 * service area, gaps, buildings by walking distance, the category's facilities, community and grid outlines
 * with names, suggested sites (with the community they fall in and the households they would add), a
 * what-if mode (add / move / remove a facility, nothing stored) and figures per community (sortable).
 * Data: /api/coverage/catalog, /areas, /gaps, /buildings, /facilities, /communities (cached per computation
 * run on the server), /site, /whatif; /api/layers/community and /api/layers/grid for the outlines.
 * Page state for tests and tools: body[data-catalog], body[data-outlines], body[data-layers] (the
 * "category|circle|profile" drawn), body[data-sites], body[data-whatif], table[data-sort]. */
(function (window, document) {
  "use strict";

  var gisgov = window.gisgov, L = window.L;
  var $ = function (id) { return document.getElementById(id); };
  var body = document.body;
  var PROFILE_LABEL = { standard: ["标准", "standard"], elderly: ["老年人", "elderly"] };
  var CLASS_STYLE = {  // sequential, darker = farther (single hue: readable with any colour vision)
    within: { fill: "#c6dbef", line: "#6b8fb5", zh: "圈内", en: "within" },
    near: { fill: "#6baed6", line: "#2f6f9f", zh: "稍远（≤1.5倍）", en: "near (≤ 1.5×)" },
    beyond: { fill: "#08306b", line: "#021a3d", zh: "圈外", en: "beyond" }
  };
  var AREA = { color: "#1b7f5b", weight: 1, fillColor: "#41ae76", fillOpacity: 0.16 };
  var GAP = { color: "#d95f02", weight: 2, dashArray: "5 4", fillColor: "#fdae6b", fillOpacity: 0.28 };
  var TOLERANCE_M = 2;  // display simplification of areas and gaps

  var state = { category: null, circle: "c15", profile: "standard" };
  var catalog = null, seq = 0, sitesSeq = 0, canAnalyse = true;
  var outlines = { communities: {}, bounds: null };
  var rows = [], sortKey = "share_households", sortAsc = true;
  var whatifOn = false, whatifMarker = null, whatifSeq = 0;

  // -- map and layers --------------------------------------------------------------------------------------
  var map = L.map("map", { zoomControl: true, zoomSnap: 0.25, attributionControl: true });
  map.setView([31.82, 117.22], 13);
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  var panes = [["cov-buildings", 410], ["cov-area", 420], ["cov-gaps", 430], ["cov-outlines", 440],
    ["cov-facilities", 610], ["cov-sites", 620]];
  panes.forEach(function (p) { map.createPane(p[0]).style.zIndex = p[1]; });
  map.getPane("cov-outlines").style.pointerEvents = "none";
  var canvas = L.canvas({ pane: "cov-buildings", padding: 0.3 });

  var layers = {
    buildings: L.geoJSON(null, {
      pane: "cov-buildings", renderer: canvas,
      style: function (f) {
        var s = CLASS_STYLE[f.properties.cls] || CLASS_STYLE.beyond;
        return { color: s.line, weight: 0.6, fillColor: s.fill, fillOpacity: 0.9 };
      },
      pointToLayer: function (f, ll) { return L.circleMarker(ll, { radius: 3, pane: "cov-buildings", renderer: canvas }); },
      onEachFeature: function (f, l) {
        var p = f.properties, s = CLASS_STYLE[p.cls] || CLASS_STYLE.beyond;
        l.bindTooltip(s.zh + " " + s.en + (p.distance_m == null ? " · 不可达 unreachable" : " · " + fmt(p.distance_m) + " 米 m"));
      }
    }),
    area: L.geoJSON(null, { pane: "cov-area", style: function () { return AREA; }, interactive: false }),
    gaps: L.geoJSON(null, {
      pane: "cov-gaps", style: function () { return GAP; },
      onEachFeature: function (f, l) {
        var p = f.properties;
        l.bindTooltip("服务盲区 gap · " + fmt(p.households) + " 户 households · " + fmt(p.buildings) + " 栋 buildings");
      }
    }),
    communities: L.geoJSON(null, { pane: "cov-outlines", interactive: false,
      style: function () { return { color: "#13294b", weight: 2.5, fill: false }; } }),
    grids: L.geoJSON(null, { pane: "cov-outlines", interactive: false,
      style: function () { return { color: "#5c6b7a", weight: 1, dashArray: "3 3", fill: false }; } }),
    facilities: L.layerGroup(),
    sites: L.layerGroup(),
    labels: L.layerGroup(),
    gridLabels: L.layerGroup()
  };
  ["buildings", "area", "gaps", "communities", "grids", "facilities", "sites", "labels"].forEach(function (k) { layers[k].addTo(map); });

  function fmt(n) {
    if (n == null || isNaN(n)) return "–";
    return Math.round(Number(n)).toLocaleString("zh-CN");
  }
  function pct(x) { return x == null ? "–" : (100 * x).toFixed(1) + "%"; }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function notice(msg) {
    var n = $("notice");
    n.textContent = msg || "";
    n.hidden = !msg;
  }
  function q(extra) {
    var p = { category: state.category, circle: state.circle, profile: state.profile };
    for (var k in extra || {}) p[k] = extra[k];
    return new URLSearchParams(p).toString();
  }
  function key() { return [state.category, state.circle, state.profile].join("|"); }

  // -- the URL hash keeps the choice -------------------------------------------------------------------------
  function readHash() {
    var h = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    return { category: h.get("category"), circle: h.get("circle"), profile: h.get("profile") };
  }
  function writeHash() {
    var h = "#" + q();
    if (window.location.hash !== h) window.history.replaceState(null, "", h);
    $("old-map").href = "/coverage/map?" + q();
  }

  // -- pickers -----------------------------------------------------------------------------------------------
  function circleLabel(c) { return (c.minutes != null ? c.minutes + "分钟" : (c.name_zh || c.code)); }

  function buildPickers() {
    var sel = $("category");
    sel.innerHTML = "";
    catalog.categories.forEach(function (c) {
      var o = document.createElement("option");
      o.value = c.code;
      o.textContent = c.name_zh + "  " + (c.name_en || "") + (c.no_facility ? "（无设施数据 no facility data）" : "");
      sel.appendChild(o);
    });
    sel.addEventListener("change", function () { choose({ category: sel.value }); });
    var circles = catalog.circles.slice().sort(function (a, b) { return (a.minutes || 0) - (b.minutes || 0); });
    seg("circles", circles.map(function (c) {
      return { value: c.code, zh: circleLabel(c), en: (c.minutes != null ? c.minutes + " min" : c.code) };
    }), "circle");
    seg("profiles", catalog.profiles.map(function (p) {
      var l = PROFILE_LABEL[p.code] || [p.name_zh || p.code, p.code];
      return { value: p.code, zh: l[0], en: l[1] };
    }), "profile");
  }

  function seg(id, items, field) {
    var box = $(id);
    box.innerHTML = "";
    items.forEach(function (it) {
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("role", "radio");
      b.dataset.value = it.value;
      b.innerHTML = esc(it.zh) + " <span>" + esc(it.en) + "</span>";
      b.addEventListener("click", function () { var o = {}; o[field] = it.value; choose(o); });
      box.appendChild(b);
    });
  }

  function syncPickers() {
    $("category").value = state.category;
    [["circles", state.circle], ["profiles", state.profile]].forEach(function (p) {
      Array.prototype.forEach.call($(p[0]).children, function (b) {
        var on = b.dataset.value === p[1];
        b.classList.toggle("on", on);
        b.setAttribute("aria-checked", on ? "true" : "false");
      });
    });
    var budget = (catalog.budgets || []).filter(function (b) { return b.profile === state.profile && b.circle === state.circle; })[0];
    $("budget").textContent = budget ? "步行距离 walking distance ≤ " + fmt(budget.distance_m) + " 米 m" : "";
  }

  function valid(s) {
    var okCat = catalog.categories.some(function (c) { return c.code === s.category; });
    var okCircle = catalog.circles.some(function (c) { return c.code === s.circle; });
    var okProfile = catalog.profiles.some(function (p) { return p.code === s.profile; });
    return { category: okCat ? s.category : null, circle: okCircle ? s.circle : null, profile: okProfile ? s.profile : null };
  }

  function choose(change) {
    for (var k in change) state[k] = change[k];
    writeHash();
    syncPickers();
    load();
  }

  // -- outlines (once) -----------------------------------------------------------------------------------------
  function allFeatures(url) {
    var out = [];
    function page(u) {
      return gisgov.api(u).then(function (fc) {
        out = out.concat(fc.features || []);
        var next = (fc.links || []).filter(function (l) { return l.rel === "next"; })[0];
        return next ? page(next.href) : out;
      });
    }
    return page(url);
  }

  function loadOutlines() {
    body.dataset.outlines = "loading";
    return Promise.all([
      allFeatures("/api/layers/community?limit=5000"),
      allFeatures("/api/layers/grid?limit=10000").catch(function () { return []; })
    ]).then(function (res) {
      var comms = res[0], grids = res[1];
      layers.communities.addData({ type: "FeatureCollection", features: comms });
      layers.grids.addData({ type: "FeatureCollection", features: grids });
      layers.communities.eachLayer(function (l) {
        var p = l.feature.properties;
        outlines.communities[p.code] = l;
        var c = l.getBounds().getCenter();
        L.marker(c, { icon: L.divIcon({ className: "comm-label", html: "<b>" + esc(p.name || p.code).replace("（", "<br>（") + "</b>", iconSize: null }),
          interactive: false, keyboard: false, pane: "cov-outlines" }).addTo(layers.labels);
      });
      layers.grids.eachLayer(function (l) {
        var p = l.feature.properties;
        L.marker(l.getBounds().getCenter(), { icon: L.divIcon({ className: "grid-label", html: esc(p.name || p.code), iconSize: null }),
          interactive: false, keyboard: false, pane: "cov-outlines" }).addTo(layers.gridLabels);
      });
      if (comms.length) {
        outlines.bounds = layers.communities.getBounds();
        map.fitBounds(outlines.bounds, { animate: false, padding: [10, 10] });
      }
      gridLabelsByZoom();
      body.dataset.communities = String(comms.length);
      body.dataset.grids = String(grids.length);
      body.dataset.outlines = "ready";
    }).catch(function (e) {
      body.dataset.outlines = "failed";
      notice("边界加载失败 outlines failed: " + e.message);
    });
  }

  function gridLabelsByZoom() {
    var show = map.getZoom() >= 16 && $("layer-toggles").querySelector('[data-layer="grids"]').checked;
    if (show && !map.hasLayer(layers.gridLabels)) layers.gridLabels.addTo(map);
    if (!show && map.hasLayer(layers.gridLabels)) map.removeLayer(layers.gridLabels);
  }
  map.on("zoomend", gridLabelsByZoom);

  // -- the chosen category's layers -------------------------------------------------------------------------
  function load() {
    var n = ++seq, k = key();
    body.dataset.layers = "loading";
    notice("");
    clearWhatif();
    var t0 = window.performance.now();
    Promise.all([
      gisgov.api("/api/coverage/areas?" + q({ tolerance_m: TOLERANCE_M })),
      gisgov.api("/api/coverage/gaps?" + q({ tolerance_m: TOLERANCE_M })),
      gisgov.api("/api/coverage/buildings?" + q()),
      gisgov.api("/api/coverage/facilities?" + q()),
      gisgov.api("/api/coverage/communities?" + q())
    ]).then(function (res) {
      if (n !== seq) return;
      layers.area.clearLayers().addData(res[0]);
      layers.gaps.clearLayers().addData(res[1]);
      layers.buildings.clearLayers().addData(res[2]);
      drawFacilities(res[3]);
      rows = res[4].rows || [];
      drawTable();
      drawTotals(res[0], res[1], res[2]);
      drawLegend();
      body.dataset.gaps = String((res[1].features || []).length);
      body.dataset.buildings = String((res[2].features || []).length);
      body.dataset.facilities = String((res[3].features || []).length);
      body.dataset.loadMs = String(Math.round(window.performance.now() - t0));
      body.dataset.layers = k;
      loadSites();
    }).catch(function (e) {
      if (n !== seq) return;
      body.dataset.layers = "failed";
      notice("加载失败 failed to load: " + e.message);
    });
  }

  function drawTotals(area, gaps, blds) {
    var a = (area.features && area.features[0] && area.features[0].properties) || {};
    var hh = 0, hin = 0, res = 0, rin = 0;
    rows.forEach(function (r) { hh += r.households; hin += r.households_in; res += r.residents; rin += r.residents_in; });
    var cnt = { within: 0, near: 0, beyond: 0 };
    (blds.features || []).forEach(function (f) { cnt[f.properties.cls] = (cnt[f.properties.cls] || 0) + 1; });
    var gapHh = 0;
    (gaps.features || []).forEach(function (f) { gapHh += f.properties.households || 0; });
    $("totals").innerHTML =
      '<div class="big">' + pct(hh ? hin / hh : null) + '</div><div class="muted">户数覆盖率 households within</div>' +
      "<table class=\"kv\">" +
      "<tr><th>圈内户数 <span>households within</span></th><td>" + fmt(hin) + " / " + fmt(hh) + "</td></tr>" +
      "<tr><th>圈内人数 <span>people within</span></th><td>" + fmt(rin) + " / " + fmt(res) + "</td></tr>" +
      "<tr><th>圈内楼栋 <span>buildings within</span></th><td>" + fmt(a.buildings_in) + "</td></tr>" +
      "<tr><th>服务盲区 <span>gap areas</span></th><td>" + fmt((gaps.features || []).length) + "（" + fmt(gapHh) + " 户 hh）</td></tr>" +
      "</table>";
  }

  function drawLegend() {
    var c = catalog.categories.filter(function (x) { return x.code === state.category; })[0] || {};
    var html = "<b>" + esc(c.name_zh || state.category) + " · " + esc($("circles").querySelector(".on") ? $("circles").querySelector(".on").firstChild.textContent : "") + "</b>";
    html += '<div class="lg-row"><i class="sw sw-area"></i>服务圈 service area</div>';
    html += '<div class="lg-row"><i class="sw sw-gap"></i>服务盲区 gap</div>';
    ["within", "near", "beyond"].forEach(function (k) {
      var s = CLASS_STYLE[k];
      html += '<div class="lg-row"><i class="sw" style="background:' + s.fill + ";border-color:" + s.line + '"></i>' + esc(s.zh) + " " + esc(s.en) + "</div>";
    });
    html += '<div class="lg-row"><i class="sw sw-fac"></i>现有设施 facility</div>';
    html += '<div class="lg-row"><i class="sw sw-site">1</i>建议选址 suggested site</div>';
    $("legend").innerHTML = html;
  }

  // -- facilities: markers; in what-if mode draggable (move) and clickable (remove) -------------------------
  function facilityIcon() { return L.divIcon({ className: "fac-icon", html: "<span>+</span>", iconSize: [18, 18], iconAnchor: [9, 9] }); }

  function drawFacilities(fc) {
    layers.facilities.clearLayers();
    (fc.features || []).forEach(function (f) {
      var c = f.geometry.coordinates, p = f.properties;
      var m = L.marker([c[1], c[0]], { icon: facilityIcon(), pane: "cov-facilities", draggable: whatifOn, title: p.name || "" });
      m.feature = f;
      m.bindTooltip(esc(p.name || "设施 facility") + (p.kind ? "（" + esc(p.kind) + "）" : ""));
      m.on("click", function () { if (whatifOn) whatif({ op: "remove", facility_id: p.id }, m); });
      m.on("dragend", function () {
        var ll = m.getLatLng();
        whatif({ op: "move", facility_id: p.id, lon: ll.lng, lat: ll.lat }, m);
      });
      m.addTo(layers.facilities);
    });
  }

  // -- suggested sites -------------------------------------------------------------------------------------
  function loadSites() {
    if (!canAnalyse) return;
    var n = ++sitesSeq, k = key();
    body.dataset.sites = "loading";
    $("sites-note").textContent = "计算中… computing…";
    $("sites").innerHTML = "";
    layers.sites.clearLayers();
    gisgov.api("/api/coverage/site", { method: "POST",
      body: { category: state.category, circle: state.circle, profile: state.profile, k: 3 } })
      .then(function (r) {
        if (n !== sitesSeq) return;
        var list = $("sites");
        (r.sites || []).forEach(function (s) {
          var name = s.community_name || "社区外 outside any community";
          var label = esc(name) + " · +" + fmt(s.households_gained) + " 户";
          var m = L.marker([s.lat, s.lon], { pane: "cov-sites",
            icon: L.divIcon({ className: "site-icon", html: "<i>" + s.rank + "</i><span>" + label + "</span>", iconSize: null, iconAnchor: [11, 11] }) });
          m.bindTooltip("建议选址 suggested site " + s.rank + "：" + esc(name) + "，新增覆盖 " + fmt(s.households_gained) +
            " 户 households, " + fmt(s.buildings_gained) + " 栋 buildings");
          m.addTo(layers.sites);
          var li = document.createElement("li");
          li.dataset.rank = s.rank;
          li.dataset.community = s.community || "";
          li.tabIndex = 0;
          li.innerHTML = "<b>" + esc(name) + "</b> <span class=\"gain\">+" + fmt(s.households_gained) + " 户 households</span>" +
            "<small>+" + fmt(s.buildings_gained) + " 栋 buildings · " + s.lat.toFixed(5) + ", " + s.lon.toFixed(5) + "</small>";
          var go = function () { map.setView([s.lat, s.lon], Math.max(map.getZoom(), 17)); m.openTooltip(); };
          li.addEventListener("click", go);
          li.addEventListener("keydown", function (e) { if (e.key === "Enter") go(); });
          list.appendChild(li);
        });
        $("sites-note").textContent = (r.sites || []).length
          ? "合计新增覆盖 together +" + fmt(sumGain(r.sites)) + " 户 households" +
            (r.optimal ? "（最优 proven optimal）" : "（近似 heuristic: " + esc(r.solver) + "）")
          : "无需新增 nothing to add: every reachable building is within the circle";
        body.dataset.sites = k;
      })
      .catch(function (e) {
        if (n !== sitesSeq) return;
        if (e.status === 403) {
          canAnalyse = false;
          $("sites-card").hidden = true;
          $("whatif-card").hidden = true;
          body.dataset.sites = "forbidden";
          return;
        }
        $("sites-note").textContent = "选址失败 siting failed: " + e.message;
        body.dataset.sites = "failed";
      });
  }
  function sumGain(sites) { var s = 0; (sites || []).forEach(function (x) { s += x.households_gained; }); return s; }

  // -- what-if ---------------------------------------------------------------------------------------------
  function setWhatif(on) {
    whatifOn = on;
    var b = $("whatif-toggle");
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.innerHTML = on ? "结束假设 <span>Stop what-if</span>" : "开始假设 <span>Start what-if</span>";
    map.getContainer().classList.toggle("whatif-on", on);
    layers.facilities.eachLayer(function (m) { if (m.dragging) { if (on) m.dragging.enable(); else m.dragging.disable(); } });
    body.dataset.whatif = on ? "on" : "off";
    if (!on) clearWhatif();
  }
  function clearWhatif() {
    if (whatifMarker) { map.removeLayer(whatifMarker); whatifMarker = null; }
    $("whatif-result").innerHTML = "";
    layers.facilities.eachLayer(function (m) {
      m.getElement && m.getElement() && m.getElement().classList.remove("removed");
      if (m._home) { m.setLatLng(m._home); }
    });
  }
  $("whatif-toggle").addEventListener("click", function () { setWhatif(!whatifOn); });

  map.on("click", function (e) {
    if (!whatifOn) return;
    clearWhatif();
    whatifMarker = L.marker(e.latlng, { pane: "cov-sites", icon: L.divIcon({ className: "new-fac-icon", html: "<span>+</span>", iconSize: [20, 20], iconAnchor: [10, 10] }) })
      .bindTooltip("假设新增设施 hypothetical new facility").addTo(map);
    whatif({ op: "add", lon: e.latlng.lng, lat: e.latlng.lat }, whatifMarker);
  });

  function whatif(req, marker) {
    var n = ++whatifSeq;
    if (req.op !== "add" && whatifMarker) { map.removeLayer(whatifMarker); whatifMarker = null; }
    if (req.op === "remove" && marker.getElement()) marker.getElement().classList.add("removed");
    if (req.op === "move" && !marker._home) marker._home = L.latLng(marker.feature.geometry.coordinates[1], marker.feature.geometry.coordinates[0]);
    body.dataset.whatif = "computing";
    $("whatif-result").innerHTML = '<div class="muted">计算中… computing…</div>';
    req.category = state.category;
    gisgov.api("/api/coverage/whatif", { method: "POST", body: req }).then(function (r) {
      if (n !== whatifSeq) return;
      var f = (r.figures || []).filter(function (x) { return x.profile === state.profile && x.circle === state.circle; })[0];
      var dh = f ? f.households_after - f.households_before : 0;
      var db = f ? f.buildings_after - f.buildings_before : 0;
      var what = { add: "新增设施 add", move: "移动设施 move", remove: "移除设施 remove" }[r.op];
      var verdict = dh > 0 ? "新增覆盖 newly covered" : (dh < 0 ? "失去覆盖 no longer covered" : "覆盖不变 no change");
      var cls = dh > 0 ? "gain" : (dh < 0 ? "loss" : "same");
      var html = "<div class=\"wi-op\">" + what + "</div>" +
        '<div class="wi-big ' + cls + '" id="whatif-households" data-households="' + Math.round(dh) + '">' +
        (dh > 0 ? "+" : "") + fmt(dh) + " 户 <span>households</span></div>" +
        "<div>" + verdict + " · " + (db > 0 ? "+" : "") + fmt(db) + " 栋 buildings</div>";
      if (f) html += '<div class="muted">圈内户数 households within: ' + fmt(f.households_before) + " → " + fmt(f.households_after) + "</div>";
      (r.warnings || []).forEach(function (w) { html += '<div class="warn">' + esc(w) + "</div>"; });
      html += '<div class="muted">未保存 not stored · ' + fmt(r.total_ms) + " ms</div>";
      $("whatif-result").innerHTML = html;
      body.dataset.whatif = "ready";
      body.dataset.whatifHouseholds = String(Math.round(dh));
    }).catch(function (e) {
      if (n !== whatifSeq) return;
      $("whatif-result").innerHTML = '<div class="warn">' + esc(e.message) + "</div>";
      body.dataset.whatif = "failed";
    });
  }

  // -- per-community table -------------------------------------------------------------------------------------
  var COLUMNS = [
    { key: "name", zh: "社区", en: "Community", text: true },
    { key: "share_households", zh: "户覆盖率", en: "Share of hh" },
    { key: "households_in", zh: "圈内户/总户", en: "hh within" },
    { key: "residents_in", zh: "圈内人数", en: "People" },
    { key: "gaps", zh: "盲区", en: "Gaps" }
  ];

  function drawTable() {
    var t = $("communities");
    var sorted = rows.slice().sort(function (a, b) {
      var x = a[sortKey], y = b[sortKey];
      if (x == null) x = -Infinity;
      if (y == null) y = -Infinity;
      var c = typeof x === "string" ? x.localeCompare(y, "zh-CN") : x - y;
      return sortAsc ? c : -c;
    });
    var h = "<thead><tr>" + COLUMNS.map(function (c) {
      var on = c.key === sortKey;
      return '<th data-key="' + c.key + '" aria-sort="' + (on ? (sortAsc ? "ascending" : "descending") : "none") + '"' +
        (c.text ? "" : ' class="num"') + ">" + esc(c.zh) + (on ? (sortAsc ? " ▲" : " ▼") : "") + "<br><span>" + esc(c.en) + "</span></th>";
    }).join("") + "</tr></thead><tbody>";
    sorted.forEach(function (r) {
      h += '<tr data-code="' + esc(r.code) + '" tabindex="0">' +
        '<td class="name">' + esc(r.name) + "</td>" +
        '<td class="num"><span class="bar"><i style="width:' + Math.round(100 * (r.share_households || 0)) + '%"></i></span>' + pct(r.share_households) + "</td>" +
        '<td class="num">' + fmt(r.households_in) + "/" + fmt(r.households) + "</td>" +
        '<td class="num">' + fmt(r.residents_in) + "</td>" +
        '<td class="num" title="圈外 ' + fmt(r.households_beyond) + ' 户 households beyond">' + fmt(r.gaps) + "</td></tr>";
    });
    t.innerHTML = h + "</tbody>";
    t.dataset.sort = sortKey + (sortAsc ? ":asc" : ":desc");
    t.dataset.rows = String(sorted.length);
  }

  $("communities").addEventListener("click", function (e) {
    var th = e.target.closest("th");
    if (th) {
      var k = th.dataset.key;
      if (k === sortKey) sortAsc = !sortAsc; else { sortKey = k; sortAsc = k === "name" || k === "share_households"; }
      drawTable();
      return;
    }
    var tr = e.target.closest("tr[data-code]");
    if (tr) zoomTo(tr.dataset.code);
  });
  $("communities").addEventListener("keydown", function (e) {
    var tr = e.target.closest("tr[data-code]");
    if (tr && e.key === "Enter") zoomTo(tr.dataset.code);
  });
  function zoomTo(code) {
    var l = outlines.communities[code];
    if (!l) return;
    // flagged once the view has arrived: a click computed during the zoom animation would land elsewhere, and a
    // view set during it is overridden when it ends
    map.once("moveend", function () { body.dataset.zoomed = code; });
    map.fitBounds(l.getBounds(), { padding: [20, 20] });
  }

  // -- layer toggles -----------------------------------------------------------------------------------------
  $("layer-toggles").addEventListener("change", function (e) {
    var k = e.target.dataset.layer;
    if (!k) return;
    var group = k === "communities" ? [layers.communities, layers.labels] : [layers[k]];
    if (k === "facilities") group.push(layers.sites);
    group.forEach(function (g) { if (e.target.checked) g.addTo(map); else map.removeLayer(g); });
    gridLabelsByZoom();
  });

  window.coveragePage = { map: map, layers: layers };  // for tools and tests

  // -- start -------------------------------------------------------------------------------------------------
  gisgov.bindSignOut("sign-out");
  gisgov.whoami("user");
  window.addEventListener("hashchange", function () {
    var h = valid(readHash());
    if (h.category && (h.category !== state.category || (h.circle && h.circle !== state.circle) || (h.profile && h.profile !== state.profile))) {
      choose({ category: h.category, circle: h.circle || state.circle, profile: h.profile || state.profile });
    }
  });
  body.dataset.catalog = "loading";
  gisgov.api("/api/coverage/catalog").then(function (c) {
    catalog = c;
    buildPickers();
    var h = valid(readHash());
    var first = catalog.categories.filter(function (x) { return !x.no_facility; })[0] || catalog.categories[0];
    state.category = h.category || first.code;
    state.circle = h.circle || (catalog.circles.some(function (x) { return x.code === "c15"; }) ? "c15" : catalog.circles[0].code);
    state.profile = h.profile || "standard";
    body.dataset.catalog = "ready";
    writeHash();
    syncPickers();
    loadOutlines();
    load();
  }).catch(function (e) {
    body.dataset.catalog = "failed";
    notice("目录加载失败 catalog failed: " + e.message);
  });
})(window, document);

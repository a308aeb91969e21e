/* 网格划分编辑器 grid plan editor: one community's grids in an edit session; move a compound or a
   building to another grid and see both grids re-checked at once. Data: /api/grids/sessions…
   (aggregate counts only). Vendored Leaflet, no CDN. Requests (JSON, CSRF token, 401 -> /login), the user
   badge and sign-out come from the shared web/common/gisgov.js, loaded first.
   The session is stored on the server: every move sends the revision this page last saw (409 when the
   session changed in another tab); an expired session (410) is reopened with its moves ("resume").
   After a save, accounts that may activate plans get an activate button; activating a draft made from a
   version that is no longer the active one answers 409 with what changed, shown in Chinese, and can be
   confirmed ("rebase"). */
(function () {
  "use strict";

  var CONFIG = JSON.parse(document.getElementById("gisgov-config").textContent || "{}");
  var COLORS = { under: "#e0a526", ok: "#3a9a5b", over: "#d14b4b" };
  var STATUS_ZH = { under: "不足", ok: "达标", over: "超限" };
  var STATUS_EN = { under: "under the minimum", ok: "within the bounds", over: "over a maximum" };
  var RULE_ZH = { households_under: "户数不足", households_over: "户数超限", people_over: "人数超限",
    island: "飞地 / 不连通", split_compound: "小区被拆分", overlap: "重叠", gap: "空隙", donut: "环形",
    building_unassigned: "楼栋未入格" };
  var fmt = new Intl.NumberFormat("zh-CN");

  var S = {
    sid: null, community: null, rules: null, grids: {}, order: [], compounds: {}, buildings: {},
    selected: null, undo: [], moves: 0, rev: 0, busy: false, revision: 0, me: null, saved: null
  };
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var communityCode = params.get("community");

  // ---- map -------------------------------------------------------------------------------------
  var map = L.map("map", { zoomControl: true, zoomSnap: 0.25, attributionControl: true });
  if (CONFIG.basemap_url) {
    L.tileLayer(CONFIG.basemap_url, { attribution: CONFIG.basemap_attribution || "", maxZoom: 20 }).addTo(map);
  } else {
    map.attributionControl.addAttribution("无底图 no basemap (offline)");
  }
  [["grids", 410], ["units", 440], ["buildings", 450], ["labels", 620]].forEach(function (p) {
    map.createPane(p[0]).style.zIndex = p[1];
  });
  var gridLayers = {}, labelMarkers = {};
  var boundaryLayer = null;

  function gridStyle(g) {
    return { pane: "grids", color: "#ffffff", weight: 2.2, opacity: 1, fillColor: COLORS[g.status] || "#999",
             fillOpacity: 0.42, className: "grid-shape grid-" + g.code };
  }
  function compoundStyle(code) {
    var sel = S.selected && S.selected.kind === "compound" && S.selected.code === code;
    var stuck = isStuck(code);
    return { pane: "units", color: sel ? "#1747a6" : (stuck ? "#6a3d9a" : "#3d4b5c"), weight: sel ? 3 : 1.1,
             opacity: sel ? 1 : 0.75, dashArray: stuck && !sel ? "4 3" : null,
             fillColor: sel ? "#2f6fd1" : "#ffffff", fillOpacity: sel ? 0.35 : 0.12 };
  }
  function buildingStyle(b) {
    var sel = S.selected && ((S.selected.kind === "building" && S.selected.code === b.code) ||
      (S.selected.kind === "compound" && S.selected.code === b.compound));
    return { pane: "buildings", color: sel ? "#0f2f73" : "#44505e", weight: sel ? 1.4 : 0.6,
             fillColor: sel ? "#1f5fbf" : "#5f6b7a", fillOpacity: sel ? 0.95 : 0.7, radius: 3 };
  }
  function isStuck(code) {
    return S.order.some(function (c) { return (S.grids[c].cannot_leave || []).indexOf(code) >= 0; });
  }

  // ---- helpers ---------------------------------------------------------------------------------
  // Every write: JSON body, same-origin credentials and the CSRF token (gisgov.api).
  function api(method, url, body) { return gisgov.api(url, { method: method, body: body }); }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function shortCode(code) { return code && code.length > 3 ? code.slice(-3) : code; }
  function notice(msg, kind) {
    var n = $("notice");
    if (!msg) { n.hidden = true; return; }
    n.hidden = false; n.className = "notice " + (kind || ""); n.innerHTML = msg;
  }
  var toastTimer = null;
  function toast(msg) {
    var n = $("notice");
    n.hidden = false; n.className = "notice toast"; n.innerHTML = msg;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { n.hidden = true; }, 2600);
  }
  // 410: the session expired (or was continued elsewhere): say so, offer to reopen it with its moves
  function expired(e) {
    notice("<b>编辑会话已过期</b>（长时间未使用）。点击“重新打开”继续编辑，本页已做的修改会一并带回。<br>" +
      "<span>" + esc(e.message) + "</span><div class='notice-actions'><button id='reopen' type='button' class='primary'>" +
      "重新打开 <span>Reopen the session</span></button></div>", "error expired");
    document.body.dataset.session = "expired";
    $("reopen").addEventListener("click", reopen);
  }
  // 409 on a move or a save: the session changed in another tab
  function changedElsewhere(e) {
    notice("<b>编辑冲突</b>：此编辑会话已在其他窗口中修改。请重新载入页面后再操作（已做的修改都保存在会话中）。<br>" +
      "<span>" + esc(e.message) + "</span><div class='notice-actions'><button id='reload' type='button' class='primary'>" +
      "重新载入 <span>Reload</span></button></div>", "error conflict");
    document.body.dataset.session = "conflict";
    $("reload").addEventListener("click", function () { location.reload(); });
  }
  function failed(what, e) {
    if (e.status === 410) expired(e);
    else if (e.status === 409) changedElsewhere(e);
    else notice(what + esc(e.message), "error");
  }

  function reopen() {
    var btn = $("reopen");
    if (btn) btn.disabled = true;
    return api("POST", "/api/grids/sessions", { community: communityCode, resume: S.sid }).then(function (s) {
      S.sid = s.session; S.revision = s.revision;
      return api("GET", "/api/grids/sessions/" + S.sid + "/layers");
    }).then(function (d) {
      sync(d);
      notice(null);
      delete document.body.dataset.session;
      toast("已重新打开编辑会话 <span>session reopened, your moves are kept</span>");
      S.rev++; renderAll();
    }).catch(function (e) {
      notice("重新打开失败 Could not reopen: " + esc(e.message), "error");
    });
  }

  // the server's state of the session (after reopening): grids, and where each building is
  function sync(d) {
    S.revision = d.revision;
    d.buildings.features.forEach(function (f) {
      if (S.buildings[f.properties.code]) S.buildings[f.properties.code].props.grid = f.properties.grid;
    });
    d.compounds.features.forEach(function (f) {
      if (S.compounds[f.properties.code]) S.compounds[f.properties.code].props.grids = f.properties.grids;
    });
    d.grids.forEach(function (g) { S.grids[g.code] = Object.assign({}, S.grids[g.code] || {}, g); drawGrid(S.grids[g.code], g.label); });
  }

  function unitName(kind, code) {
    if (kind === "compound") {
      var c = S.compounds[code];
      return "小区 " + esc(c && c.props.name ? c.props.name : code);
    }
    return "楼栋 " + esc(code);
  }
  function compoundGrids(code) {
    var c = S.compounds[code];
    if (!c) return [];
    if (!c.buildings.length) return c.props.grids.slice();
    var set = {};
    c.buildings.forEach(function (b) { if (S.buildings[b].props.grid) set[S.buildings[b].props.grid] = 1; });
    return Object.keys(set).sort();
  }

  // ---- drawing ---------------------------------------------------------------------------------
  function largestRingCenter(geom) {
    var polys = geom.type === "Polygon" ? [geom.coordinates] : geom.type === "MultiPolygon" ? geom.coordinates : [];
    var best = null, bestA = -1;
    polys.forEach(function (p) {
      var r = p[0], a = 0, cx = 0, cy = 0;
      for (var i = 0, j = r.length - 1; i < r.length; j = i++) {
        var f = r[j][0] * r[i][1] - r[i][0] * r[j][1];
        a += f; cx += (r[j][0] + r[i][0]) * f; cy += (r[j][1] + r[i][1]) * f;
      }
      if (Math.abs(a) > bestA && a !== 0) { bestA = Math.abs(a); best = [cx / (3 * a), cy / (3 * a)]; }
    });
    return best;
  }

  function drawGrid(g, labelAt) {
    if (gridLayers[g.code]) { map.removeLayer(gridLayers[g.code]); delete gridLayers[g.code]; }
    if (labelMarkers[g.code]) { map.removeLayer(labelMarkers[g.code]); delete labelMarkers[g.code]; }
    if (!g.geometry) return;
    var layer = L.geoJSON({ type: "Feature", geometry: g.geometry, properties: {} }, { style: function () { return gridStyle(g); } });
    layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onGridClick(g.code); });
    layer.on("mouseover", function () { hotRow(g.code, true); });
    layer.on("mouseout", function () { hotRow(g.code, false); });
    layer.addTo(map);
    gridLayers[g.code] = layer;
    var at = labelAt || largestRingCenter(g.geometry);
    if (at) {
      g.label = at;
      var icon = L.divIcon({ className: "grid-label status-" + g.status, iconSize: null,
        html: "<b>" + esc(shortCode(g.code)) + "</b><span>" + fmt.format(g.households) + " 户 · " +
              fmt.format(g.people) + " 人</span>" });
      labelMarkers[g.code] = L.marker([at[1], at[0]], { icon: icon, pane: "labels", interactive: false, keyboard: false }).addTo(map);
    }
  }

  function drawUnits(data) {
    L.geoJSON(data.compounds, {
      filter: function (f) { return !!f.geometry; },
      style: function (f) { return compoundStyle(f.properties.code); },
      onEachFeature: function (f, layer) {
        S.compounds[f.properties.code].layer = layer;
        layer.options.className = "compound-shape compound-" + f.properties.code;
        layer.bindTooltip(function () { return compoundTip(f.properties.code); }, { sticky: true, className: "unit-tip" });
        layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onUnitClick("compound", f.properties.code, e); });
      }
    }).addTo(map);
    L.geoJSON(data.buildings, {
      style: function (f) { return buildingStyle(f.properties); },
      pointToLayer: function (f, ll) { return L.circleMarker(ll, buildingStyle(f.properties)); },
      onEachFeature: function (f, layer) {
        S.buildings[f.properties.code].layer = layer;
        layer.options.className = "building-shape building-" + f.properties.code;
        layer.bindTooltip(function () { return buildingTip(f.properties.code); }, { sticky: true, className: "unit-tip" });
        layer.on("click", function (e) {
          L.DomEvent.stopPropagation(e);
          var single = mode() === "building" || e.originalEvent.shiftKey || e.originalEvent.altKey || !f.properties.compound;
          if (single) onUnitClick("building", f.properties.code, e);
          else onUnitClick("compound", f.properties.compound, e);
        });
      }
    }).addTo(map);
  }

  function restyleUnits() {
    Object.keys(S.compounds).forEach(function (c) {
      var l = S.compounds[c].layer;
      if (l) l.setStyle(compoundStyle(c));
    });
    Object.keys(S.buildings).forEach(function (b) {
      var l = S.buildings[b].layer;
      if (l) l.setStyle(buildingStyle(S.buildings[b].props));
    });
  }

  function compoundTip(code) {
    var c = S.compounds[code].props;
    return "<b>" + esc(c.name || code) + "</b><br>" + esc(code) + "<br>" + fmt.format(c.households) + " 户 · " +
      fmt.format(c.people) + " 人 · " + c.buildings + " 栋<br>网格 Grid: " +
      (compoundGrids(code).map(shortCode).join(", ") || "—");
  }
  function buildingTip(code) {
    var b = S.buildings[code].props;
    return "<b>楼栋 " + esc(code) + "</b><br>" + fmt.format(b.households) + " 户 · " + fmt.format(b.people) +
      " 人<br>网格 Grid: " + esc(shortCode(b.grid) || "—");
  }

  // ---- panels ----------------------------------------------------------------------------------
  function renderTable() {
    var tb = $("grids").querySelector("tbody");
    tb.innerHTML = "";
    S.order.forEach(function (code) {
      var g = S.grids[code];
      var tr = document.createElement("tr");
      tr.dataset.code = code; tr.dataset.households = g.households; tr.dataset.people = g.people; tr.dataset.status = g.status;
      tr.className = "status-" + g.status;
      tr.innerHTML = "<td class='code' title='" + esc(code) + "'><b>" + esc(shortCode(code)) + "</b></td><td class='num'>" + fmt.format(g.households) + "</td><td class='num'>" + fmt.format(g.people) +
        "</td><td title='" + STATUS_EN[g.status] + "'><i class='dot'></i>" + STATUS_ZH[g.status] + (g.breaks.length ? " <em class='flag' title='规则问题 rule breaks'>" +
        g.breaks.length + "</em>" : "") + "</td>";
      tr.addEventListener("click", function () {
        if (gridLayers[code]) map.fitBounds(gridLayers[code].getBounds(), { padding: [40, 40], maxZoom: 18 });
      });
      tr.addEventListener("mouseenter", function () { hotGrid(code, true); });
      tr.addEventListener("mouseleave", function () { hotGrid(code, false); });
      tb.appendChild(tr);
    });
  }
  function hotRow(code, on) {
    var tr = $("grids").querySelector("tr[data-code='" + code + "']");
    if (tr) tr.classList.toggle("hot", on);
  }
  function hotGrid(code, on) {
    var l = gridLayers[code];
    if (l) l.setStyle(on ? { weight: 4, color: "#13294b" } : gridStyle(S.grids[code]));
  }

  function renderSummary() {
    var h = 0, p = 0, ok = 0;
    S.order.forEach(function (c) { var g = S.grids[c]; h += g.households; p += g.people; if (g.status === "ok") ok++; });
    var r = S.rules;
    var el = $("summary");
    el.dataset.households = h; el.dataset.people = p; el.dataset.grids = S.order.length;
    el.innerHTML = "<div class='kpis'>" +
      kpi("grids", "网格", "Grids", S.order.length) + kpi("within", "达标", "Within bounds", ok + " / " + S.order.length) +
      kpi("households", "户数", "Households", fmt.format(h)) + kpi("people", "人数", "People", fmt.format(p)) + "</div>" +
      "<div class='rules'>规则 Rules (" + esc(r.name) + "): " + r.min_households + "–" + r.max_households +
      " 户/格, ≤ " + fmt.format(r.max_people) + " 人/格</div>";
  }
  function kpi(key, zh, en, v) {
    return "<div class='kpi' data-kpi='" + key + "'><div class='label'>" + zh + " <span>" + en + "</span></div><div class='value'>" + v + "</div></div>";
  }

  function renderBreaks() {
    var ul = $("breaks"), n = 0;
    ul.innerHTML = "";
    S.order.forEach(function (code) {
      S.grids[code].breaks.forEach(function (b) {
        n++;
        var li = document.createElement("li");
        li.className = "rule-" + b.rule;
        li.innerHTML = "<b>" + esc(shortCode(code)) + "</b> " + esc(RULE_ZH[b.rule] || b.rule) + " <span>" + esc(b.message) + "</span>";
        li.addEventListener("click", function () { if (gridLayers[code]) map.fitBounds(gridLayers[code].getBounds(), { maxZoom: 18 }); });
        ul.appendChild(li);
      });
    });
    $("break-count").textContent = n ? String(n) : "";
    $("break-count").className = "count" + (n ? " bad" : "");
    if (!n) ul.innerHTML = "<li class='none'>无 — 全部网格符合规则 <span>none: every grid obeys the rules</span></li>";
  }

  function renderStuck() {
    var ul = $("stuck"), any = false;
    ul.innerHTML = "";
    S.order.forEach(function (code) {
      var units = S.grids[code].cannot_leave || [];
      if (!units.length) return;
      any = true;
      var li = document.createElement("li");
      li.dataset.grid = code;
      li.innerHTML = "<b>" + esc(shortCode(code)) + "</b> " + units.map(function (u) {
        var c = S.compounds[u];
        return "<span class='chip-unit' title='" + esc(u) + "'>" + esc(c ? (c.props.name || u) : "楼 " + shortCode(u)) + "</span>";
      }).join("");
      ul.appendChild(li);
    });
    if (!any) ul.innerHTML = "<li class='none'>无 <span>none</span></li>";
  }

  function renderSelection() {
    var el = $("selection");
    var s = S.selected;
    $("cancel").disabled = !s;
    map.getContainer().classList.toggle("picking", !!s);
    if (!s) { el.className = "selection empty"; el.innerHTML = "未选中 <span>Nothing selected</span>"; return; }
    var props = s.kind === "compound" ? S.compounds[s.code].props : S.buildings[s.code].props;
    var grids = s.kind === "compound" ? compoundGrids(s.code) : [props.grid];
    el.className = "selection";
    el.dataset.kind = s.kind; el.dataset.code = s.code;
    el.innerHTML = "<div class='what'>" + unitName(s.kind, s.code) + "</div><div class='code'>" + esc(s.code) + "</div>" +
      "<div class='nums'>" + fmt.format(props.households) + " 户 · " + fmt.format(props.people) + " 人 · 当前网格 in grid " +
      esc(grids.map(shortCode).join(", ") || "—") + "</div><div class='next'>→ 请点击目标网格 <span>now click the target grid</span></div>";
  }

  function renderLastMove(res, before, label) {
    var el = $("last-move");
    el.className = "";
    var rows = res.grids.map(function (g) {
      var b = before[g.code] || { households: 0, people: 0 };
      var dh = g.households - b.households, dp = g.people - b.people;
      return "<tr class='status-" + g.status + "'><td><b>" + esc(shortCode(g.code)) + "</b></td><td class='num'>" +
        fmt.format(b.households) + " → <b>" + fmt.format(g.households) + "</b> <em>" + (dh > 0 ? "+" : "") + dh +
        "</em></td><td class='num'>" + fmt.format(b.people) + " → <b>" + fmt.format(g.people) + "</b> <em>" +
        (dp > 0 ? "+" : "") + dp + "</em></td><td title='" + STATUS_EN[g.status] + "'><i class='dot'></i>" + STATUS_ZH[g.status] + "</td></tr>";
    }).join("");
    var breaks = [];
    res.grids.forEach(function (g) {
      g.breaks.forEach(function (b) { breaks.push("<li><b>" + esc(shortCode(g.code)) + "</b> " + esc(RULE_ZH[b.rule] || b.rule) + " <span>" + esc(b.message) + "</span></li>"); });
    });
    el.innerHTML = "<div class='moved'>" + label + "</div><table class='mini'><thead><tr><th>网格</th><th class='num'>户 HH</th>" +
      "<th class='num'>人 People</th><th>状态 <span>Status</span></th></tr></thead><tbody>" + rows + "</tbody></table>" +
      (breaks.length ? "<ul class='breaks compact'>" + breaks.join("") + "</ul>" : "<div class='okline'>✓ 两个网格均无规则问题 <span>no rule breaks in either grid</span></div>") +
      "<div class='timing'>复核用时 re-checked in " + res.ms + " ms</div>";
  }

  function renderAll() {
    renderSummary(); renderTable(); renderBreaks(); renderStuck(); renderSelection(); restyleUnits();
    $("undo").disabled = !S.undo.length || S.busy;
    $("save").disabled = !S.moves || S.busy;
    $("activate").disabled = S.busy;
    document.body.dataset.rev = String(S.rev);
  }

  // ---- interaction -----------------------------------------------------------------------------
  function mode() { return document.querySelector("input[name=mode]:checked").value; }

  function onUnitClick(kind, code) {
    if (S.busy) return;
    if (S.selected && S.selected.kind === kind && S.selected.code === code) { S.selected = null; }
    else S.selected = { kind: kind, code: code };
    renderSelection(); restyleUnits();
  }

  function onGridClick(code) {
    if (S.busy || !S.selected) return;
    var s = S.selected;
    var current = s.kind === "compound" ? compoundGrids(s.code) : [S.buildings[s.code].props.grid];
    if (current.length === 1 && current[0] === code) {
      toast("已在网格 " + esc(shortCode(code)) + " 中 <span>already in this grid</span>");
      return;
    }
    var prev = {};
    if (s.kind === "compound") S.compounds[s.code].buildings.forEach(function (b) { prev[b] = S.buildings[b].props.grid; });
    else prev[s.code] = S.buildings[s.code].props.grid;
    var entry = { kind: s.kind, code: s.code, to: code, prev: prev, prevGrids: current };
    S.selected = null;
    doMove(s.kind, s.code, code, true).then(function (ok) {
      if (ok) { S.undo.push(entry); S.moves++; }
      finish();
    });
  }

  function applyMove(kind, code, to, res) {
    if (kind === "compound") {
      var c = S.compounds[code];
      c.buildings.forEach(function (b) { S.buildings[b].props.grid = to; });
      c.props.grids = [to];
    } else {
      var b = S.buildings[code].props;
      b.grid = to;
      if (b.compound && S.compounds[b.compound]) S.compounds[b.compound].props.grids = compoundGrids(b.compound);
    }
    res.grids.forEach(function (g) {
      var old = S.grids[g.code] || {};
      g.label = null;
      S.grids[g.code] = Object.assign({}, old, g);
      drawGrid(S.grids[g.code]);
    });
  }

  function doMove(kind, code, to, show) {
    S.busy = true;
    document.body.dataset.busy = "1";
    $("undo").disabled = true; $("save").disabled = true;
    var before = {};
    S.order.forEach(function (c) { before[c] = { households: S.grids[c].households, people: S.grids[c].people }; });
    var body = { to: to, revision: S.revision };
    body[kind] = code;
    return api("POST", "/api/grids/sessions/" + S.sid + "/move", body).then(function (res) {
      S.revision = res.revision;
      applyMove(kind, code, to, res);
      if (show) renderLastMove(res, before, unitName(kind, code) + " → 网格 <b>" + esc(shortCode(to)) + "</b>" +
        " <span class='muted'>(" + esc(to) + ")</span>");
      return true;
    }).catch(function (e) {
      failed("移动失败 Move failed: ", e);
      return false;
    });
  }

  function finish() {
    S.busy = false;
    S.rev++;
    delete document.body.dataset.busy;
    renderAll();
  }

  function undo() {
    if (S.busy || !S.undo.length) return;
    var e = S.undo.pop();
    S.selected = null;
    var before = {};
    S.order.forEach(function (c) { before[c] = { households: S.grids[c].households, people: S.grids[c].people }; });
    var steps = [];
    if (e.kind === "building") steps.push(["building", e.code, e.prev[e.code]]);
    else if (e.prevGrids.length === 1) steps.push(["compound", e.code, e.prevGrids[0]]);
    else {
      var first = e.prevGrids[0];
      steps.push(["compound", e.code, first]);
      Object.keys(e.prev).forEach(function (b) { if (e.prev[b] && e.prev[b] !== first) steps.push(["building", b, e.prev[b]]); });
    }
    var chain = Promise.resolve(true);
    steps.forEach(function (st) {
      chain = chain.then(function (ok) {
        if (!ok || !st[2]) return ok;
        return doMove(st[0], st[1], st[2], false);
      });
    });
    chain.then(function (ok) {
      if (ok) {
        S.moves = Math.max(0, S.moves - 1);
        var grids = {};
        [e.to].concat(e.prevGrids).forEach(function (c) { if (c) grids[c] = 1; });
        var res = { grids: Object.keys(grids).sort().map(function (c) { return S.grids[c]; }), ms: "–" };
        renderLastMove(res, before, "↶ 已撤销 Undone: " + unitName(e.kind, e.code) + " → 网格 <b>" +
          esc(e.prevGrids.map(shortCode).join(", ")) + "</b>");
      } else S.undo.push(e);
      finish();
    });
  }

  function save(opts) {
    if (S.busy) return;
    opts = opts || {};
    S.busy = true; renderAll();
    api("POST", "/api/grids/sessions/" + S.sid + "/save", { revision: S.revision, rebase: !!opts.rebase }).then(function (r) {
      var el = $("saved");
      S.saved = r.version;
      el.hidden = false;
      el.dataset.version = r.version;
      el.innerHTML = "✓ 已保存为草稿 第 " + r.version + " 版 <span>Saved as draft version " + r.version + "</span>" +
        "<br><a href='/api/grids/map/" + encodeURIComponent(S.community.code) + "?plan=" + r.version + "' target='_blank'>查看方案图 View plan map</a>" +
        (canActivate() ? "" : " · 启用需街道领导 <span>(activation: a street leader, POST /api/grids/plans/" +
          esc(S.community.code) + "/" + r.version + "/activate)</span>") +
        (r.warning ? "<div class='warn' id='save-warning'>⚠ " + esc(r.warning) + "</div>" : "");
      $("activate").hidden = !canActivate();
      $("activate").disabled = false;
      conflictBox(null);
      loadPlanInfo();
    }).catch(function (e) {
      var c = e.status === 409 && e.body && e.body.conflict;
      if (c) {  // another version was activated since this session was opened: nothing saved yet
        conflictBox("<div class='conflict' id='save-conflict' data-active='" + esc(c.active_version) + "'>" +
          "<b>方案冲突，未保存</b>：本会话基于第 " + esc(c.parent_version == null ? "—" : c.parent_version) +
          " 版，之后第 " + esc(c.active_version) + " 版已由 " + esc(c.activated_by || "命令行") + " 启用，有 " +
          esc(c.buildings_changed) + " 栋楼栋的网格不同。会话中的修改都还在。" +
          (c.diff ? " <a href='" + esc(c.diff) + "' target='_blank'>查看差异 View the difference</a>" : "") +
          "<details><summary>详情 <span>Details</span></summary><span>" + esc(e.message) + "</span></details></div>" +
          "<button id='save-anyway' type='button'>仍然保存为草稿 <span>Save as a draft anyway</span></button>");
        $("save-anyway").addEventListener("click", function () { save({ rebase: true }); });
        return;
      }
      failed("保存失败 Save failed: ", e);
    }).then(function () { S.busy = false; S.rev++; renderAll(); });
  }

  function canActivate() {
    return !!(S.me && (S.me.permissions || []).indexOf("activate_plans") >= 0);
  }

  function conflictBox(html) {
    var el = $("conflict");
    el.hidden = !html;
    el.innerHTML = html || "";
  }

  // activate the saved draft; 409 explains what changed (in Chinese) and offers to confirm
  function activate(opts) {
    if (S.busy || !S.saved) return;
    opts = opts || {};
    S.busy = true; renderAll();
    var v = S.saved;
    window.fetch("/api/grids/plans/" + encodeURIComponent(S.community.code) + "/" + v + "/activate", {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": gisgov.csrf() },
      body: JSON.stringify({ force: !!opts.force, rebase: !!opts.rebase })
    }).then(function (r) {
      if (r.status === 401) { gisgov.signIn(); throw new Error("请先登录 sign in first"); }
      return r.json().catch(function () { return {}; }).then(function (body) { return { status: r.status, body: body }; });
    }).then(function (res) {
      var b = res.body;
      if (res.status === 200) {
        $("activate").hidden = true;
        conflictBox("<div class='ok' id='activated' data-version='" + v + "'>✓ 已启用第 " + v + " 版 <span>Version " + v +
          " is now the active plan</span></div>");
        loadPlanInfo();
        return;
      }
      if (res.status === 409) {
        var c = b.conflict;
        var next = c ? { rebase: true, force: !!opts.force } : { force: true, rebase: !!opts.rebase };
        var head = c ? "<b>方案冲突，未启用</b>：第 " + esc(c.parent_version == null ? "—" : c.parent_version) +
          " 版之后，第 " + esc(c.active_version) + " 版已由 " + esc(c.activated_by || "命令行") + " 于 " +
          esc((c.activated || "").slice(0, 16).replace("T", " ")) + " 启用，与本草稿的基础相比有 " +
          esc(c.buildings_changed) + " 栋楼栋的网格不同。草稿已保留。" +
          (c.diff ? " <a href='" + esc(c.diff) + "' target='_blank'>查看差异 View the difference</a>" : "")
          : "<b>未启用</b>：方案有规则问题。";
        conflictBox("<div class='conflict' data-active='" + esc(c ? c.active_version : "") + "'>" + head +
          "<details><summary>详情 <span>Details</span></summary><span>" + esc(b.detail || "") + "</span></details>" +
          "</div><button id='activate-anyway' type='button'>" +
          (c ? "仍然启用，覆盖当前方案 <span>Activate anyway, replacing the current plan</span>"
             : "仍然启用（含规则问题） <span>Activate with the rule breaks</span>") + "</button>");
        $("activate-anyway").addEventListener("click", function () { activate(next); });
        return;
      }
      throw new Error((b && b.detail) || ("HTTP " + res.status));
    }).catch(function (e) {
      conflictBox("<div class='conflict'>启用失败 Activation failed: " + esc(e.message) + "</div>");
    }).then(function () { S.busy = false; S.rev++; renderAll(); });
  }

  function loadPlanInfo() {
    return api("GET", "/api/grids/plans/" + encodeURIComponent(communityCode)).then(function (plans) {
      var active = (plans || []).filter(function (p) { return p.status === "active"; })[0];
      var drafts = (plans || []).filter(function (p) { return p.status === "draft"; }).length;
      $("plan-info").textContent = (active ? "编辑启用方案 第 " + active.version + " 版 editing active plan v" + active.version : "无启用方案 no active plan") +
        " · 草稿 drafts: " + drafts;
    }).catch(function () { $("plan-info").textContent = ""; });
  }

  // ---- start -----------------------------------------------------------------------------------
  function start() {
    if (!communityCode) {
      notice("请在地址中指定社区 <code>?community=社区编码</code><br><span>Give the community in the address: ?community=CODE</span>", "error");
      document.body.dataset.ready = "error";
      map.setView([31.82, 117.23], 12);
      return;
    }
    notice("正在加载… <span>Loading…</span>");
    gisgov.whoami("who").then(function (me) { S.me = me; });
    loadPlanInfo();
    api("POST", "/api/grids/sessions", { community: communityCode }).then(function (s) {
      S.sid = s.session;
      return api("GET", "/api/grids/sessions/" + S.sid + "/layers");
    }).then(function (d) {
      S.community = d.community; S.rules = d.rules; S.revision = d.revision;
      $("community-name").textContent = "· " + d.community.name;
      document.title = "网格划分编辑器 · " + d.community.name + " — gisgov";
      d.compounds.features.forEach(function (f) { S.compounds[f.properties.code] = { props: f.properties, buildings: [] }; });
      d.buildings.features.forEach(function (f) {
        S.buildings[f.properties.code] = { props: f.properties };
        if (f.properties.compound && S.compounds[f.properties.compound]) S.compounds[f.properties.compound].buildings.push(f.properties.code);
      });
      d.grids.forEach(function (g) { S.grids[g.code] = g; S.order.push(g.code); });
      if (d.boundary) {
        boundaryLayer = L.geoJSON(d.boundary, { interactive: false, style: { color: "#13294b", weight: 2.5, fill: false, pane: "labels" } }).addTo(map);
      }
      S.order.forEach(function (c) { drawGrid(S.grids[c], S.grids[c].label); });
      $("code-prefix").textContent = "编码 code " + d.community.code + "…";
      drawUnits(d);
      map.fitBounds((boundaryLayer || L.featureGroup(Object.values(gridLayers))).getBounds(), { padding: [16, 16], animate: false });
      legend();
      notice(null);
      renderAll();
      if (!S.order.length) notice("该社区没有网格方案 <span>this community has no grid plan</span>", "error");
      document.body.dataset.ready = "ready";
    }).catch(function (e) {
      notice("加载失败 Could not load: " + esc(e.message), "error");
      document.body.dataset.ready = "error";
    });
  }

  function legend() {
    var r = S.rules;
    $("legend").innerHTML = "<b>网格户数 Households per grid</b>" +
      "<div><i style='background:" + COLORS.under + "'></i>&lt; " + r.min_households + " 户 不足 under</div>" +
      "<div><i style='background:" + COLORS.ok + "'></i>" + r.min_households + "–" + r.max_households + " 户 达标 within</div>" +
      "<div><i style='background:" + COLORS.over + "'></i>&gt; " + r.max_households + " 户 或 &gt; " + fmt.format(r.max_people) + " 人 over</div>" +
      "<div><i class='outline'></i>小区 compound</div><div><i class='outline dashed'></i>不可移出 cannot leave</div>" +
      "<div><i class='bld'></i>楼栋 building</div>";
  }

  gisgov.bindSignOut("logout");
  $("undo").addEventListener("click", undo);
  $("save").addEventListener("click", function () { save(); });
  $("activate").addEventListener("click", function () { activate({}); });
  $("cancel").addEventListener("click", function () { S.selected = null; renderSelection(); restyleUnits(); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && S.selected) { S.selected = null; renderSelection(); restyleUnits(); }
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
  });
  window.gridEditor = { map: map, state: S };
  start();
})();

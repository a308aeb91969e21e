/* 网格划分编辑器 grid plan editor: one community's grids in an edit session. Tools (toolbar above the map):
   选择/移动 click a compound (or a building) then a grid to move it, Shift-click several then a grid;
   画新网格 draw a polygon: a new grid gets the units inside; 调整边界 drag the vertices of a grid's outline;
   切分 draw a line across a grid to cut it; 合并 click two neighbouring grids; 删除空网格; 涂刷 press and drag
   over compounds/buildings to paint them into the target grid; 套索 draw a polygon around units for the
   target grid. The server rebuilds the outlines from the units (edges snap to compounds, roads and the
   community boundary, neighbours follow) and answers the touched grids, re-checked.
   Data: /api/grids/sessions… (aggregate counts only). Vendored Leaflet and Leaflet-Geoman, no CDN.
   Requests (JSON, CSRF token, 401 -> /login), the user badge and sign-out come from web/common/gisgov.js.
   Every edit sends the revision this page last saw (409 when the session changed in another tab: the page
   keeps its state and offers a reload); an expired session (410) is reopened with its edits ("resume").
   Undo/redo: each edit answer carries the body that reverses it; a click-move is undone by moving back.
   Saving a session opened on a version that is no longer active answers 409: nothing saved, every edit kept,
   the page offers "rebase and save" or reload. Activation belongs to the plan panel (plans.js).
   window.gridEditor: map, state(), open({plan}), highlight(codes, {color}), clearHighlight();
   events on document: "grideditor:change" (detail: state()), "grideditor:saved" ({version, parent_version}). */
(function () {
  "use strict";

  // Okabe–Ito, then Paul Tol's light and muted qualitative colours: distinguishable with colour-blindness
  var PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#77AADD",
    "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00", "#882255", "#117733", "#999933"];
  var STATUS_ZH = { under: "不足", ok: "达标", over: "超限" };
  var STATUS_EN = { under: "under the minimum", ok: "within the bounds", over: "over a maximum" };
  var STATUS_ICON = { under: "▽", ok: "✓", over: "▲" };
  var RULE_ZH = { households_under: "户数不足", households_over: "户数超限", people_over: "人数超限",
    island: "飞地 / 不连通", split_compound: "小区被拆分", overlap: "重叠", gap: "空隙", donut: "环形",
    building_unassigned: "楼栋未入格" };
  var OP_ZH = { assign: "移入网格 Assign", draw: "画新网格 Draw grid", reshape: "调整边界 Reshape",
    split: "切分 Split", merge: "合并 Merge", "delete": "删除网格 Delete grid", restore: "恢复 Restore" };
  var TOOLS = {
    select: { key: "v", hint: "点击小区（Alt 点击楼栋）再点击目标网格即移动；Shift 点击可多选。点击网格设为当前网格。" +
      "<span>Click a compound (Alt-click a building), then the target grid. Shift-click to select several. Click a grid to make it the current grid.</span>" },
    draw: { key: "d", hint: "在地图上逐点单击画出多边形，单击第一个点闭合：其中的楼栋组成新网格。" +
      "<span>Click the corners of the new grid; click the first corner to close it. The units inside form a new grid.</span>" },
    reshape: { key: "r", hint: "先点击一个网格，再拖动其边界的顶点（拖动边中点可加点，右键删点）。松开后即按新边界重新分配。" +
      "<span>Click a grid, then drag its outline's vertices (drag a mid-point to add one, right-click to remove). Released: units are re-assigned.</span>" },
    split: { key: "s", hint: "画一条穿过网格的线（逐点单击，再次单击最后一点结束）：网格沿线切开。" +
      "<span>Draw a line across a grid (click points, click the last one again to finish): the grid is cut along it.</span>" },
    merge: { key: "m", hint: "依次点击两个相邻网格：第二个并入第一个。" +
      "<span>Click two neighbouring grids: the second is merged into the first.</span>" },
    paint: { key: "b", hint: "按住鼠标拖过小区/楼栋，将其涂入目标网格（地图不平移）。" +
      "<span>Press and drag over compounds/buildings to paint them into the target grid (the map does not pan).</span>" },
    lasso: { key: "l", hint: "画一个多边形圈住小区/楼栋，单击第一个点闭合：圈中的单元移入目标网格。" +
      "<span>Draw a polygon around units (click the first corner to close): they join the target grid.</span>" }
  };
  var BRUSH_PX = 12;
  var fmt = new Intl.NumberFormat("zh-CN");

  var S = {
    sid: null, community: null, rules: null, grids: {}, order: [], compounds: {}, buildings: {},
    selected: null, multi: { compounds: {}, buildings: {} }, undo: [], redo: [], changes: 0, rev: 0, busy: false,
    revision: 0, me: null, saved: null, base_version: null, plan_version: null, tool: "select", current: null,
    mergeFrom: null, shape: null, paint: null, highlight: {}, fitted: false, unitLayers: []
  };
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var communityCode = params.get("community");

  // ---- map -------------------------------------------------------------------------------------
  var map = L.map("map", { zoomControl: true, zoomSnap: 0.25, attributionControl: true, boxZoom: false });
  [["grids", 410], ["units", 440], ["buildings", 450], ["edit", 460], ["labels", 620]].forEach(function (p) {
    map.createPane(p[0]).style.zIndex = p[1];
  });
  var gridLayers = {}, labelMarkers = {};
  var boundaryLayer = null;
  var brush = L.circleMarker([0, 0], { radius: BRUSH_PX, pane: "edit", interactive: false, color: "#13294b", weight: 1.5,
    dashArray: "3 3", fill: false, pmIgnore: true, snapIgnore: true });
  if (map.pm) {
    map.pm.setGlobalOptions({ snappable: true, snapDistance: 14, allowSelfIntersection: false });
    if (map.pm.setLang) map.pm.setLang("zh");
  }

  // neighbouring grids get different colours (balance.js colours by adjacency and keeps a grid's colour
  // from one call to the next); without balance.js the palette goes by order
  function assignColours() {
    var gb = window.gridBalance;
    if (gb && typeof gb.assign === "function") {
      try { gb.assign(S.order.map(function (c) { return S.grids[c]; })); } catch (e) { /* order colours */ }
    }
  }

  function gridColor(code) {
    var i = S.order.indexOf(code);
    if (i < 0) i = 0;
    var gb = window.gridBalance;
    if (gb && typeof gb.color === "function") {
      try { var c = gb.color(i, code); if (c) return c; } catch (e) { /* fall back to the built-in palette */ }
    }
    return PALETTE[i % PALETTE.length];
  }
  // fill = the grid's own colour; the rule state is the outline's pattern and weight (and an icon on the label)
  function gridStyle(g) {
    var s = { pane: "grids", fillColor: gridColor(g.code), fillOpacity: 0.5, opacity: 1,
      className: "grid-shape grid-" + g.code };
    if (g.status === "under") { s.color = "#2b2b2b"; s.weight = 2.4; s.dashArray = "8 5"; }
    else if (g.status === "over") { s.color = "#111111"; s.weight = 4.2; s.dashArray = "1.5 5"; s.lineCap = "round"; }
    else { s.color = "#ffffff"; s.weight = 2; s.dashArray = null; }
    if (g.code === S.current || g.code === S.mergeFrom) { s.fillOpacity = 0.7; s.weight = s.weight + 1.5; if (g.status === "ok") s.color = "#13294b"; }
    return s;
  }
  function compoundStyle(code) {
    var sel = isSelected("compound", code);
    var painted = S.paint && S.paint.compounds[code];
    var stuck = isStuck(code);
    return { pane: "units", color: sel || painted ? "#1747a6" : (stuck ? "#6a3d9a" : "#3d4b5c"), weight: sel || painted ? 3 : 1.1,
             opacity: sel ? 1 : 0.75, dashArray: stuck && !sel ? "4 3" : null,
             fillColor: painted ? gridColor(S.target) : (sel ? "#2f6fd1" : "#ffffff"), fillOpacity: painted ? 0.8 : (sel ? 0.35 : 0.12) };
  }
  function buildingStyle(b) {
    var sel = isSelected("building", b.code) || (b.compound && isSelected("compound", b.compound));
    var painted = S.paint && (S.paint.buildings[b.code] || (b.compound && S.paint.compounds[b.compound]));
    var hi = S.highlight[b.code];
    if (hi) return { pane: "buildings", color: "#000000", weight: 2.2, fillColor: hi, fillOpacity: 1, radius: 6 };
    return { pane: "buildings", color: sel ? "#0f2f73" : "#44505e", weight: sel ? 1.4 : 0.6,
             fillColor: painted ? "#13294b" : (sel ? "#1f5fbf" : "#5f6b7a"), fillOpacity: sel || painted ? 0.95 : 0.7, radius: 3 };
  }
  function isSelected(kind, code) {
    if (S.selected && S.selected.kind === kind && S.selected.code === code) return true;
    return !!(kind === "compound" ? S.multi.compounds[code] : S.multi.buildings[code]);
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
  function toast(msg, kind) {
    var n = $("notice");
    n.hidden = false; n.className = "notice toast " + (kind || ""); n.innerHTML = msg;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { n.hidden = true; }, kind === "error" ? 7000 : 2600);
  }
  function emit(name, detail) {
    try { document.dispatchEvent(new CustomEvent(name, { detail: detail })); } catch (e) { /* a listener failed */ }
  }
  // 410: the session expired (or was continued elsewhere): say so, offer to reopen it with its edits
  function expired(e) {
    notice("<b>编辑会话已过期</b>（长时间未使用）。点击“重新打开”继续编辑，本页已做的修改会一并带回。<br>" +
      "<span>" + esc(e.message) + "</span><div class='notice-actions'><button id='reopen' type='button' class='primary'>" +
      "重新打开 <span>Reopen the session</span></button></div>", "error expired");
    document.body.dataset.session = "expired";
    $("reopen").addEventListener("click", reopen);
  }
  // 409 on an edit: the session changed in another tab; this page keeps what it shows
  function changedElsewhere(e) {
    notice("<b>编辑冲突</b>：此编辑会话已在其他窗口中修改，本页未做更改。请重新载入后再操作（已做的修改都保存在会话中）。<br>" +
      "<span>" + esc(e.message) + "</span><div class='notice-actions'><button id='reload' type='button' class='primary'>" +
      "重新载入 <span>Reload</span></button></div>", "error conflict");
    document.body.dataset.session = "conflict";
    $("reload").addEventListener("click", function () { S.changes = 0; location.reload(); });
  }
  function failed(what, e) {
    if (e.status === 410) expired(e);
    else if (e.status === 409) changedElsewhere(e);
    else toast("<b>" + what + "</b><br>" + esc(e.message), "error");
    document.body.dataset.lastError = String(e.status || "error");
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
      toast("已重新打开编辑会话 <span>session reopened, your edits are kept</span>");
      S.rev++; renderAll(); emit("grideditor:change", state());
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
    Object.keys(S.grids).forEach(function (c) { removeGrid(c); });
    S.order = d.grids.map(function (g) { return g.code; });
    d.grids.forEach(function (g) { S.grids[g.code] = g; });
    assignColours();
    S.order.forEach(function (c) { drawGrid(S.grids[c], S.grids[c].label); });
    declutter();
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
    if (!c.buildings.length) return (c.props.grids || []).slice();
    var set = {};
    c.buildings.forEach(function (b) { if (S.buildings[b].props.grid) set[S.buildings[b].props.grid] = 1; });
    return Object.keys(set).sort();
  }
  function gridIsEmpty(code) {
    if (!S.grids[code]) return false;
    for (var b in S.buildings) if (S.buildings[b].props.grid === code) return false;
    for (var c in S.compounds) {
      if (!S.compounds[c].buildings.length && (S.compounds[c].props.grids || []).indexOf(code) >= 0) return false;
    }
    return true;
  }

  // ---- geometry (lon/lat) -----------------------------------------------------------------------
  function polygonsOf(geom) {
    return !geom ? [] : geom.type === "Polygon" ? [geom.coordinates] : geom.type === "MultiPolygon" ? geom.coordinates : [];
  }
  function inRing(x, y, r) {
    var ins = false;
    for (var i = 0, j = r.length - 1; i < r.length; j = i++) {
      var xi = r[i][0], yi = r[i][1], xj = r[j][0], yj = r[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) ins = !ins;
    }
    return ins;
  }
  function inGeom(x, y, geom) {
    return polygonsOf(geom).some(function (p) {
      return inRing(x, y, p[0]) && !p.slice(1).some(function (h) { return inRing(x, y, h); });
    });
  }
  function bboxOf(geom) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    polygonsOf(geom).forEach(function (p) {
      p[0].forEach(function (q) { b[0] = Math.min(b[0], q[0]); b[1] = Math.min(b[1], q[1]); b[2] = Math.max(b[2], q[0]); b[3] = Math.max(b[3], q[1]); });
    });
    return b;
  }
  function ringArea(r) {
    var a = 0;
    for (var i = 0, j = r.length - 1; i < r.length; j = i++) a += r[j][0] * r[i][1] - r[i][0] * r[j][1];
    return a / 2;
  }
  function largestPolygon(geom) {
    var best = null, bestA = -1;
    polygonsOf(geom).forEach(function (p) { var a = Math.abs(ringArea(p[0])); if (a > bestA) { bestA = a; best = p; } });
    return best;
  }
  function largestRingCenter(geom) {
    var p = largestPolygon(geom);
    if (!p) return null;
    var r = p[0], a = 0, cx = 0, cy = 0;
    for (var i = 0, j = r.length - 1; i < r.length; j = i++) {
      var f = r[j][0] * r[i][1] - r[i][0] * r[j][1];
      a += f; cx += (r[j][0] + r[i][0]) * f; cy += (r[j][1] + r[i][1]) * f;
    }
    if (!a) return r[0];
    var c = [cx / (3 * a), cy / (3 * a)];
    if (inGeom(c[0], c[1], geom)) return c;
    // a concave outline: the middle of the widest horizontal run through the centre's latitude
    var xs = [];
    for (i = 0, j = r.length - 1; i < r.length; j = i++) {
      if ((r[i][1] > c[1]) !== (r[j][1] > c[1])) xs.push(r[i][0] + (c[1] - r[i][1]) * (r[j][0] - r[i][0]) / (r[j][1] - r[i][1]));
    }
    xs.sort(function (u, v) { return u - v; });
    var bestW = -1;
    for (i = 0; i + 1 < xs.length; i += 2) if (xs[i + 1] - xs[i] > bestW) { bestW = xs[i + 1] - xs[i]; c = [(xs[i] + xs[i + 1]) / 2, c[1]]; }
    return c;
  }
  function center(geom) {
    if (!geom) return null;
    if (geom.type === "Point") return geom.coordinates;
    var p = largestPolygon(geom);
    if (!p) return null;
    var r = p[0], x = 0, y = 0, n = Math.max(1, r.length - 1);
    for (var i = 0; i < n; i++) { x += r[i][0]; y += r[i][1]; }
    return [x / n, y / n];
  }

  // ---- drawing ---------------------------------------------------------------------------------
  function removeGrid(code) {
    if (gridLayers[code]) { map.removeLayer(gridLayers[code]); delete gridLayers[code]; }
    if (labelMarkers[code]) { map.removeLayer(labelMarkers[code]); delete labelMarkers[code]; }
    delete S.grids[code];
  }
  function labelHtml(g) {
    return "<div class='grid-label status-" + esc(g.status) + "' data-code='" + esc(g.code) + "' title='" + esc(g.code) + " · " +
      STATUS_ZH[g.status] + " " + STATUS_EN[g.status] + "'><b><i class='st' aria-hidden='true'>" + (STATUS_ICON[g.status] || "") +
      "</i>" + esc(shortCode(g.code)) + "</b><span>" + fmt.format(g.households) + " 户</span></div>";
  }
  function drawGrid(g, labelAt) {
    if (gridLayers[g.code]) { map.removeLayer(gridLayers[g.code]); delete gridLayers[g.code]; }
    if (labelMarkers[g.code]) { map.removeLayer(labelMarkers[g.code]); delete labelMarkers[g.code]; }
    if (!g.geometry) return;
    var layer = L.geoJSON({ type: "Feature", geometry: g.geometry, properties: {} },
      { style: function () { return gridStyle(g); }, pmIgnore: true, snapIgnore: false });
    layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onGridClick(g.code, e); });
    layer.on("mouseover", function () { hotRow(g.code, true); });
    layer.on("mouseout", function () { hotRow(g.code, false); });
    layer.addTo(map);
    gridLayers[g.code] = layer;
    var at = labelAt || largestRingCenter(g.geometry);
    if (at) {
      g.label = at;
      var icon = L.divIcon({ className: "grid-label-anchor", iconSize: [0, 0], html: labelHtml(g) });
      labelMarkers[g.code] = L.marker([at[1], at[0]], { icon: icon, pane: "labels", interactive: false, keyboard: false,
        pmIgnore: true, snapIgnore: true }).addTo(map);
    }
  }
  function restyleGrids() {
    S.order.forEach(function (c) { if (gridLayers[c]) gridLayers[c].setStyle(gridStyle(S.grids[c])); });
  }

  // labels must not overlap: biggest grids first; a label that collides is nudged, else hidden
  var OFFSETS = [[0, 0], [0, -20], [0, 20], [-34, 0], [34, 0], [-30, -18], [30, 18], [30, -18], [-30, 18]];
  function declutter() {
    var mapBox = map.getContainer().getBoundingClientRect();
    var items = S.order.filter(function (c) { return labelMarkers[c] && labelMarkers[c]._icon; }).map(function (c) {
      var el = labelMarkers[c]._icon.firstChild;
      el.style.transform = ""; el.classList.remove("collides");
      return { code: c, el: el };
    });
    items.forEach(function (it) { it.r = it.el.getBoundingClientRect(); });
    items.sort(function (a, b) {
      if (a.code === S.current) return -1;
      if (b.code === S.current) return 1;
      return (S.grids[b.code].households - S.grids[a.code].households) || (a.code < b.code ? -1 : 1);
    });
    var placed = [], hidden = 0;
    items.forEach(function (it) {
      var ok = null;
      for (var k = 0; k < OFFSETS.length && !ok; k++) {
        var o = OFFSETS[k];
        var r = { l: it.r.left + o[0] - 2, t: it.r.top + o[1] - 2, r: it.r.right + o[0] + 2, b: it.r.bottom + o[1] + 2 };
        var inside = r.l >= mapBox.left && r.r <= mapBox.right && r.t >= mapBox.top && r.b <= mapBox.bottom;
        var free = placed.every(function (p) { return r.r <= p.l || r.l >= p.r || r.b <= p.t || r.t >= p.b; });
        if (free && (inside || k === 0)) ok = { r: r, o: o };  // a label cut by the map's edge stays where it is
      }
      if (ok) {
        placed.push(ok.r);
        if (ok.o[0] || ok.o[1]) it.el.style.transform = "translate(" + ok.o[0] + "px," + ok.o[1] + "px)";
      } else { it.el.classList.add("collides"); hidden++; }
    });
    document.body.dataset.labelsHidden = String(hidden);
  }
  map.on("zoomend moveend resize", function () { declutter(); });

  function drawUnits(data) {
    var cl = L.geoJSON(data.compounds, {
      filter: function (f) { return !!f.geometry; },
      style: function (f) { return compoundStyle(f.properties.code); },
      pmIgnore: true,
      onEachFeature: function (f, layer) {
        var c = S.compounds[f.properties.code];
        c.layer = layer; c.bbox = bboxOf(f.geometry); c.geometry = f.geometry;
        layer.options.className = "compound-shape compound-" + f.properties.code;
        layer.bindTooltip(function () { return compoundTip(f.properties.code); }, { sticky: true, className: "unit-tip" });
        layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onUnitClick("compound", f.properties.code, e); });
      }
    }).addTo(map);
    var bl = L.geoJSON(data.buildings, {
      style: function (f) { return buildingStyle(f.properties); },
      pmIgnore: true, snapIgnore: true,
      pointToLayer: function (f, ll) { return L.circleMarker(ll, Object.assign(buildingStyle(f.properties), { pmIgnore: true, snapIgnore: true })); },
      onEachFeature: function (f, layer) {
        var b = S.buildings[f.properties.code];
        b.layer = layer; b.at = center(f.geometry); b.geometry = f.geometry;
        layer.options.className = "building-shape building-" + f.properties.code;
        layer.bindTooltip(function () { return buildingTip(f.properties.code); }, { sticky: true, className: "unit-tip" });
        layer.on("click", function (e) {
          L.DomEvent.stopPropagation(e);
          var oe = e.originalEvent;
          var single = mode() === "building" || oe.altKey || !f.properties.compound;
          onUnitClick(single ? "building" : "compound", single ? f.properties.code : f.properties.compound, e);
        });
      }
    }).addTo(map);
    S.unitLayers = [cl, bl];
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
    var gb = window.gridBalance;
    var cell = gb && typeof gb.cell === "function" ? gb.cell : null;
    tb.innerHTML = "";
    S.order.forEach(function (code) {
      var g = S.grids[code];
      var tr = document.createElement("tr");
      tr.dataset.code = code; tr.dataset.households = g.households; tr.dataset.people = g.people; tr.dataset.status = g.status;
      tr.className = "status-" + g.status + (code === S.current ? " current" : "");
      var nums = null;
      if (cell) { try { nums = cell(g, S.rules); } catch (e) { nums = null; } }
      if (nums == null) nums = "<td class='num'>" + fmt.format(g.households) + "</td><td class='num'>" + fmt.format(g.people) + "</td>";
      else nums = "<td class='num balance' colspan='2'>" + nums + "</td>";
      tr.innerHTML = "<td class='code' title='" + esc(code) + "'><i class='swatch' style='background:" + esc(gridColor(code)) +
        "'></i><b>" + esc(shortCode(code)) + "</b></td>" + nums +
        "<td title='" + STATUS_EN[g.status] + "'><i class='st' aria-hidden='true'>" + (STATUS_ICON[g.status] || "") + "</i>" +
        STATUS_ZH[g.status] + (g.breaks.length ? " <em class='flag' title='规则问题 rule breaks'>" + g.breaks.length + "</em>" : "") + "</td>";
      tr.addEventListener("click", function () { setCurrent(code); });
      tr.addEventListener("dblclick", function () {
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
    if (l) l.setStyle(on ? { weight: 4, color: "#13294b", dashArray: null } : gridStyle(S.grids[code]));
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

  function multiList() {
    return { compounds: Object.keys(S.multi.compounds).sort(), buildings: Object.keys(S.multi.buildings).sort() };
  }
  function renderSelection() {
    var el = $("selection");
    var s = S.selected, m = multiList();
    var nMulti = m.compounds.length + m.buildings.length;
    $("cancel").disabled = !s && !nMulti;
    map.getContainer().classList.toggle("picking", !!s || nMulti > 0);
    el.dataset.count = String(nMulti || (s ? 1 : 0));
    if (nMulti) {
      var h = 0, p = 0;
      m.compounds.forEach(function (c) { h += S.compounds[c].props.households; p += S.compounds[c].props.people; });
      m.buildings.forEach(function (b) { h += S.buildings[b].props.households; p += S.buildings[b].props.people; });
      el.className = "selection multi"; el.dataset.kind = "multi"; el.dataset.code = "";
      el.innerHTML = "<div class='what'>已选 " + m.compounds.length + " 个小区、" + m.buildings.length + " 栋楼 <span>selected: " +
        m.compounds.length + " compounds, " + m.buildings.length + " buildings</span></div><div class='nums'>" + fmt.format(h) +
        " 户 · " + fmt.format(p) + " 人</div><div class='next'>→ 点击目标网格（Shift 点击继续多选） <span>click the target grid (Shift-click to add more)</span></div>";
      return;
    }
    if (!s) { el.className = "selection empty"; el.dataset.kind = ""; el.dataset.code = ""; el.innerHTML = "未选中 <span>Nothing selected</span>"; return; }
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
    var shown = (res.grids || []).filter(function (g) { return S.grids[g.code]; });
    var rows = shown.map(function (g) {
      var b = before[g.code] || { households: 0, people: 0 };
      var dh = g.households - b.households, dp = g.people - b.people;
      return "<tr class='status-" + g.status + "'><td><b>" + esc(shortCode(g.code)) + "</b></td><td class='num'>" +
        fmt.format(b.households) + " → <b>" + fmt.format(g.households) + "</b> <em>" + (dh > 0 ? "+" : "") + dh +
        "</em></td><td class='num'>" + fmt.format(b.people) + " → <b>" + fmt.format(g.people) + "</b> <em>" +
        (dp > 0 ? "+" : "") + dp + "</em></td><td title='" + STATUS_EN[g.status] + "'><i class='st'>" + (STATUS_ICON[g.status] || "") +
        "</i>" + STATUS_ZH[g.status] + "</td></tr>";
    }).join("");
    var gone = (res.removed || []).map(function (c) { return "<tr class='removed'><td><b>" + esc(shortCode(c)) + "</b></td><td colspan='3'>已删除 <span>removed</span></td></tr>"; }).join("");
    var breaks = [];
    shown.forEach(function (g) {
      (g.breaks || []).forEach(function (b) { breaks.push("<li><b>" + esc(shortCode(g.code)) + "</b> " + esc(RULE_ZH[b.rule] || b.rule) + " <span>" + esc(b.message) + "</span></li>"); });
    });
    var split = (res.split_compounds || []).length ?
      "<div class='warnline'>⚠ 被边界切开的小区 compounds cut by a boundary: " + res.split_compounds.map(function (c) {
        var code = typeof c === "string" ? c : (c.code || c.compound || "");
        var cc = S.compounds[code];
        return "<span class='chip-unit'>" + esc(cc ? cc.props.name || code : code) + "</span>";
      }).join("") + "</div>" : "";
    el.innerHTML = "<div class='moved'>" + label + "</div><table class='mini'><thead><tr><th>网格</th><th class='num'>户 HH</th>" +
      "<th class='num'>人 People</th><th>状态 <span>Status</span></th></tr></thead><tbody>" + rows + gone + "</tbody></table>" + split +
      (breaks.length ? "<ul class='breaks compact'>" + breaks.join("") + "</ul>" : "<div class='okline'>✓ 相关网格均无规则问题 <span>no rule breaks in the grids touched</span></div>") +
      "<div class='timing'>复核用时 re-checked in " + res.ms + " ms</div>";
  }

  function renderTools() {
    Object.keys(TOOLS).forEach(function (t) {
      var b = $("tool-" + t);
      if (b) { b.setAttribute("aria-pressed", String(S.tool === t)); b.disabled = S.busy && S.tool !== t; }
    });
    var del = $("tool-delete");
    del.disabled = S.busy || !S.current || !gridIsEmpty(S.current);
    var hint = TOOLS[S.tool].hint;
    if ((S.tool === "paint" || S.tool === "lasso") && !S.target) hint = "<b>请先选择目标网格 ▸</b> <span>choose the target grid first</span><br>" + hint;
    if (S.tool === "reshape" && !S.current) hint = "<b>先点击要调整的网格</b> <span>click the grid to reshape first</span><br>" + hint;
    if (S.tool === "merge" && S.mergeFrom) hint = "<b>已选网格 " + esc(shortCode(S.mergeFrom)) + "，再点击要并入的相邻网格</b> <span>now click the neighbour to merge into it</span>";
    $("tool-hint").innerHTML = hint;
    var sel = $("target");
    var want = S.order.map(function (c) { return c; }).join(",");
    if (sel.dataset.codes !== want) {
      sel.innerHTML = "<option value=''>— 目标网格 target grid —</option>" + S.order.map(function (c) {
        return "<option value='" + esc(c) + "'>" + esc(shortCode(c)) + " (" + esc(c) + ")</option>";
      }).join("");
      sel.dataset.codes = want;
    }
    sel.value = S.target && S.grids[S.target] ? S.target : "";
    $("current").textContent = S.current ? shortCode(S.current) + " · " + fmt.format(S.grids[S.current].households) + " 户" : "—";
    document.body.dataset.tool = S.tool;
    document.body.dataset.current = S.current || "";
  }

  function renderAll() {
    if (S.target && !S.grids[S.target]) S.target = null;
    if (S.current && !S.grids[S.current]) S.current = null;
    renderSummary(); renderTable(); renderBreaks(); renderStuck(); renderSelection(); restyleUnits(); renderTools();
    $("undo").disabled = !S.undo.length || S.busy;
    $("redo").disabled = !S.redo.length || S.busy;
    $("save").disabled = S.changes === 0 || S.busy || !S.sid;
    document.body.dataset.dirty = S.changes > 0 ? "1" : "";
    document.body.dataset.undo = String(S.undo.length);
    document.body.dataset.redo = String(S.redo.length);
    document.body.dataset.rev = String(S.rev);
  }

  // ---- interaction -----------------------------------------------------------------------------
  function mode() { return document.querySelector("input[name=mode]:checked").value; }
  function snapping() { var c = $("snap"); return !c || c.checked; }
  function countsNow() {
    var before = {};
    S.order.forEach(function (c) { before[c] = { households: S.grids[c].households, people: S.grids[c].people }; });
    return before;
  }
  function clearSelection() {
    S.selected = null; S.multi = { compounds: {}, buildings: {} };
    renderSelection(); restyleUnits();
  }

  function setCurrent(code) {
    S.current = code && S.grids[code] ? code : null;
    if (S.current && (S.tool === "paint" || S.tool === "lasso" || !S.target)) S.target = S.current;
    restyleGrids();
    if (S.tool === "reshape") startReshape();
    renderTable(); renderTools(); declutter();
  }

  function onUnitClick(kind, code, e) {
    if (S.busy || S.tool !== "select") return;
    var oe = e && e.originalEvent;
    if (oe && oe.shiftKey) {  // multi-select: compounds in compound mode, buildings in building mode
      var k = kind === "compound" ? "compounds" : "buildings";
      if (S.selected) { S.multi[S.selected.kind === "compound" ? "compounds" : "buildings"][S.selected.code] = 1; S.selected = null; }
      if (S.multi[k][code]) delete S.multi[k][code]; else S.multi[k][code] = 1;
    } else {
      S.multi = { compounds: {}, buildings: {} };
      if (S.selected && S.selected.kind === kind && S.selected.code === code) S.selected = null;
      else S.selected = { kind: kind, code: code };
    }
    renderSelection(); restyleUnits();
  }

  function onGridClick(code) {
    if (S.busy) return;
    if (S.tool === "merge") return mergePick(code);
    if (S.tool !== "select") { setCurrent(code); return; }
    var m = multiList();
    if (m.compounds.length + m.buildings.length) {
      S.multi = { compounds: {}, buildings: {} };
      edit({ op: "assign", grid: code, compounds: m.compounds, buildings: m.buildings },
        "多选移入 " + (m.compounds.length + m.buildings.length) + " 个单元 → 网格 <b>" + esc(shortCode(code)) + "</b> <span>multi-select moved</span>");
      return;
    }
    if (!S.selected) { setCurrent(code); return; }
    var s = S.selected;
    var current = s.kind === "compound" ? compoundGrids(s.code) : [S.buildings[s.code].props.grid];
    if (current.length === 1 && current[0] === code) {
      toast("已在网格 " + esc(shortCode(code)) + " 中 <span>already in this grid</span>");
      return;
    }
    var prev = {};
    if (s.kind === "compound") S.compounds[s.code].buildings.forEach(function (b) { prev[b] = S.buildings[b].props.grid; });
    else prev[s.code] = S.buildings[s.code].props.grid;
    var entry = { type: "move", kind: s.kind, code: s.code, to: code, prev: prev, prevGrids: current,
      label: unitName(s.kind, s.code) + " → 网格 " + esc(shortCode(code)) };
    S.selected = null;
    setBusy(true);
    doMove(s.kind, s.code, code, true).then(function (ok) {
      if (ok) { S.undo.push(entry); S.redo = []; S.changes++; }
      finish(ok);
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
    declutter();
  }

  function doMove(kind, code, to, show) {
    var before = countsNow();
    var body = { to: to, revision: S.revision };
    body[kind] = code;
    return api("POST", "/api/grids/sessions/" + S.sid + "/move", body).then(function (res) {
      S.revision = res.revision;
      applyMove(kind, code, to, res);
      if (show) renderLastMove(res, before, unitName(kind, code) + " → 网格 <b>" + esc(shortCode(to)) + "</b>" +
        " <span class='muted'>(" + esc(to) + ")</span>");
      return true;
    }).catch(function (e) {
      failed("移动失败 Move failed", e);
      return false;
    });
  }

  // an edit answer: where units went, the touched grids re-checked, grids added and removed
  function applyEdit(res) {
    S.revision = res.revision;
    var touched = {};
    Object.keys(res.changed || {}).forEach(function (k) {
      var g = res.changed[k];
      if (S.buildings[k]) {
        S.buildings[k].props.grid = g;
        if (S.buildings[k].props.compound) touched[S.buildings[k].props.compound] = 1;
        return;
      }
      var cc = k.indexOf("compound:") === 0 ? k.slice(9) : k;
      if (S.compounds[cc]) S.compounds[cc].props.grids = g ? [g] : [];
    });
    Object.keys(touched).forEach(function (c) { if (S.compounds[c]) S.compounds[c].props.grids = compoundGrids(c); });
    (res.removed || []).forEach(removeGrid);
    if (res.codes) S.order = res.codes.slice();
    (res.grids || []).forEach(function (g) {
      if (S.order.indexOf(g.code) < 0) S.order.push(g.code);
      S.grids[g.code] = Object.assign({}, S.grids[g.code] || {}, g, { label: null });
    });
    Object.keys(S.grids).forEach(function (c) { if (S.order.indexOf(c) < 0) removeGrid(c); });
    S.order = S.order.filter(function (c) { return !!S.grids[c]; });
    assignColours();
    (res.grids || []).forEach(function (g) { drawGrid(S.grids[g.code]); });
    if (S.mergeFrom && !S.grids[S.mergeFrom]) S.mergeFrom = null;
    restyleGrids();
    declutter();
  }

  function setBusy(on) {
    S.busy = on;
    if (on) { document.body.dataset.busy = "1"; $("undo").disabled = true; $("redo").disabled = true; $("save").disabled = true; }
    else delete document.body.dataset.busy;
  }

  // one edit of the contract POST /sessions/{sid}/edit; history: null (a new edit), "undo" or "redo"
  function edit(body, label, history) {
    if (S.busy) return Promise.resolve(false);
    setBusy(true);
    var before = countsNow();
    var sent = Object.assign({}, body, { revision: S.revision });
    return api("POST", "/api/grids/sessions/" + S.sid + "/edit", sent).then(function (res) {
      applyEdit(res);
      S.changes++;
      var entry = { type: "edit", undo: res.undo, label: label };
      if (history === "undo") S.redo.push(entry);
      else { S.undo.push(entry); if (!history) S.redo = []; }
      if (res.added && res.added.length === 1 && (body.op === "draw")) setCurrentQuiet(res.added[0]);
      var extra = (res.added || []).length ? " · 新增 added " + res.added.map(shortCode).join(", ") : "";
      var m = res.moved || {};
      renderLastMove(res, before, label + extra + (m.buildings != null ? "<div class='muted'>移动 " + fmt.format(m.buildings) +
        " 栋 · " + fmt.format(m.households || 0) + " 户 · " + fmt.format(m.people || 0) + " 人 <span>moved</span></div>" : ""));
      return true;
    }).catch(function (e) {
      failed((OP_ZH[body.op] || body.op) + " 失败 failed", e);
      return false;
    }).then(function (ok) { finish(ok); return ok; });
  }
  function setCurrentQuiet(code) { S.current = code; }

  function finish(changed) {
    setBusy(false);
    S.rev++;
    renderAll();
    if (S.tool === "reshape") startReshape();
    else if (S.tool === "draw" || S.tool === "lasso" || S.tool === "split") startDraw();
    if (changed !== false) emit("grideditor:change", state());
  }

  function undoMove(e) {
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
      chain = chain.then(function (ok) { return !ok || !st[2] ? ok : doMove(st[0], st[1], st[2], false); });
    });
    return chain;
  }

  function undo() {
    if (S.busy || !S.undo.length) return;
    var e = S.undo.pop();
    clearSelection();
    if (e.type === "edit") {
      edit(e.undo, "↶ 已撤销 Undone: " + e.label, "undo").then(function (ok) { if (!ok) S.undo.push(e); renderAll(); });
      return;
    }
    var before = countsNow();
    setBusy(true);
    undoMove(e).then(function (ok) {
      if (ok) {
        S.redo.push(e); S.changes++;
        var grids = {};
        [e.to].concat(e.prevGrids).forEach(function (c) { if (c && S.grids[c]) grids[c] = 1; });
        var res = { grids: Object.keys(grids).sort().map(function (c) { return S.grids[c]; }), ms: "–" };
        renderLastMove(res, before, "↶ 已撤销 Undone: " + unitName(e.kind, e.code) + " → 网格 <b>" +
          esc(e.prevGrids.map(shortCode).join(", ")) + "</b>");
      } else S.undo.push(e);
      finish(ok);
    });
  }

  function redo() {
    if (S.busy || !S.redo.length) return;
    var e = S.redo.pop();
    clearSelection();
    if (e.type === "edit") {
      edit(e.undo, "↷ 已重做 Redone: " + e.label, "redo").then(function (ok) { if (!ok) S.redo.push(e); renderAll(); });
      return;
    }
    setBusy(true);
    doMove(e.kind, e.code, e.to, true).then(function (ok) {
      if (ok) { S.undo.push(e); S.changes++; } else S.redo.push(e);
      finish(ok);
    });
  }

  // ---- tools -----------------------------------------------------------------------------------
  function setTool(t) {
    if (!TOOLS[t] || S.busy) return;
    stopTool();
    S.tool = t;
    var cont = map.getContainer();
    Object.keys(TOOLS).forEach(function (k) { cont.classList.toggle("tool-" + k, k === t); });
    if (t !== "select") clearSelection();
    if (t === "merge") S.mergeFrom = null;
    if (t === "paint") { map.dragging.disable(); brush.addTo(map); }
    if (t === "draw" || t === "lasso" || t === "split") startDraw();
    if (t === "reshape") startReshape();
    restyleGrids();
    renderTools();
  }
  function stopTool() {
    if (map.pm) map.pm.disableDraw();
    stopReshape();
    map.dragging.enable();
    if (map.hasLayer(brush)) map.removeLayer(brush);
    S.mergeFrom = null; S.paint = null;
  }
  function drawStyle() {
    var c = S.tool === "split" ? "#13294b" : S.tool === "lasso" ? "#6a3d9a" : "#0b4f8a";
    return { templineStyle: { color: c, weight: 2.5 }, hintlineStyle: { color: c, dashArray: [5, 5] },
      pathOptions: { color: c, weight: 2.5, fillOpacity: 0.15, pane: "edit" } };
  }
  function startDraw() {
    if (!map.pm || S.busy) return;
    if (map.pm.globalDrawModeEnabled()) return;
    if (S.tool === "lasso" && !S.target) return;
    map.pm.enableDraw(S.tool === "split" ? "Line" : "Polygon",
      Object.assign({ snappable: snapping(), snapDistance: 14, allowSelfIntersection: false, continueDrawing: false }, drawStyle()));
  }
  map.on("pm:create", function (e) {
    var gj = e.layer.toGeoJSON().geometry;
    map.removeLayer(e.layer);
    if (S.tool === "draw") {
      edit({ op: "draw", geometry: gj }, "画新网格 <span>Drew a new grid</span>");
    } else if (S.tool === "lasso") {
      if (!S.target) { toast("请先选择目标网格 <span>choose the target grid first</span>", "error"); return; }
      edit({ op: "assign", grid: S.target, geometry: gj }, "套索移入 → 网格 <b>" + esc(shortCode(S.target)) + "</b> <span>lasso</span>");
    } else if (S.tool === "split") {
      var g = splitTarget(gj);
      if (!g) { toast("切分线需穿过一个网格 <span>the line must cross a grid</span>", "error"); startDraw(); return; }
      edit({ op: "split", grid: g, geometry: gj }, "切分网格 <b>" + esc(shortCode(g)) + "</b> <span>Split</span>");
    }
  });
  // the grid a split line crosses: the current grid if the line runs through it, else the one it runs through most
  function splitTarget(line) {
    var pts = [], c = line.coordinates;
    for (var i = 0; i + 1 < c.length; i++) {
      for (var k = 0; k < 20; k++) pts.push([c[i][0] + (c[i + 1][0] - c[i][0]) * k / 20, c[i][1] + (c[i + 1][1] - c[i][1]) * k / 20]);
    }
    var best = null, bestN = 0;
    S.order.forEach(function (code) {
      var g = S.grids[code];
      if (!g.geometry) return;
      var n = pts.filter(function (p) { return inGeom(p[0], p[1], g.geometry); }).length;
      if (code === S.current && n) n += pts.length;
      if (n > bestN) { bestN = n; best = code; }
    });
    return best;
  }

  // reshape: the current grid's (largest) outline as an editable polygon; each released vertex is one edit
  function startReshape() {
    stopReshape();
    var g = S.current && S.grids[S.current];
    if (!g || !g.geometry || !map.pm) return;
    var p = largestPolygon(g.geometry);
    var latlngs = p.map(function (r) { return r.slice(0, -1).map(function (q) { return [q[1], q[0]]; }); });
    S.shape = L.polygon(latlngs, { pane: "edit", color: "#13294b", weight: 2.5, fillOpacity: 0.06, className: "reshape-shape",
      snapIgnore: true });
    S.shape.addTo(map);
    S.shape.pm.enable({ allowSelfIntersection: false, snappable: snapping(), snapDistance: 14, draggable: false });
    S.shape.on("pm:markerdragend pm:vertexremoved", function () { setTimeout(sendReshape, 0); });
    document.body.dataset.reshaping = S.current;
  }
  function stopReshape() {
    if (S.shape) { try { S.shape.pm.disable(); } catch (e) { /* already off */ } map.removeLayer(S.shape); S.shape = null; }
    delete document.body.dataset.reshaping;
  }
  function sendReshape() {
    if (!S.shape || S.busy) return;
    var gj = S.shape.toGeoJSON().geometry;
    var code = S.current;
    edit({ op: "reshape", grid: code, geometry: gj }, "调整边界 网格 <b>" + esc(shortCode(code)) + "</b> <span>Reshaped</span>");
  }

  function mergePick(code) {
    if (!S.mergeFrom || S.mergeFrom === code) { S.mergeFrom = code; S.current = code; restyleGrids(); renderTools(); renderTable(); return; }
    var a = S.mergeFrom, b = code;
    var ga = S.grids[a], gb = S.grids[b];
    var ok = window.confirm("合并网格 " + shortCode(a) + "（" + ga.households + " 户）与 " + shortCode(b) + "（" + gb.households +
      " 户）？合并后共 " + (ga.households + gb.households) + " 户，网格 " + shortCode(b) + " 被删除。\n" +
      "Merge grid " + b + " into " + a + "?");
    if (!ok) { S.mergeFrom = null; restyleGrids(); renderTools(); return; }
    S.mergeFrom = null;
    edit({ op: "merge", grid: a, other: b }, "合并网格 <b>" + esc(shortCode(b)) + "</b> → <b>" + esc(shortCode(a)) + "</b> <span>Merged</span>");
  }

  function deleteGrid() {
    var c = S.current;
    if (S.busy || !c || !gridIsEmpty(c)) return;
    edit({ op: "delete", grid: c }, "删除空网格 <b>" + esc(shortCode(c)) + "</b> <span>Deleted an empty grid</span>");
  }

  // paint: press and drag; units under the brush are collected and sent as one assign on release
  function paintAt(latlng, pt) {
    var P = S.paint;
    var pts = [pt];
    if (P.last) {  // fill the gaps between mouse events
      var d = P.last.distanceTo(pt), n = Math.floor(d / (BRUSH_PX / 2));
      for (var i = 1; i < n; i++) pts.push(P.last.add(pt.subtract(P.last).multiplyBy(i / n)));
    }
    P.last = pt;
    var byCompound = mode() === "compound";
    pts.forEach(function (q) {
      var ll = map.containerPointToLatLng(q);
      Object.keys(S.compounds).forEach(function (c) {
        var cc = S.compounds[c], b = cc.bbox;
        if (!byCompound || !b || ll.lng < b[0] || ll.lng > b[2] || ll.lat < b[1] || ll.lat > b[3]) return;
        if (inGeom(ll.lng, ll.lat, cc.geometry)) paintUnit("compound", c);
      });
      Object.keys(S.buildings).forEach(function (code) {
        var bb = S.buildings[code];
        if (!bb.at) return;
        var bp = map.latLngToContainerPoint([bb.at[1], bb.at[0]]);
        var hit = bp.distanceTo(q) <= BRUSH_PX || (bb.geometry && bb.geometry.type !== "Point" && inGeom(ll.lng, ll.lat, bb.geometry));
        if (!hit) return;
        if (byCompound && bb.props.compound) paintUnit("compound", bb.props.compound);
        else paintUnit("building", code);
      });
    });
  }
  function paintUnit(kind, code) {
    var P = S.paint;
    if (kind === "compound") {
      if (P.compounds[code]) return;
      var g = compoundGrids(code);
      if (g.length === 1 && g[0] === S.target) return;
      P.compounds[code] = 1;
      if (S.compounds[code].layer) S.compounds[code].layer.setStyle(compoundStyle(code));
      S.compounds[code].buildings.forEach(function (b) { if (S.buildings[b].layer) S.buildings[b].layer.setStyle(buildingStyle(S.buildings[b].props)); });
    } else {
      if (P.buildings[code] || S.buildings[code].props.grid === S.target) return;
      P.buildings[code] = 1;
      if (S.buildings[code].layer) S.buildings[code].layer.setStyle(buildingStyle(S.buildings[code].props));
    }
    P.n++;
    document.body.dataset.painted = String(P.n);
  }
  map.on("mousedown", function (e) {
    if (S.tool !== "paint" || S.busy) return;
    if (!S.target) { toast("请先选择目标网格 <span>choose the target grid first</span>", "error"); return; }
    S.paint = { compounds: {}, buildings: {}, n: 0, last: null };
    document.body.dataset.painting = "1";
    paintAt(e.latlng, e.containerPoint);
  });
  map.on("mousemove", function (e) {
    if (S.tool !== "paint") return;
    brush.setLatLng(e.latlng);
    if (S.paint && !S.busy) paintAt(e.latlng, e.containerPoint);
  });
  document.addEventListener("mouseup", function () {
    var P = S.paint;
    if (!P) return;
    delete document.body.dataset.painting;
    var compounds = Object.keys(P.compounds).sort(), buildings = Object.keys(P.buildings).sort();
    if (!compounds.length && !buildings.length) { S.paint = null; restyleUnits(); return; }
    var t = S.target;
    edit({ op: "assign", grid: t, compounds: compounds, buildings: buildings },
      "涂刷 " + (compounds.length + buildings.length) + " 个单元 → 网格 <b>" + esc(shortCode(t)) + "</b> <span>Painted</span>")
      .then(function () { S.paint = null; restyleUnits(); });
  });

  // ---- save --------------------------------------------------------------------------------------
  function save(opts) {
    if (S.busy || !S.sid) return;
    opts = opts || {};
    setBusy(true); renderAll();
    var ok = false;
    api("POST", "/api/grids/sessions/" + S.sid + "/save", { revision: S.revision, rebase: !!opts.rebase }).then(function (r) {
      var el = $("saved");
      S.saved = r.version; S.changes = 0; ok = true;
      el.hidden = false;
      el.dataset.version = r.version;
      el.innerHTML = "✓ 已保存为草稿 v" + r.version + " <span>Saved as draft version " + r.version + "</span>" +
        "<br><a href='/api/grids/map/" + encodeURIComponent(S.community.code) + "?plan=" + r.version + "' target='_blank'>查看方案图 View plan map</a>" +
        " · 启用请在“方案版本”中操作 <span>(activate it in the plan versions panel)</span>" +
        (r.warning ? "<div class='warn' id='save-warning'>⚠ " + esc(r.warning) + "</div>" : "");
      conflictBox(null);
      loadPlanInfo();
      emit("grideditor:saved", { version: r.version, parent_version: r.parent_version });
    }).catch(function (e) {
      var c = e.status === 409 && e.body && e.body.conflict;
      if (c) {  // another version was activated since this session was opened: nothing saved, every edit kept
        conflictBox("<div class='conflict' id='save-conflict' data-active='" + esc(c.active_version) + "'>" +
          "<b>方案冲突，未保存</b>：本会话基于第 " + esc(c.parent_version == null ? "—" : c.parent_version) +
          " 版，之后第 " + esc(c.active_version) + " 版已由 " + esc(c.activated_by || "命令行") + " 启用，有 " +
          esc(c.buildings_changed) + " 栋楼栋的网格不同。会话中的修改都还在。" +
          (c.diff ? " <a href='" + esc(c.diff) + "' target='_blank'>查看差异 View the difference</a>" : "") +
          "<details><summary>详情 <span>Details</span></summary><span>" + esc(e.message) + "</span></details></div>" +
          "<button id='save-anyway' type='button'>仍然保存为草稿（基于新启用方案） <span>Rebase and save as a draft</span></button>" +
          "<button id='conflict-reload' type='button' class='plain'>放弃修改，载入启用方案 <span>Discard my edits and reload the active plan</span></button>");
        $("save-anyway").addEventListener("click", function () { save({ rebase: true }); });
        $("conflict-reload").addEventListener("click", function () {
          open({ plan: null }).then(function () { conflictBox(null); }, function () { /* kept */ });
        });
        document.body.dataset.lastError = "409";
        return;
      }
      failed("保存失败 Save failed", e);
    }).then(function () { finish(ok); });
  }

  function conflictBox(html) {
    var el = $("conflict");
    el.hidden = !html;
    el.innerHTML = html || "";
  }

  document.addEventListener("gridplans:activated", function () { loadPlanInfo(); });

  function loadPlanInfo() {
    return api("GET", "/api/grids/plans/" + encodeURIComponent(communityCode)).then(function (plans) {
      var active = (plans || []).filter(function (p) { return p.status === "active"; })[0];
      var drafts = (plans || []).filter(function (p) { return p.status === "draft"; }).length;
      var on = S.plan_version != null ? "编辑第 " + S.plan_version + " 版 editing v" + S.plan_version + " · " : "";
      $("plan-info").textContent = on + (active ? "启用方案 第 " + active.version + " 版 active plan v" + active.version : "无启用方案 no active plan") +
        " · 草稿 drafts: " + drafts;
    }).catch(function () { $("plan-info").textContent = ""; });
  }

  // ---- the page's API for the plan panel ---------------------------------------------------------------
  function state() {
    var grids = {};
    S.order.forEach(function (c) { var g = Object.assign({}, S.grids[c]); delete g.label; grids[c] = g; });
    return { sid: S.sid, community: S.community ? S.community.code : communityCode, community_name: S.community ? S.community.name : null,
      revision: S.revision, base_version: S.base_version, plan_version: S.plan_version, dirty: S.changes > 0,
      order: S.order.slice(), grids: grids, rules: S.rules };
  }

  function open(opts) {
    opts = opts || {};
    if (S.busy) return Promise.reject(new Error("忙 busy"));
    if (S.changes > 0 && !window.confirm("本页有未保存的修改，打开其他版本将丢弃这些修改。继续？\nThere are unsaved edits: open another version and discard them?")) {
      return Promise.reject(new Error("已取消 cancelled"));
    }
    return load(opts.plan == null ? null : opts.plan);
  }

  function highlight(codes, opts) {
    var color = (opts && opts.color) || "#D55E00";
    S.highlight = {};
    (codes || []).forEach(function (c) { if (S.buildings[c]) S.highlight[c] = color; });
    restyleUnits();
    Object.keys(S.highlight).forEach(function (c) { var l = S.buildings[c].layer; if (l && l.bringToFront) l.bringToFront(); });
    document.body.dataset.highlighted = String(Object.keys(S.highlight).length);
  }
  function clearHighlight() { highlight([]); }

  // ---- load --------------------------------------------------------------------------------------
  function clearMap() {
    stopTool();
    Object.keys(S.grids).forEach(removeGrid);
    Object.keys(gridLayers).forEach(function (c) { map.removeLayer(gridLayers[c]); delete gridLayers[c]; });
    Object.keys(labelMarkers).forEach(function (c) { map.removeLayer(labelMarkers[c]); delete labelMarkers[c]; });
    S.unitLayers.forEach(function (l) { map.removeLayer(l); });
    if (boundaryLayer) { map.removeLayer(boundaryLayer); boundaryLayer = null; }
    S.unitLayers = []; S.grids = {}; S.order = []; S.compounds = {}; S.buildings = {};
  }

  function load(plan) {
    setBusy(true);
    notice("正在加载… <span>Loading…</span>");
    var body = { community: communityCode };
    if (plan != null) body.plan = plan;
    var opened;
    return api("POST", "/api/grids/sessions", body).then(function (s) {
      opened = s;
      return api("GET", "/api/grids/sessions/" + s.session + "/layers");
    }).then(function (d) {
      clearMap();
      S.sid = opened.session;
      S.community = d.community; S.rules = d.rules; S.revision = d.revision;
      S.base_version = d.base_version != null ? d.base_version : opened.base_version;
      S.plan_version = plan;
      S.undo = []; S.redo = []; S.changes = 0; S.selected = null; S.multi = { compounds: {}, buildings: {} };
      S.current = null; S.target = null; S.highlight = {}; S.saved = null;
      $("saved").hidden = true; conflictBox(null);
      $("community-name").textContent = "· " + d.community.name;
      document.title = "网格划分编辑器 · " + d.community.name + " — gisgov";
      d.compounds.features.forEach(function (f) { S.compounds[f.properties.code] = { props: f.properties, buildings: [] }; });
      d.buildings.features.forEach(function (f) {
        S.buildings[f.properties.code] = { props: f.properties };
        if (f.properties.compound && S.compounds[f.properties.compound]) S.compounds[f.properties.compound].buildings.push(f.properties.code);
      });
      d.grids.forEach(function (g) { S.grids[g.code] = g; S.order.push(g.code); });
      if (d.boundary) {
        boundaryLayer = L.geoJSON(d.boundary, { interactive: false, pmIgnore: true,
          style: { color: "#13294b", weight: 2.5, fill: false, pane: "labels" } }).addTo(map);
      }
      assignColours();
      S.order.forEach(function (c) { drawGrid(S.grids[c], S.grids[c].label); });
      $("code-prefix").textContent = "编码 code " + d.community.code + "…";
      drawUnits(d);
      if (!S.fitted) {
        map.fitBounds((boundaryLayer || L.featureGroup(Object.values(gridLayers))).getBounds(), { padding: [16, 16], animate: false });
        S.fitted = true;
      }
      legend();
      notice(null);
      setBusy(false);
      setTool(S.tool);
      S.rev++;
      renderAll();
      declutter();
      loadPlanInfo();
      if (!S.order.length) notice("该社区没有网格方案 <span>this community has no grid plan</span>", "error");
      document.body.dataset.ready = "ready";
      emit("grideditor:change", state());
    }).catch(function (e) {
      setBusy(false);
      notice("加载失败 Could not load: " + esc(e.message), "error");
      if (document.body.dataset.ready !== "ready") document.body.dataset.ready = "error";
      throw e;
    });
  }

  function start() {
    if (!communityCode) {
      notice("请在地址中指定社区 <code>?community=社区编码</code><br><span>Give the community in the address: ?community=CODE</span>", "error");
      document.body.dataset.ready = "error";
      map.setView([31.82, 117.23], 12);
      return;
    }
    gisgov.whoami("who").then(function (me) { S.me = me; });
    load(null).catch(function () { /* shown */ });
  }

  function legend() {
    var r = S.rules;
    var sw = [0, 1, 2, 3].map(function (i) { return "<i class='fill' style='background:" + (PALETTE[i]) + "'></i>"; }).join("");
    $("legend").innerHTML = "<b>网格 Grids</b>" +
      "<div>" + sw + " 每格一色 one colour per grid</div>" +
      "<div><i class='ol ok'></i>✓ " + r.min_households + "–" + r.max_households + " 户 达标 within</div>" +
      "<div><i class='ol under'></i>▽ &lt; " + r.min_households + " 户 不足 under</div>" +
      "<div><i class='ol over'></i>▲ &gt; " + r.max_households + " 户 或 &gt; " + fmt.format(r.max_people) + " 人 over</div>" +
      "<div><i class='outline'></i>小区 compound</div><div><i class='outline dashed'></i>不可移出 cannot leave</div>" +
      "<div><i class='bld'></i>楼栋 building</div>";
  }

  // ---- wiring ----------------------------------------------------------------------------------
  gisgov.bindSignOut("logout");
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("save").addEventListener("click", function () { save(); });
  $("cancel").addEventListener("click", clearSelection);
  $("tool-delete").addEventListener("click", deleteGrid);
  Object.keys(TOOLS).forEach(function (t) { $("tool-" + t).addEventListener("click", function () { setTool(t); }); });
  $("target").addEventListener("change", function () {
    S.target = this.value || null;
    if (S.tool === "lasso") startDraw();
    renderTools();
  });
  $("snap").addEventListener("change", function () {
    if (S.tool === "reshape") startReshape();
    else if (map.pm && map.pm.globalDrawModeEnabled()) { map.pm.disableDraw(); startDraw(); }
  });
  function typing(e) { var t = e.target; return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA"); }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Shift") map.getContainer().classList.add("shift-down");
    var k = (e.key || "").toLowerCase();
    if (e.ctrlKey || e.metaKey) {
      if (k === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
      else if ((k === "z" && e.shiftKey) || k === "y") { e.preventDefault(); redo(); }
      else if (k === "s") { e.preventDefault(); if (!$("save").disabled) save(); }
      return;
    }
    if (typing(e) || e.altKey) return;
    if (e.key === "Escape") {
      if (S.tool !== "select") setTool("select");
      else clearSelection();
      return;
    }
    if (e.key === "Delete") { deleteGrid(); return; }
    Object.keys(TOOLS).forEach(function (t) { if (TOOLS[t].key === k && !e.shiftKey) setTool(t); });
  });
  document.addEventListener("keyup", function (e) { if (e.key === "Shift") map.getContainer().classList.remove("shift-down"); });
  window.addEventListener("blur", function () { map.getContainer().classList.remove("shift-down"); });
  window.addEventListener("beforeunload", function (e) {
    if (S.changes > 0) { e.preventDefault(); e.returnValue = ""; return ""; }
  });
  window.gridEditor = { map: map, state: state, open: open, highlight: highlight, clearHighlight: clearHighlight,
    setTool: setTool, setCurrent: setCurrent,
    // the outline being reshaped, [[lon, lat], …] (outer ring, not closed), or null
    reshaping: function () {
      return S.shape ? S.shape.getLatLngs()[0].map(function (ll) { return [ll.lng, ll.lat]; }) : null;
    } };
  start();
})();

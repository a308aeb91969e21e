/* 领导驾驶舱 leaders' drill-down map: city → street → community → grid → compound.
 * Plain Leaflet (vendored, served by the app). Data: /api/stats[/{level}/{code}] (+ /features), /health,
 * /tiles/building (vector tiles: footprints from zoom 15, the unit's own drawn dark), /api/auth/me (who is signed in),
 * /api/coverage/catalog (which service categories have no facility in the data: shown as such, not as 0 %).
 * Aggregates only; for roles without personal-data access small special-group counts arrive as strings
 * ("<5", and "≥5" where a total would give them away) and are shown as they are. A grid's staff list
 * (name, masked phone) arrives only for roles that may see it. Requests, the user badge and sign-out go
 * through the shared web/common/gisgov.js (loaded first). No inline scripts (CSP): everything lives here.
 * Leaders' indicators: events (open, overdue, closed within the grid, median time to close, monthly trend),
 * staff gaps, compound breaches and special-group service gaps of the unit, with map overlays (open events
 * per grid, gap grids, breaching compounds); a source the role may not read (403) leaves its panel out.
 * Navigation lives in the URL hash: #/community/340104001001 (browser back/forward work). */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  // -- formatting -------------------------------------------------------------------------------
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  // a suppressed count ("<5", "≥5") is a string: shown as it is, never as a number
  function masked(n) { return typeof n === "string"; }
  function num(n) {
    if (masked(n)) return '<span class="masked" title="小数保护 small count withheld">' + esc(n) + "</span>";
    return n == null ? "—" : Number(n).toLocaleString("zh-CN");
  }
  function whole(n) { return n == null ? "—" : Math.round(n).toLocaleString("zh-CN"); }
  var PLURAL = { Street: "streets", Community: "communities", Grid: "grids", Compound: "compounds" };
  function pct(x, d) { return x == null ? "—" : (x * 100).toFixed(d == null ? 1 : d) + "%"; }
  function permille(x) { return x == null ? "—" : Number(x).toFixed(1) + "‰"; }

  // -- indicators for the choropleth ------------------------------------------------------------
  // ColorBrewer sequential schemes (colour-blind safe; light = low, dark = high); no red/green pairs
  var PALETTES = {
    blues: ["#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c"],
    purples: ["#f2f0f7", "#cbc9e2", "#9e9ac8", "#756bb1", "#54278f"],
    oranges: ["#feedde", "#fdbe85", "#fd8d3c", "#e6550d", "#a63603"],
    ylgnbu: ["#ffffcc", "#a1dab4", "#41b6c4", "#2c7fb8", "#253494"]
  };
  var NO_DATA = "#d5dbe3";
  var BASE_INDICATORS = [
    { key: "households", zh: "户数", en: "Households", palette: "blues", fmt: whole, count: true, unit: "户 households",
      get: function (s) { return s.households; } },
    { key: "residents", zh: "人数", en: "People", palette: "blues", fmt: whole, count: true, unit: "人 people",
      get: function (s) { return s.residents; } },
    { key: "special", zh: "特殊人群密度", en: "Special groups per 1,000 people", palette: "purples", fmt: permille, unit: "‰ 每千人 per 1,000 people",
      get: function (s) { return s.special.per_1000; } },
    { key: "complete", zh: "15分钟圈覆盖率（完整）", en: "Complete 15-min circle", palette: "ylgnbu", share: true,
      coverage: true, unit: "% 户 of households", fmt: function (x) { return pct(x, 0); },
      get: function (s) { return s.coverage ? s.coverage.complete.share : null; } },
    { key: "elderly", zh: "老年人口占比", en: "Aged 60+ share", palette: "oranges", unit: "% 人 of people", fmt: function (x) { return pct(x, 1); },
      get: function (s) { return s.elderly_share; } }
  ];

  var state = { doc: null, fc: null, indicator: "households", sort: null, map: null, layers: {}, byCode: {}, token: 0,
    ind: null };

  function indicators() {
    var list = BASE_INDICATORS.slice();
    var cov = state.doc && state.doc.coverage;
    if (cov) {
      cov.categories.forEach(function (c) {
        var none = !!c.no_facility;
        list.push({ key: "cov:" + c.code, zh: c.name_zh + (none ? " · " + NO_FACILITY_ZH : " · 15分钟覆盖率"),
          en: c.name_en + (none ? " (" + NO_FACILITY_EN + ")" : ""), palette: "ylgnbu", share: true,
          coverage: true, group: true, unit: "% 户 of households", fmt: function (x) { return none ? NO_FACILITY_ZH : pct(x, 0); },
          get: function (s) { return !none && s.coverage ? s.coverage.categories[c.code].share : null; } });
      });
    }
    return list;
  }
  function indicator() {
    var list = indicators();
    for (var i = 0; i < list.length; i++) if (list[i].key === state.indicator) return list[i];
    return list[0];
  }

  // Quantile classes (5, fewer when there are fewer distinct values): breaks b0 ≤ b1 < … < bk are data values
  // (nearest rank), class i holds b_i < v ≤ b_{i+1} (the first class also holds b0), so no class is empty.
  // Returns null without any value.
  function classify(values) {
    var v = values.filter(function (x) { return x != null && typeof x === "number" && isFinite(x); });
    if (!v.length) return null;
    v.sort(function (a, b) { return a - b; });
    var distinct = v.filter(function (x, i) { return i === 0 || x > v[i - 1] + 1e-9; }).length;
    var k = Math.min(5, distinct);
    var out = [v[0]];
    for (var i = 1; i <= k; i++) {
      var b = v[Math.max(0, Math.ceil((i / k) * v.length) - 1)];
      if (b > out[out.length - 1] + 1e-9) out.push(b);
    }
    if (out.length === 1) out.push(v[0]);  // every value equal: one class
    return out;
  }
  function classOf(v, brk) {
    if (v == null || typeof v !== "number" || brk == null) return -1;
    for (var i = 1; i < brk.length; i++) if (v <= brk[i] + 1e-9) return i - 1;
    return brk.length - 2;
  }
  // k classes take k colours spread over the 5-step scheme (lightest to darkest)
  function classColours(ind, brk) {
    var pal = PALETTES[ind.palette];
    var k = brk ? brk.length - 1 : 0;
    if (k <= 1) return [pal[3]];
    var out = [];
    for (var i = 0; i < k; i++) out.push(pal[Math.round(i * (pal.length - 1) / (k - 1))]);
    return out;
  }
  function colour(v, brk, ind) {
    var c = classOf(v, brk);
    return c < 0 ? NO_DATA : classColours(ind, brk)[c];
  }

  // bars and rings on white need a darker middle class than map fills
  var SHARE_STEPS = [0, 0.2, 0.4, 0.6, 0.8, 1];
  function strong(c) { return c === PALETTES.ylgnbu[0] ? "#c9c25a" : c === PALETTES.ylgnbu[1] ? "#6cc08b" : c; }

  // -- data ---------------------------------------------------------------------------------------
  // GET as JSON; a 401 goes to /login?next=<this page> (gisgov.api)
  function getJSON(url) { return gisgov.api(url); }
  function route() {
    var m = /^#\/(street|community|grid|compound)\/([0-9]+)$/.exec(location.hash || "");
    return m ? { level: m[1], code: m[2] } : { level: "city", code: null };
  }
  function go(level, code) {
    var h = level === "city" ? "#/" : "#/" + level + "/" + code;
    if (location.hash === h) load(); else location.hash = h;
  }

  function load() {
    var r = route();
    var token = ++state.token;
    var base = r.level === "city" ? "/api/stats" : "/api/stats/" + r.level + "/" + r.code;
    document.body.classList.add("busy");
    delete document.body.dataset.ready;
    // the coverage catalog says which categories have no facility in the data (无此类设施数据)
    var catalog = getJSON("/api/coverage/catalog").catch(function () { return null; });
    // open events per grid for the comparison table (and the overlay); a role without them: no column
    var events = fetchQuiet("/api/events/geojson");
    Promise.all([getJSON(base), getJSON(base + "/features"), catalog, events]).then(function (res) {
      if (token !== state.token) return;
      state.doc = res[0];
      state.fc = res[1];
      state.eventsGeo = res[3];
      markNoFacility(state.doc, res[2]);
      hideNotice();
      render();
      document.body.dataset.ready = r.level + (r.code ? "/" + r.code : "");
      loadIndicators(state.doc, token);
    }).catch(function (err) {
      if (token !== state.token) return;
      showNotice("无法加载 Could not load: " + err.message, true);
      document.body.dataset.ready = "error";
    }).then(function () { document.body.classList.remove("busy"); });
  }

  // A category without any facility in the data shows "no facility" instead of a 0 % that reads as a gap.
  var NO_FACILITY_ZH = "无此类设施数据", NO_FACILITY_EN = "no facility in the data";
  function markNoFacility(doc, catalog) {
    if (!doc || !doc.coverage || !doc.coverage.categories) return;
    var none = {};
    ((catalog && catalog.categories) || []).forEach(function (c) { if (c.no_facility) none[c.code] = true; });
    doc.coverage.categories.forEach(function (c) { c.no_facility = !!(c.no_facility || none[c.code]); });
  }

  // -- rendering: side panels ----------------------------------------------------------------------
  function render() {
    var d = state.doc;
    state.byCode = {};
    d.children.items.forEach(function (c) { state.byCode[c.code] = c; });
    if (d.synthetic) $("synthetic").hidden = false;
    var editor = $("editor-link");  // a community's grid plan can be edited
    editor.hidden = d.level !== "community";
    if (!editor.hidden) editor.href = "/grids/editor?community=" + encodeURIComponent(d.code);
    renderCrumbs(d);
    renderHead(d);
    renderKpis(d.stats, d);
    renderAge(d.stats);
    renderStaff(d.stats, d);
    renderGroups(d.stats, d.labels.special_groups, d.suppression);
    renderStaffList(d.staff_list);
    renderCoverage(d.stats, d.coverage);
    renderSelect();
    renderMap();
    renderTable();
    renderPrintHead(d);
    document.title = d.name + " · 领导驾驶舱 Leaders' dashboard";
  }

  function renderCrumbs(d) {
    var parts = d.path.map(function (p) {
      return '<a data-level="' + esc(p.level) + '" data-code="' + esc(p.code || "") + '">' + esc(p.name) + "</a>";
    });
    parts.push('<span class="here">' + esc(d.name) + "</span>");
    $("crumbs").innerHTML = parts.join('<span class="sep">›</span>');
    Array.prototype.forEach.call($("crumbs").querySelectorAll("a"), function (a) {
      a.addEventListener("click", function () { go(a.dataset.level, a.dataset.code); });
    });
  }

  function renderHead(d) {
    var lvl = d.level_label.zh + " " + d.level_label.en;
    var ch = d.children;
    if (ch.level) lvl += " · 下辖" + ch.level_label.zh + " " + ch.items.length + " 个 (" + ch.items.length + " " +
      (ch.items.length === 1 ? ch.level_label.en.toLowerCase() : PLURAL[ch.level_label.en]) + ")";
    $("unit-level").textContent = lvl;
    $("unit-name").textContent = d.name;
    $("unit-code").textContent = d.code ? "编码 " + d.code : "统计截至 " + d.reference_year + " 年 · as of " + d.reference_year;
    var note = $("area-note");
    note.hidden = !(d.area && d.area.limited);
    note.textContent = note.hidden ? "" : d.area.note;
  }

  function kpi(key, zh, en, value, display, sub, cls) {
    return '<div class="kpi ' + (cls || "") + (value == null ? " na" : "") + '" data-kpi="' + key + '" data-value="' +
      (value == null ? "" : esc(value)) + '"><div class="label">' + zh + " <span>" + en + '</span></div><div class="value">' +
      display + '</div><div class="sub">' + (sub || "&nbsp;") + "</div></div>";
  }

  function renderKpis(s, d) {
    var cov = s.coverage;
    var staff = s.staff;
    var roles = staff ? staff.roles : null;
    var html = [
      kpi("households", "户数", "Households", s.households, num(s.households) + "<small>户</small>",
        "户均 " + (s.households ? (s.residents / s.households).toFixed(2) : "—") + " 人", "highlight"),
      kpi("residents", "人数", "People", s.residents, num(s.residents) + "<small>人</small>",
        "截至 " + d.reference_year + " 年", "highlight"),
      kpi("buildings", "楼栋", "Buildings", s.buildings, num(s.buildings) + "<small>栋</small>"),
      kpi("compounds", "小区", "Compounds", s.compounds, num(s.compounds) + "<small>个</small>",
        "其中老旧 old " + num(s.old_compounds)),
      kpi("old_compound_share", "老旧小区率", "Old compounds", s.old_compound_share, pct(s.old_compound_share),
        "2000年前建成 pre-2000"),
      kpi("age_60", "60岁以上", "Aged 60+", s.age["60+"], num(s.age["60+"]) + "<small>人</small>",
        "占 " + pct(s.elderly_share) + " · 80+ " + num(s.age["80+"])),
      kpi("special", "特殊人群", "Special groups", s.special.people, num(s.special.people) + "<small>人</small>",
        "每千人 " + permille(s.special.per_1000)),
      kpi("grids", "网格", "Grids", s.grids, num(s.grids) + "<small>个</small>",
        s.grids ? "格均 " + Math.round(s.households / s.grids) + " 户" : "尚未划分 none yet"),
      kpi("staff", "网格员", "Grid staff", staff ? staff.total : null,
        staff ? num(staff.total) + "<small>人</small>" : "按网格配备",
        roles ? (s.grids ? "格均 " + (staff.total / s.grids).toFixed(1) + " 人" : "&nbsp;") : "小区不单设 per grid"),
      kpi("complete", "15分钟圈完整率", "Complete circle", cov ? cov.complete.share : null,
        cov ? pct(cov.complete.share) : "未计算",
        cov ? num(cov.complete.households_in) + " / " + num(cov.complete.households) + " 户" : "not computed yet")
    ];
    $("kpis").innerHTML = html.join("");
  }

  function renderAge(s) {
    var a = s.age;
    var parts = [
      { k: "0-14", zh: "0–14岁", n: a["0-14"], c: "#8fc1e3" },
      { k: "15-59", zh: "15–59岁", n: a["15-59"], c: "#4c7fc0" },
      { k: "60-79", zh: "60–79岁", n: a["60+"] - a["80+"], c: "#f0a04b" },
      { k: "80+", zh: "80岁以上", n: a["80+"], c: "#c8552b" }
    ];
    if (a.unknown) parts.push({ k: "unknown", zh: "年龄不详", n: a.unknown, c: "#c3cad3" });
    var total = s.residents || 1;
    var bar = parts.map(function (p) {
      return '<div style="width:' + (100 * p.n / total) + "%;background:" + p.c + '" title="' + p.zh + " " + num(p.n) + '"></div>';
    }).join("");
    var legend = parts.map(function (p) {
      return '<div data-age="' + p.k + '"><i style="background:' + p.c + '"></i>' + p.zh + " <b>" + num(p.n) + "</b> <em>" +
        pct(s.residents ? p.n / s.residents : null) + "</em></div>";
    }).join("");
    $("age").innerHTML = '<div class="stack">' + bar + '</div><div class="stack-legend">' + legend + "</div>";
  }

  function renderStaff(s, d) {
    if (!s.staff) {
      $("staff").innerHTML = '<div class="muted-note">网格员按网格配备，小区不单独统计。Staff are assigned to grids, not compounds.</div>';
      return;
    }
    var main = d.labels.staff_roles.slice(0, 3);
    var extra = d.labels.staff_roles.slice(3).filter(function (r) { return s.staff.roles[r.role] > 0; });
    var cells = main.concat(extra).map(function (r) {
      return '<div class="role" data-role="' + esc(r.role) + '"><b>' + num(s.staff.roles[r.role]) + "</b><span>" + esc(r.role) +
        "</span></div>";
    }).join("");
    var note = s.staff.total === 0
      ? '<div class="muted-note">尚未录入网格员 No grid staff recorded yet' + (s.grids ? "" : "（尚未划分网格 no grids yet）") + "</div>"
      : '<div class="muted-note">合计 ' + num(s.staff.total) + " 人 · 一格三员 " + (s.grids ? (s.staff.total / s.grids).toFixed(1) + " 人/格 per grid" : "") + "</div>";
    $("staff").innerHTML = '<div class="roles">' + cells + "</div>" + note;
  }

  function bars(rows, maxValue, fmtv, colourOf) {
    return rows.map(function (r) {
      var hidden = masked(r.value);
      var w = maxValue && !hidden ? Math.max(0, Math.min(100, 100 * r.value / maxValue)) : 0;
      var c = colourOf ? colourOf(r) : null;
      return '<div class="bar' + (hidden ? " masked" : r.value ? "" : " zero") + '" data-code="' + esc(r.code) + '" data-value="' +
        (r.value == null ? "" : esc(r.value)) +
        '" title="' + esc(r.title || r.name) + '"><span class="name">' + esc(r.name) + '</span><span class="num">' + fmtv(r.value) +
        '</span><span class="track"><div style="width:' + w + "%" + (c ? ";background:" + c : "") + '"></div></span></div>';
    }).join("");
  }

  function renderGroups(s, labels, suppression) {
    var rows = labels.map(function (g) {
      return { code: g.code, name: g.name_zh, title: g.name_zh + " " + g.name_en, value: s.special.groups[g.code] || 0 };
    });
    var max = Math.max.apply(null, rows.map(function (r) { return masked(r.value) ? 0 : r.value; }).concat([1]));
    $("groups").innerHTML = bars(rows, max, num);
    var note = $("groups-note");
    note.hidden = !suppression;
    note.textContent = suppression ? suppression.note : "";
  }

  function renderStaffList(list) {
    var el = $("staff-list");
    el.hidden = !list || !list.length;
    el.innerHTML = (list || []).map(function (x) {
      return '<li data-role="' + esc(x.role) + '"><b>' + esc(x.name) + "</b><span>" + esc(x.role) + " · " +
        esc(x.phone_masked || "—") + "</span></li>";
    }).join("");
  }

  function renderCoverage(s, meta) {
    var el = $("coverage");
    if (!meta) { el.innerHTML = '<div class="muted-note">无生活圈目录 no service-circle catalog</div>'; return; }
    $("coverage-title").innerHTML = esc(meta.name_zh) + " <span>" + esc(meta.name_en) + "</span>";
    if (!meta.available || !s.coverage) {
      el.innerHTML = '<div class="muted-note">尚未计算生活圈覆盖 Coverage not computed yet — <code>gisgov coverage compute</code></div>';
      return;
    }
    var c = s.coverage.complete;
    var ringColour = strong(colour(c.share, SHARE_STEPS, { palette: "ylgnbu" }));
    var head = '<div class="cov-head"><div class="ring" style="--p:' + (c.share == null ? 0 : c.share * 100) + ";--ring:" +
      ringColour + '" data-label="' + pct(c.share, 0) + '"></div><div class="txt">' +
      "<b>完整" + esc(meta.circle_zh) + "</b><br>16类服务均在 " + meta.minutes + " 分钟步行内的户<br>" + num(c.households_in) + " / " +
      num(c.households) + " 户 households · " + esc(meta.profile_zh) + "</div></div>";
    var rows = meta.categories.filter(function (k) { return !k.no_facility; }).map(function (k) {
      var v = s.coverage.categories[k.code];
      return { code: k.code, name: k.name_zh, title: k.name_zh + " " + k.name_en + ": " + num(v.households_in) + " 户",
        value: v.share };
    });
    var none = meta.categories.filter(function (k) { return k.no_facility; });
    var noneHtml = none.length ? '<div class="muted-note no-facility" data-codes="' +
      esc(none.map(function (k) { return k.code; }).join(",")) + '">' + NO_FACILITY_ZH + " " + NO_FACILITY_EN + "（" +
      none.map(function (k) { return esc(k.name_zh); }).join("、") +
      "）：覆盖率为缺数据而非服务缺口 missing data, not a gap</div>" : "";
    el.innerHTML = head + '<div class="bars two-col">' + bars(rows, 1, function (x) { return pct(x, 0); }, function (r) {
      return strong(colour(r.value, SHARE_STEPS, { palette: "ylgnbu" }));
    }) + "</div>" + noneHtml;
  }

  function renderSelect() {
    var sel = $("indicator");
    var hasCov = !!(state.doc.coverage && state.doc.coverage.available);
    var list = indicators();
    if (!hasCov && indicator().coverage) state.indicator = "households";
    var main = list.filter(function (i) { return !i.group; });
    var cats = list.filter(function (i) { return i.group; });
    var opt = function (i) {
      return '<option value="' + i.key + '"' + (i.coverage && !hasCov ? " disabled" : "") + (i.key === state.indicator ? " selected" : "") +
        ">" + esc(i.zh) + " " + esc(i.en) + "</option>";
    };
    sel.innerHTML = main.map(opt).join("") + (cats.length ? '<optgroup label="单项服务覆盖率 per service (15 min)">' +
      cats.map(opt).join("") + "</optgroup>" : "");
    sel.disabled = !state.doc.children.items.length;
  }

  // -- map ------------------------------------------------------------------------------------------
  function initMap() {
    var map = L.map("map", { zoomSnap: 0.25, zoomControl: true, attributionControl: true, minZoom: 3 });
    // the basemap (or the offline note) and the attribution prefix come from gisgov.js for every map
    L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
    map.createPane("buildings").style.zIndex = 420;  // footprints above the children's fill, below the indicators
    map.getPane("buildings").style.pointerEvents = "none";
    if (gisgov.tiles && L.vectorGrid) {
      state.buildingTiles = gisgov.tiles(map, "building", { minZoom: 15, pane: "buildings", style: buildingStyle });
      // what the tiles drew, for the page's checks: footprints in view and the codes of the unit's own
      state.buildingTiles.on("load", function () {
        var seen = {}, mine = {};
        Object.keys(state.buildingTiles._vectorTiles || {}).forEach(function (k) {
          var feats = state.buildingTiles._vectorTiles[k]._features || {};
          Object.keys(feats).forEach(function (id) {
            var f = feats[id].feature || feats[id];
            var p = (f && f.properties) || {};
            seen[id] = 1;
            if (buildingStyle(p).weight > 0.6) mine[id] = 1;
          });
        });
        document.body.dataset.buildings = JSON.stringify({ drawn: Object.keys(seen).length, mine: Object.keys(mine).sort() });
      });
    }
    map.createPane("indicators").style.zIndex = 450;  // overlays above the children, below labels and markers
    map.createPane("indicators-top").style.zIndex = 640;
    map.setView([31.85, 117.25], 12);
    state.map = map;
  }

  function clearLayers() {
    Object.keys(state.layers).forEach(function (k) { if (state.layers[k]) state.map.removeLayer(state.layers[k]); });
    state.layers = {};
  }

  function childStyle(code, hot) {
    var ind = indicator();
    var item = state.byCode[code];
    var v = item ? ind.get(item.stats) : null;
    return { color: hot ? "#0d2a55" : "#ffffff", weight: hot ? 3 : 1.4, opacity: 1, fillColor: colour(v, state.breaks, ind),
      fillOpacity: hot ? 0.92 : 0.8 };
  }

  function renderMap() {
    var d = state.doc;
    clearLayers();
    var units = state.fc.features.filter(function (f) { return f.properties.role === "unit"; });
    var kids = state.fc.features.filter(function (f) { return f.properties.role === "child"; });
    var ind = indicator();
    state.breaks = classify(d.children.items.map(function (c) { return ind.get(c.stats); }));

    if (units.length) {
      state.layers.unit = L.geoJSON(units, { interactive: false, style: function () {
        return kids.length ? { color: "#13294b", weight: 3.2, opacity: 0.9, fill: false }
          : { color: "#13294b", weight: 2.5, fillColor: "#9fb8dc", fillOpacity: 0.35 };
      } }).addTo(state.map);
    }
    state.layers.children = L.geoJSON(kids, {
      style: function (f) { return childStyle(f.properties.code, false); },
      onEachFeature: function (f, layer) {
        var code = f.properties.code;
        layer.options.className = "child-shape child-" + code;
        layer.bindTooltip(esc(f.properties.name), { permanent: true, direction: "center", className: "child-label",
          interactive: false, opacity: 1 });
        layer.on("mouseover", function () { hot(code, true); });
        layer.on("mouseout", function () { hot(code, false); });
        layer.on("click", function () { go(f.properties.level, code); });
      }
    }).addTo(state.map);
    state.layers.children.eachLayer(function (l) { if (l.bringToBack) l.bringToBack(); });

    var fit = state.layers.children.getBounds();
    if (state.layers.unit) fit = fit.isValid() ? fit.extend(state.layers.unit.getBounds()) : state.layers.unit.getBounds();
    state.fit = fit;
    refit();
    renderLegend();
    restyleBuildings();
  }

  function refit() {
    if (state.fit && state.fit.isValid()) {
      var pad = state.printing ? [[12, 12], [12, 12]] : [[40, 70], [40, 40]];
      state.map.fitBounds(state.fit, { paddingTopLeft: pad[0], paddingBottomRight: pad[1], animate: false });
    }
  }

  // Building footprints from vector tiles (/tiles/building, the caller's area only) from zoom 15: the buildings
  // of the grid or compound in view are drawn dark, the others light. Context only (no clicks).
  function buildingStyle(p) {
    var d = state.doc;
    var mine = d && ((d.level === "grid" && p.grid === d.code) || (d.level === "compound" && p.compound === d.code));
    return mine
      ? { weight: 0.8, color: "#37404d", fill: true, fillColor: "#5b6677", fillOpacity: 0.7, radius: 3 }
      : { weight: 0.5, color: "#8a94a3", fill: true, fillColor: "#b8c0cc", fillOpacity: 0.45, radius: 2 };
  }

  function restyleBuildings() {
    if (state.buildingTiles) state.buildingTiles.redraw();
  }

  // Quantile legend: what is coloured (indicator, unit, children level), each class's range and count (data-count);
  // the breaks are on the legend as data-breaks (JSON) for checks and the print.
  function renderLegend() {
    var ind = indicator();
    var el = $("legend");
    var d = state.doc;
    if (!d.children.items.length) {
      el.removeAttribute("data-breaks");
      el.innerHTML = "<b>" + esc(d.level_label.zh) + "为最底层</b>" + esc(d.level_label.en) + " is the lowest level";
      return;
    }
    var brk = state.breaks;
    var cols = classColours(ind, brk);
    var counts = brk ? cols.map(function () { return 0; }) : [];
    var none = 0;
    d.children.items.forEach(function (c) {
      var k = classOf(ind.get(c.stats), brk);
      if (k < 0) none += 1; else counts[k] += 1;
    });
    var rows = [];
    if (brk) {
      for (var i = 0; i < cols.length; i++) {
        var range = brk.length === 2 && brk[0] === brk[1] ? ind.fmt(brk[0])
          : (i === 0 ? ind.fmt(brk[0]) : "&gt; " + ind.fmt(brk[i])) + " – " + ind.fmt(brk[i + 1]);
        rows.push('<div class="cls" data-class="' + i + '" data-count="' + counts[i] + '"><i style="background:' + cols[i] + '"></i>' +
          '<span class="rng">' + range + '</span><em>' + counts[i] + "</em></div>");
      }
    }
    if (none || !brk) rows.push('<div class="cls nodata" data-class="none" data-count="' + none + '"><i style="background:' + NO_DATA +
      '"></i><span class="rng">无数据 no data</span><em>' + none + "</em></div>");
    var what = esc(d.children.level_label.zh) + " " + esc(PLURAL[d.children.level_label.en] || d.children.level_label.en);
    el.dataset.breaks = JSON.stringify(brk || []);
    el.dataset.features = String(d.children.items.length);
    el.innerHTML = "<b>" + esc(ind.zh) + '</b><div class="legend-sub">' + esc(ind.en) + " · " + esc(ind.unit || "") + "</div>" +
      '<div class="legend-sub">按' + what + "着色 · 分位数分级 quantile classes · 个数 count</div>" + rows.reverse().join("");
  }

  // Bring a table row into view inside the table's own scroll box only: scrollIntoView would also scroll the
  // page (on a tablet the table is below the map), moving the map away under the pointer that hovers it.
  function revealRow(row) {
    var wrap = $("children-wrap");
    if (!wrap || wrap.scrollHeight <= wrap.clientHeight) return;
    var head = wrap.querySelector("thead");
    var top = row.offsetTop - (head ? head.offsetHeight : 0);
    var bottom = row.offsetTop + row.offsetHeight;
    if (top < wrap.scrollTop) wrap.scrollTop = top;
    else if (bottom > wrap.scrollTop + wrap.clientHeight) wrap.scrollTop = bottom - wrap.clientHeight;
  }

  function hot(code, on) {
    var layers = state.layers.children;
    if (layers) layers.eachLayer(function (l) {
      if (l.feature.properties.code === code) {
        l.setStyle(childStyle(code, on));
        if (on) l.bringToFront();
      }
    });
    var row = document.querySelector('#children tr[data-code="' + code + '"]');
    if (row) {
      row.classList.toggle("hot", on);
      if (on && !row.matches(":hover")) revealRow(row);
    }
    var box = $("hoverbox");
    if (!on) { box.hidden = true; return; }
    var item = state.byCode[code];
    if (!item) return;
    var ind = indicator();
    var s = item.stats;
    box.innerHTML = "<b>" + esc(item.name) + "</b>" + (item.partial ? ' <span class="hint">（本网格内部分 part in this grid）</span>' : "") +
      "<br>" + esc(ind.zh) + "：<b>" + ind.fmt(ind.get(s)) + "</b><br>户数 " + num(s.households) + " · 人数 " + num(s.residents) +
      "<br>60岁以上 " + pct(s.elderly_share) + " · 特殊人群 " + num(s.special.people) +
      '<br><span class="hint">点击下钻 click to drill down</span>';
    box.hidden = false;
  }

  // -- comparison table of the children (对比表) ---------------------------------------------------------
  // One row per child: households, people, special groups (as the API gives them: "<5" for roles that see them
  // suppressed), grid staff, the complete 15-minute circle share, open events (/api/events/geojson counted by code
  // prefix); sortable by any column (click or Enter/Space on the header button; aria-sort), a row drills down.
  function openEvents(code) {
    var fc = state.eventsGeo;
    if (!fc || failed(fc)) return null;
    var n = 0;
    fc.features.forEach(function (f) { if (f.properties.code && f.properties.code.indexOf(code) === 0) n += f.properties.open; });
    return n;
  }
  function tableColumns(d) {
    var ch = d.children, ind = indicator();
    var cols = [
      { key: "name", zh: "名称", en: "Name", get: function (c) { return c.name; } },
      { key: "households", zh: "户数", en: "Households", get: function (c) { return c.stats.households; }, fmt: num },
      { key: "residents", zh: "人数", en: "People", get: function (c) { return c.stats.residents; }, fmt: num }
    ];
    if (ch.items.some(function (c) { return c.stats.special && c.stats.special.people != null; })) {
      cols.push({ key: "special", zh: "特殊人群", en: "Special groups", get: function (c) { return c.stats.special.people; }, fmt: num });
    }
    if (ch.items.some(function (c) { return !!c.stats.staff; })) {
      cols.push({ key: "staff", zh: "网格员", en: "Grid staff", get: function (c) { return c.stats.staff ? c.stats.staff.total : null; },
        fmt: num });
    }
    if (d.coverage) {
      var tip = d.coverage.available ? "" : "未计算 not computed";
      cols.push({ key: "coverage", zh: "15分钟覆盖", en: "15-min coverage", tip: tip,
        title: "所需各类服务均在15分钟步行内的户占比 share of households with every required service within 15 minutes",
        get: function (c) { return c.stats.coverage ? c.stats.coverage.complete.share : null; },
        fmt: function (x) { return pct(x, 0); }, csv: function (x) { return x == null ? "" : (x * 100).toFixed(1); } });
    }
    if (state.eventsGeo && !failed(state.eventsGeo) && ch.level !== "compound") {
      cols.push({ key: "events", zh: "未结事件", en: "Open events", get: function (c) { return openEvents(c.code); }, fmt: num });
    }
    if (!ind.count && ind.key !== "complete") {
      cols.push({ key: "ind", zh: ind.zh.replace(/（.*）|·.*$/, "").trim(), en: ind.en, get: function (c) { return ind.get(c.stats); },
        fmt: ind.fmt });
    }
    return cols;
  }
  // sort key: numbers as they are; a suppressed count ("<5", "≥5") and no value go last
  function cmp(x, y, dir) {
    var bx = x == null || masked(x), by = y == null || masked(y);
    if (bx || by) return bx && by ? 0 : bx ? 1 : -1;
    if (typeof x === "string") return x.localeCompare(y, "zh-CN") * dir;
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  }
  function sortedItems(d, cols) {
    var sort = state.sort || { key: "code", dir: 1 };
    var col = cols.filter(function (c) { return c.key === sort.key; })[0];
    return d.children.items.slice().sort(function (a, b) {
      if (!col || sort.key === "code") return a.code < b.code ? -1 : 1;
      return cmp(col.get(a), col.get(b), sort.dir) || (a.code < b.code ? -1 : 1);
    });
  }
  function renderTable() {
    var d = state.doc;
    var ch = d.children;
    var ind = indicator();
    $("children-title").innerHTML = ch.level ? "对比 · 下级" + esc(ch.level_label.zh) + " <span>Compare " +
      esc(PLURAL[ch.level_label.en] || ch.level_label.en) + " · " + ch.items.length + "</span>" : "下级单位 <span>Children</span>";
    var table = $("children");
    $("btn-csv").disabled = !ch.items.length;
    if (!ch.items.length) {
      table.innerHTML = '<tbody><tr><td class="empty">无下级单位 no children</td></tr></tbody>';
      $("rest").hidden = true;
      return;
    }
    var cols = tableColumns(d);
    var sort = state.sort || { key: "code", dir: 1 };
    if (sort.key !== "code" && !cols.some(function (c) { return c.key === sort.key; })) sort = state.sort = { key: "code", dir: 1 };
    var items = sortedItems(d, cols);
    var head = "<thead><tr>" + cols.map(function (c) {
      var on = sort.key === c.key || (c.key === "name" && sort.key === "code");
      var aria = on ? (sort.dir > 0 ? "ascending" : "descending") : "none";
      return '<th scope="col" data-key="' + c.key + '" aria-sort="' + aria + '" class="' + (on ? "sorted" : "") + '"' +
        (c.title ? ' title="' + esc(c.title) + '"' : "") + '><button type="button" class="sort">' + esc(c.zh) +
        '<small>' + esc(c.en) + "</small>" + '<i aria-hidden="true">' + (on ? (sort.dir > 0 ? "▲" : "▼") : "⇅") + "</i></button></th>";
    }).join("") + "</tr></thead>";
    var body = "<tbody>" + items.map(function (c) {
      var sw = colour(ind.get(c.stats), state.breaks, ind);
      return '<tr tabindex="0" data-code="' + esc(c.code) + '" data-level="' + esc(c.level) + '"><th scope="row" title="' +
        esc(c.name + " " + c.code) + '"><span class="sw" style="background:' + sw + '"></span>' + esc(c.name) +
        (c.partial ? '<span class="part">部分</span>' : "") + "</th>" + cols.slice(1).map(function (k) {
          var v = k.get(c);
          return '<td data-col="' + k.key + '" data-value="' + (v == null ? "" : esc(v)) + '"' +
            (k.tip && v == null ? ' title="' + esc(k.tip) + '"' : "") + ">" + k.fmt(v) + "</td>";
        }).join("") + "</tr>";
    }).join("") + "</tbody>";
    var s = d.stats;
    var foot = '<tfoot><tr><th scope="row">合计 Total</th>' + cols.slice(1).map(function (k) {
      var v = k.get({ code: d.code || "", stats: s });
      return '<td data-col="' + k.key + '">' + k.fmt(v) + "</td>";
    }).join("") + "</tr></tfoot>";
    table.innerHTML = head + body + foot;
    table.dataset.sort = sort.key + ":" + (sort.dir > 0 ? "asc" : "desc");
    Array.prototype.forEach.call(table.querySelectorAll("thead button.sort"), function (btn) {
      btn.addEventListener("click", function () {
        var k = btn.parentNode.dataset.key;
        var cur = state.sort || { key: "code", dir: 1 };
        var same = cur.key === k || (k === "name" && cur.key === "code");
        state.sort = { key: k === "name" ? "code" : k, dir: same ? -cur.dir : (k === "name" ? 1 : -1) };
        if (k === "name") state.sort = { key: "name", dir: same ? -cur.dir : 1 };
        renderTable();
        var again = table.querySelector('thead th[data-key="' + k + '"] button');
        if (again) again.focus();
      });
    });
    Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (tr) {
      tr.addEventListener("mouseenter", function () { hot(tr.dataset.code, true); });
      tr.addEventListener("mouseleave", function () { hot(tr.dataset.code, false); });
      tr.addEventListener("click", function () { go(tr.dataset.level, tr.dataset.code); });
      tr.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(tr.dataset.level, tr.dataset.code); }
      });
    });
    var rest = ch.rest;
    if (rest) {
      $("rest").innerHTML = "未归属任何" + esc(ch.level_label.zh) + "的楼栋 buildings in no " + esc(ch.level_label.en.toLowerCase()) +
        "：" + num(rest.buildings) + " 栋 · " + num(rest.households) + " 户 · " + num(rest.residents) + " 人";
      $("rest").hidden = false;
    } else {
      $("rest").hidden = true;
    }
  }

  // CSV of the table as shown (its order), UTF-8 with a BOM so that Excel reads the Chinese
  function csvCell(v) {
    var t = v == null ? "" : String(v);
    return /[",\n\r]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
  }
  function tableCsv() {
    var d = state.doc;
    var cols = tableColumns(d);
    var lines = [["编码 code"].concat(cols.map(function (c) { return c.zh + " " + c.en; })).map(csvCell).join(",")];
    sortedItems(d, cols).forEach(function (c) {
      lines.push([c.code].concat(cols.map(function (k) {
        var v = k.get(c);
        return k.csv ? k.csv(v) : v;
      })).map(csvCell).join(","));
    });
    return "\ufeff" + lines.join("\r\n") + "\r\n";
  }
  function today() {
    var t = new Date();
    var p2 = function (n) { return (n < 10 ? "0" : "") + n; };
    return t.getFullYear() + "-" + p2(t.getMonth() + 1) + "-" + p2(t.getDate());
  }
  function fileStem() {
    var d = state.doc;
    return (d.name || "unit") + "-" + d.level_label.zh + "-" + today();
  }
  function download(href, name) {
    var a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }
  $("btn-csv").addEventListener("click", function () {
    if (!state.doc) return;
    var url = URL.createObjectURL(new Blob([tableCsv()], { type: "text/csv;charset=utf-8" }));
    download(url, fileStem() + "-对比表.csv");
    setTimeout(function () { URL.revokeObjectURL(url); }, 4000);
  });

  // -- leaders' indicators (events, rule breaches) and their map overlays ----------------------------------
  // Sources: /api/events/stats (?community=|grid=; a street: /api/dashboard/events?street=), /api/staff/gaps,
  // /api/compounds/breaches (its totals are /api/compounds/check's), /api/special/summary, /api/events/geojson.
  // A source answering 403 (the role lacks the permission) or 404 leaves its panel and overlay out, quietly.
  var RULES = {
    large_no_party_org: "200户以上未建党组织 <span>200+ hh, no party org</span>",
    large_no_service_point: "200户以上未设服务点 <span>200+ hh, no service point</span>",
    old_no_property: "老旧小区无物业 <span>pre-2000, no property mgmt</span>"
  };
  var GAPS = { no_leader: "缺网格长", no_full_time: "缺专职", caseload_over: "超负荷" };
  var OVERLAY_KEYS = ["events", "staff", "compounds"];

  function quiet(err) {
    if (err && (err.status === 403 || err.status === 404)) return null;  // not for this role / nothing there
    return { failed: err && err.message ? err.message : String(err) };
  }
  function fetchQuiet(url) { return url ? getJSON(url).catch(quiet) : Promise.resolve(null); }
  function failed(x) { return x && x.failed !== undefined; }

  // the unit's area as the APIs take it
  function areaOf(d) {
    var c = d.code || "";
    return { level: d.level, code: c, community: c.length >= 12 ? c.slice(0, 12) : null, street: c.slice(0, 9) };
  }
  function eventsUrl(a) {
    if (a.level === "city") return "/api/events/stats";
    if (a.level === "street") return "/api/dashboard/events?street=" + a.code;
    if (a.level === "community") return "/api/events/stats?community=" + a.code;
    if (a.level === "grid") return "/api/events/stats?grid=" + a.code;
    return null;  // events are counted per grid, not per compound
  }
  function staffUrl(a) {
    if (a.level === "compound") return null;  // staff serve grids
    return "/api/staff/gaps?geometry=polygon" + (a.code ? "&code=" + a.code : "");
  }
  function compoundsUrl(a) {
    if (a.level === "city") return "/api/compounds/breaches";
    return "/api/compounds/breaches?code=" + (a.level === "street" || a.level === "community" ? a.code : a.community);
  }

  function loadIndicators(d, token) {
    var a = areaOf(d);
    state.ind = { area: a, data: {}, layers: state.ind ? state.ind.layers : {} };
    clearOverlays();
    delete document.body.dataset.indicators;
    Promise.all([fetchQuiet(eventsUrl(a)), fetchQuiet(staffUrl(a)), fetchQuiet(compoundsUrl(a)),
                 a.level === "compound" ? Promise.resolve(null) : fetchQuiet("/api/special/summary")]).then(function (res) {
      if (token !== state.token) return;
      state.ind.data = { events: res[0], staff: res[1], compounds: res[2] };
      renderEvents(res[0]);
      renderStaffGaps(res[1]);
      renderCompounds(res[2], d);
      renderSpecial(res[3], a);
      var blocks = ["staff-gaps", "compound-breaches", "special-gaps"];
      $("rules-card").hidden = blocks.every(function (id) { return $(id).hidden; });
      var any = false;
      OVERLAY_KEYS.forEach(function (k) {
        var ok = !!state.ind.data[k] && !failed(state.ind.data[k]);
        document.querySelector('#overlays label[data-overlay="' + k + '"]').hidden = !ok;
        any = any || ok;
      });
      $("overlays").hidden = !any;
      return Promise.all(OVERLAY_KEYS.map(function (k) { return $("ov-" + k).checked ? drawOverlay(k, token) : null; }));
    }).then(function () {
      if (token === state.token) document.body.dataset.indicators = a.level + (a.code ? "/" + a.code : "");
    });
  }

  function stat(key, zh, en, value, display, cls) {
    return '<div class="ev-kpi ' + (cls || "") + '" data-ind="' + key + '" data-value="' + (value == null ? "" : esc(value)) +
      '"><div class="label">' + zh + " <span>" + en + '</span></div><div class="value">' + display + "</div></div>";
  }
  function duration(h) {
    if (h == null) return "—";
    return h < 48 ? h.toFixed(1) + "<small>小时 h</small>" : (h / 24).toFixed(1) + "<small>天 d</small>";
  }
  function shortCode(code) { return code && code.length === 15 ? "网格 " + code.slice(12) : code; }

  function renderEvents(s) {
    var card = $("events-card");
    card.hidden = !s;
    if (!s) return;
    if (failed(s)) { $("events").innerHTML = '<div class="muted-note">事件统计无法加载 could not load: ' + esc(s.failed) + "</div>"; return; }
    var html = '<div class="ev-kpis">' +
      stat("open", "未结", "Open", s.open, num(s.open) + "<small>件</small>") +
      stat("overdue", "超期", "Overdue", s.overdue, num(s.overdue) + "<small>件</small>", s.overdue ? "bad" : "") +
      stat("share_closed_in_grid", "格内办结率", "Closed in grid", s.share_closed_in_grid, pct(s.share_closed_in_grid)) +
      stat("median_hours_to_close", "办结中位时长", "Median to close", s.median_hours_to_close, duration(s.median_hours_to_close)) +
      "</div>";
    html += '<div class="ev-sub" data-ind="total" data-value="' + s.total + '">共 ' + num(s.total) + " 件 total · 已办结 " + num(s.closed) +
      " · 超时办结 late " + num(s.closed_late) + " · 升级 escalated " + num(s.escalated) + "</div>";
    if (!s.total) {
      html += '<div class="muted-note">暂无事件 no events yet</div>';
    } else {
      html += trendSvg(s.trend || []);
    }
    var late = (s.overdue_list || []).slice(0, 3);
    if (late.length) {
      html += '<ul class="ind-list" id="overdue-list">' + late.map(function (e) {
        return '<li data-grid="' + esc(e.grid || "") + '"><b>' + esc(e.category_label) + "</b><span>" + esc(shortCode(e.grid) || "—") +
          " · 超期 " + (e.hours_overdue / 24).toFixed(0) + " 天</span></li>";
      }).join("") + "</ul>";
    }
    $("events").innerHTML = html;
    Array.prototype.forEach.call($("events").querySelectorAll("li[data-grid]"), function (li) {
      if (li.dataset.grid && li.dataset.grid !== (state.doc && state.doc.code)) {
        li.classList.add("link");
        li.addEventListener("click", function () { go("grid", li.dataset.grid); });
      }
    });
  }

  // last 12 months: bars = reported, line = closed (inline SVG, no chart library)
  function trendSvg(trend) {
    var t = trend.slice(-12);
    if (!t.length) return "";
    var W = 240, H = 54, pad = 2, n = t.length, bw = (W - pad * 2) / n;
    var max = Math.max.apply(null, t.map(function (m) { return Math.max(m.reported, m.closed); }).concat([1]));
    var y = function (v) { return H - 12 - (H - 16) * v / max; };
    var bars = t.map(function (m, i) {
      return '<rect x="' + (pad + i * bw + 1).toFixed(1) + '" y="' + y(m.reported).toFixed(1) + '" width="' + Math.max(1, bw - 2).toFixed(1) +
        '" height="' + (H - 12 - y(m.reported)).toFixed(1) + '" data-month="' + m.month + '" data-reported="' + m.reported +
        '" data-closed="' + m.closed + '"><title>' + m.month + " 上报 reported " + m.reported + " · 办结 closed " + m.closed + "</title></rect>";
    }).join("");
    var line = t.map(function (m, i) { return (pad + i * bw + bw / 2).toFixed(1) + "," + y(m.closed).toFixed(1); }).join(" ");
    return '<div class="trend"><svg viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" role="img" aria-label="月度趋势 monthly trend">' +
      '<g class="rep">' + bars + '</g><polyline class="clo" points="' + line + '"/>' +
      '<text x="' + pad + '" y="' + (H - 1) + '">' + t[0].month + '</text><text x="' + (W - pad) + '" y="' + (H - 1) +
      '" text-anchor="end">' + t[n - 1].month + "</text></svg>" +
      '<div class="trend-key"><i class="rep"></i>上报 reported <i class="clo"></i>办结 closed <em>每月 per month</em></div></div>';
  }

  function blockHead(zh, en, overlay) {
    return "<h4>" + zh + " <span>" + en + "</span>" + (overlay ? '<a class="maplink" role="button" tabindex="0" data-overlay="' + overlay +
      '">地图 map</a>' : "") + "</h4>";
  }
  function line(key, label, value, display, bad) {
    return '<div class="rule-line' + (bad ? " bad" : "") + '" data-ind="' + key + '" data-value="' + (value == null ? "" : esc(value)) + '"><span>' +
      label + "</span><b>" + display + "</b></div>";
  }
  function bindBlock(el) {
    Array.prototype.forEach.call(el.querySelectorAll("li[data-level]"), function (li) {
      li.addEventListener("click", function () { go(li.dataset.level, li.dataset.code); });
    });
  }

  function renderStaffGaps(fc) {
    var el = $("staff-gaps");
    el.hidden = !fc;
    if (!fc) return;
    if (failed(fc)) { el.innerHTML = blockHead("一格三员", "Grid staff") + '<div class="muted-note">无法加载 could not load</div>'; return; }
    var s = fc.summary;
    var html = blockHead("一格三员", "Grid staff", "staff");
    if (!s.grids) {
      el.innerHTML = html + '<div class="muted-note">尚无网格 no grids yet</div>';
      return;
    }
    html += line("grids_ok", "达标网格 grids meeting the rule", s.grids_ok, num(s.grids_ok) + " / " + num(s.grids)) +
      line("no_leader", "缺网格长 no 网格长", s.no_leader.length, num(s.no_leader.length), s.no_leader.length) +
      line("no_full_time", "缺专职网格员 no 专职网格员", s.no_full_time.length, num(s.no_full_time.length), s.no_full_time.length) +
      line("caseload_over", "超负荷 over " + num(s.ceiling) + " 户/人", s.caseload_over.length, num(s.caseload_over.length) +
        (s.max_caseload != null ? '<small> 最高 max ' + whole(s.max_caseload) + "</small>" : ""), s.caseload_over.length);
    var feats = fc.features.slice(0, 5);
    if (feats.length) {
      html += '<ul class="ind-list">' + feats.map(function (f) {
        var p = f.properties;
        var what = p.gaps.map(function (g) { return GAPS[g] || g; });
        if (p.caseload_over) what.push(GAPS.caseload_over + " " + whole(p.caseload));
        return '<li class="link" data-level="grid" data-code="' + esc(p.code) + '"><b>' + esc(p.name || shortCode(p.code)) + "</b><span>" +
          esc(what.join("、")) + "</span></li>";
      }).join("") + (fc.features.length > 5 ? '<li class="more">… 共 ' + fc.features.length + " 个 grids</li>" : "") + "</ul>";
    }
    el.innerHTML = html;
    bindBlock(el);
  }

  // a grid's or compound's breaches: the compounds of that unit (a grid's children are its compounds)
  function unitBreaches(fc, d) {
    if (d.level === "compound") return fc.features.filter(function (f) { return f.properties.code === d.code; });
    if (d.level !== "grid") return fc.features;
    var mine = {};
    d.children.items.forEach(function (c) { mine[c.code] = true; });
    return fc.features.filter(function (f) { return mine[f.properties.code]; });
  }

  function renderCompounds(fc, d) {
    var el = $("compound-breaches");
    el.hidden = !fc;
    if (!fc) return;
    if (failed(fc)) { el.innerHTML = blockHead("小区规则", "Compound rules") + '<div class="muted-note">无法加载 could not load</div>'; return; }
    var html = blockHead("小区规则", "Compound rules", "compounds");
    var feats = unitBreaches(fc, d);
    var counts = {};
    var whole_area = d.level !== "grid" && d.level !== "compound";
    if (whole_area) {
      counts = fc.totals.breaches;
      var t = fc.totals;
      html += line("old_ratio", "老旧小区率 old-compound ratio", t.old_ratio, pct(t.old_ratio) + "<small> " + num(t.old) + " / " +
        num(t.known_year) + "</small>");
    } else {
      Object.keys(fc.totals.breaches).forEach(function (r) { counts[r] = 0; });
      feats.forEach(function (f) { f.properties.rules.forEach(function (r) { counts[r] = (counts[r] || 0) + 1; }); });
    }
    Object.keys(counts).forEach(function (r) {
      html += line(r, RULES[r] || esc(r), counts[r], num(counts[r]), counts[r]);
    });
    if (feats.length) {
      html += '<ul class="ind-list">' + feats.slice(0, 5).map(function (f) {
        var p = f.properties;
        return '<li class="link" data-level="compound" data-code="' + esc(p.code) + '"><b>' + esc(p.name) + "</b><span>" +
          p.labels.map(function (l) { return esc(l.split(" ")[0]); }).join("、") + "</span></li>";
      }).join("") + (feats.length > 5 ? '<li class="more">… 共 ' + feats.length + " 个 compounds</li>" : "") + "</ul>";
    }
    el.innerHTML = html;
    bindBlock(el);
  }

  // numbers add up; suppressed cells ("<5", "≥5") cannot, so they are shown as given next to the sum
  function combine(values) {
    var sum = 0, nums = 0, tags = {}, order = [];
    values.forEach(function (v) {
      if (v == null) return;
      if (masked(v)) { if (!tags[v]) order.push(v); tags[v] = (tags[v] || 0) + 1; } else { sum += v; nums += 1; }
    });
    if (!order.length) return nums ? { value: sum, html: num(sum) } : { value: null, html: "—" };
    var parts = (nums ? [num(sum)] : []).concat(order.map(function (t) {
      return '<span class="masked" title="小数保护 small count withheld">' + esc(t) + "</span>" + (tags[t] > 1 ? "×" + tags[t] : "");
    }));
    var text = (nums ? [String(sum)] : []).concat(order.map(function (t) { return t + (tags[t] > 1 ? "×" + tags[t] : ""); }));
    return { value: text.join(" + "), html: parts.join(" + ") };
  }

  function renderSpecial(doc, a) {
    var el = $("special-gaps");
    el.hidden = !doc;
    if (!doc) return;
    if (failed(doc)) { el.innerHTML = blockHead("特殊人群服务", "Special groups") + '<div class="muted-note">无法加载 could not load</div>'; return; }
    var units = doc.units.filter(function (u) {
      if (a.level === "grid") return u.level === "grid" && u.code === a.code;
      return u.level === "community" && (!a.code || u.code.indexOf(a.code) === 0);
    });
    if (!units.length) { el.hidden = true; return; }
    var groups = [], byGroup = {};
    units.forEach(function (u) {
      u.groups.forEach(function (g) {
        if (!byGroup[g.group]) { byGroup[g.group] = { name: g.group_name, beyond: [], overdue: [] }; groups.push(g.group); }
        byGroup[g.group].beyond.push(g.beyond);
        byGroup[g.group].overdue.push(g.overdue);
      });
    });
    var rows = groups.map(function (g) {
      var x = byGroup[g], b = combine(x.beyond), o = combine(x.overdue);
      return '<tr data-group="' + esc(g) + '"><td>' + esc(x.name) + '</td><td data-ind="beyond" data-value="' + (b.value == null ? "" : esc(b.value)) +
        '">' + b.html + '</td><td data-ind="overdue" data-value="' + (o.value == null ? "" : esc(o.value)) + '">' + o.html + "</td></tr>";
    }).join("");
    var head = blockHead("特殊人群服务", "Special-group services");
    el.innerHTML = head + '<table class="special-table"><thead><tr><th>人群 group</th><th title="所需服务不在 ' + esc(doc.budget_m) +
      ' 米步行圈内 need beyond the circle">' + "圈外 beyond</th><th>走访超期 overdue</th></tr></thead><tbody>" + rows + "</tbody></table>" +
      '<div class="muted-note">10分钟服务圈（老年步行 ' + whole(doc.budget_m) + " 米）elderly 10-min circle; 人数 people per group" +
      (doc.suppression ? "；" + esc(doc.suppression.note || "小数保护 small cells withheld") : "") + "</div>";
  }

  // -- overlays on the map ---------------------------------------------------------------------------------
  function clearOverlays() {
    var L_ = state.ind ? state.ind.layers : {};
    Object.keys(L_).forEach(function (k) { if (L_[k]) state.map.removeLayer(L_[k]); });
    if (state.ind) state.ind.layers = {};
  }
  function inUnit(code) {
    var a = state.ind.area;
    if (!a.code) return true;
    var prefix = a.level === "compound" ? a.community : a.code;
    return code && code.indexOf(prefix) === 0;
  }
  function drawOverlay(k, token) {
    var ind = state.ind;
    if (ind.layers[k]) { state.map.removeLayer(ind.layers[k]); ind.layers[k] = null; }
    var src = k === "events" ? (state.eventsGeo && !failed(state.eventsGeo) ? Promise.resolve(state.eventsGeo)
      : fetchQuiet("/api/events/geojson"))
      : Promise.resolve(ind.data[k]);
    return src.then(function (fc) {
      if (token !== state.token || !fc || failed(fc) || !$("ov-" + k).checked) return;
      var layer;
      if (k === "events") {
        state.eventsGeo = fc;
        var feats = fc.features.filter(function (f) { return inUnit(f.properties.code); });
        layer = L.geoJSON(feats, { pointToLayer: function (f, ll) {
          var p = f.properties, size = Math.round(22 + 5 * Math.sqrt(p.open));
          return L.marker(ll, { pane: "indicators-top", icon: L.divIcon({ className: "ev-cluster" + (p.overdue ? " late" : ""),
            html: "<span>" + p.open + "</span>", iconSize: [size, size] }) });
        }, onEachFeature: function (f, l) {
          var p = f.properties;
          var cats = Object.keys(p.categories).map(function (c) { return esc(p.categories[c].label) + " " + p.categories[c].n; });
          l.bindTooltip("<b>" + esc(p.name || shortCode(p.code)) + "</b><br>未结 open " + p.open + " · 超期 overdue " + p.overdue +
            "<br>" + cats.join(" · "), { direction: "top" });
          l.on("click", function () { if (p.level === "grid") go("grid", p.code); });
        } });
      } else {
        var list = k === "compounds" ? unitBreaches(fc, state.doc) : fc.features;
        layer = L.geoJSON(list, { pane: "indicators", style: function () {
          return k === "staff" ? { color: "#b42318", weight: 2.5, dashArray: "6 4", fillColor: "#e5484d", fillOpacity: 0.16 }
            : { color: "#b54708", weight: 2, fillColor: "#f79009", fillOpacity: 0.45 };
        }, onEachFeature: function (f, l) {
          var p = f.properties;
          l.options.className = (k === "staff" ? "gap-shape" : "breach-shape") + " ov-" + p.code;
          var txt = k === "staff" ? p.gap_labels.concat(p.caseload_over ? ["超负荷 over the ceiling: " + whole(p.caseload) + " 户/人"] : [])
            : p.labels;
          l.bindTooltip("<b>" + esc(p.name || shortCode(p.code)) + "</b><br>" + txt.map(esc).join("<br>"), { sticky: true });
          l.on("click", function () { go(k === "staff" ? "grid" : "compound", p.code); });
        } });
      }
      ind.layers[k] = layer.addTo(state.map);
    });
  }
  function toggleOverlay(k, on) {
    var box = $("ov-" + k);
    if (on !== undefined) box.checked = on;
    if (!state.ind) return Promise.resolve();
    if (box.checked) return drawOverlay(k, state.token);
    if (state.ind.layers[k]) { state.map.removeLayer(state.ind.layers[k]); state.ind.layers[k] = null; }
    return Promise.resolve();
  }
  OVERLAY_KEYS.forEach(function (k) {
    $("ov-" + k).addEventListener("change", function () { toggleOverlay(k); });
  });
  // "地图 map" in a panel: switch its overlay on
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest(".maplink") : null;
    if (!a) return;
    toggleOverlay(a.id === "events-map" ? "events" : a.dataset.overlay, true);
  });

  // -- views for leaders: print layout, PNG export, big-screen mode --------------------------------------------
  function renderPrintHead(d) {
    var t = new Date();
    var zhDate = t.getFullYear() + "年" + (t.getMonth() + 1) + "月" + t.getDate() + "日";
    var lvl = d.level_label.zh + " " + d.level_label.en;
    $("print-title").textContent = d.name;
    $("print-level").textContent = lvl + (d.code ? " · " + d.code : "");
    $("print-date").textContent = "制图日期 " + zhDate + " · " + today();
    $("print-source").textContent = $("dataset").textContent ? "· " + $("dataset").textContent : "";
    var ind = indicator();
    $("map-title").innerHTML = "<b>" + esc(d.name) + "</b> <span>" + esc(lvl) + "</span><br><small>" + esc(ind.zh) + " " +
      esc(ind.en) + " · " + today() + "</small>";
  }

  // The print stylesheet (print.css, A4 landscape, one page) resizes the map: Leaflet is told so and refits
  // the unit; body[data-print] says the layout is ready. Browsers fire beforeprint; page.emulateMedia the
  // media-query change.
  function relayout() {
    if (!state.map) return;
    state.map.invalidateSize({ animate: false });
    refit();
  }
  function enterPrint() {
    state.printing = true;
    if (state.doc) renderPrintHead(state.doc);
    relayout();
    document.body.dataset.print = "ready";
  }
  function leavePrint() {
    if (!state.printing) return;
    state.printing = false;
    delete document.body.dataset.print;
    relayout();
  }
  var printQuery = window.matchMedia ? window.matchMedia("print") : null;
  if (printQuery) {
    var onPrint = function (e) { if (e.matches) enterPrint(); else leavePrint(); };
    if (printQuery.addEventListener) printQuery.addEventListener("change", onPrint); else printQuery.addListener(onPrint);
  }
  window.addEventListener("beforeprint", enterPrint);
  window.addEventListener("afterprint", leavePrint);
  $("btn-print").addEventListener("click", function () { window.print(); });

  // PNG of the map with its title, legend, scale bar and north arrow (html-to-image, drawn in the page)
  var SKIP_IN_PNG = ["map-toolbar", "hoverbox", "overlays", "notice", "leaflet-control-zoom"];
  function keepInPng(n) {
    if (!n.classList) return true;
    for (var i = 0; i < SKIP_IN_PNG.length; i++) if (n.classList.contains(SKIP_IN_PNG[i])) return false;
    return true;
  }
  $("btn-png").addEventListener("click", function () {
    if (!state.doc || !window.htmlToImage) return;
    var btn = $("btn-png");
    btn.disabled = true;
    delete document.body.dataset.png;
    renderPrintHead(state.doc);
    document.body.classList.add("exporting");
    var node = document.querySelector(".mapwrap");
    var bg = getComputedStyle($("map")).backgroundColor;
    window.htmlToImage.toPng(node, { backgroundColor: bg, pixelRatio: 1, filter: keepInPng }).then(function (url) {
      state.png = url;
      document.body.dataset.png = String(url.length);
      download(url, fileStem() + "-地图.png");
    }).catch(function (err) {
      document.body.dataset.png = "error";
      showNotice("导出图片失败 PNG export failed: " + (err && err.message ? err.message : err), true);
    }).then(function () {
      document.body.classList.remove("exporting");
      btn.disabled = false;
    });
  });

  // 大屏 big-screen mode (?mode=bigscreen): dark theme, large type; full screen when the browser allows it
  function setBig(on, fromUser) {
    document.body.classList.toggle("bigscreen", on);
    document.body.dataset.mode = on ? "bigscreen" : "normal";
    $("btn-big").setAttribute("aria-pressed", on ? "true" : "false");
    var params = new URLSearchParams(location.search);
    if (on) params.set("mode", "bigscreen"); else params.delete("mode");
    var q = params.toString();
    history.replaceState(history.state, "", location.pathname + (q ? "?" + q : "") + location.hash);
    if (fromUser) {
      var el = document.documentElement;
      if (on && document.fullscreenEnabled && !document.fullscreenElement && el.requestFullscreen) {
        el.requestFullscreen().catch(function () { /* not allowed here: the theme alone */ });
      } else if (!on && document.fullscreenElement && document.exitFullscreen) {
        document.exitFullscreen().catch(function () { /* already left */ });
      }
    }
    setTimeout(relayout, 50);
  }
  $("btn-big").addEventListener("click", function () { setBig(!document.body.classList.contains("bigscreen"), true); });
  document.addEventListener("fullscreenchange", function () { setTimeout(relayout, 50); });
  setBig(new URLSearchParams(location.search).get("mode") === "bigscreen", false);

  // -- notices ----------------------------------------------------------------------------------------
  function showNotice(msg, error) {
    var n = $("notice");
    n.textContent = msg;
    n.className = "notice" + (error ? " error" : "");
    n.hidden = false;
  }
  function hideNotice() { $("notice").hidden = true; }

  // -- who is signed in, sign-out (shared: gisgov.whoami fills #user-name/#user-role and shows #user) --------
  gisgov.bindSignOut("sign-out");

  // -- start --------------------------------------------------------------------------------------------
  $("indicator").addEventListener("change", function (e) {
    state.indicator = e.target.value;
    if (!state.doc) return;
    var ind = indicator();
    state.breaks = classify(state.doc.children.items.map(function (c) { return ind.get(c.stats); }));
    if (state.layers.children) state.layers.children.eachLayer(function (l) { l.setStyle(childStyle(l.feature.properties.code, false)); });
    renderLegend();
    renderTable();
    renderPrintHead(state.doc);
  });
  window.addEventListener("hashchange", load);
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { state.map.invalidateSize(); refit(); }, 150);
  });
  initMap();
  gisgov.whoami("user");
  getJSON("/health").then(function (h) {
    var ds = h.dataset || {};
    if (ds.name) $("dataset").textContent = "数据集 Dataset: " + ds.name;
    if (ds.synthetic) $("synthetic").hidden = false;
  }).catch(function () { /* the stats request reports problems */ });
  load();
})();

/* 网格均衡 grid balance (issue 12 item 4): the grid palette and, per grid, bars of households against the
 * households band (default 300–500, shaded, its centre marked, the deviation from the centre as ±N and %)
 * and of people against the people maximum (default 1,000).
 *
 * window.gridBalance = {
 *   palette,                     // colour-blind-safe qualitative colours (Okabe–Ito, Paul Tol muted and light)
 *   color(index, code),          // a grid's fill: the colour assign() gave the code, else palette[index]
 *   assign(grids),               // greedy colouring so that neighbours differ: grids = [{code, geometry}]
 *                                //   (GeoJSON, lon/lat; neighbours = grids sharing ≥ 2 vertices); → {code: colour}
 *   status(row, rules),          // "under" | "ok" | "over" (the row's own status when it has one)
 *   deviation(row, rules),       // {value, pct}: households minus the band's centre, and as % of the centre
 *   cell(row, rules) → HTML,     // the two bars for one grid (a table cell's content)
 *   render(container, rows, rules)  // a list of every grid, worst deviation first
 * }
 *
 * Status is never colour alone: each has an icon (▼ under, ✓ within, ▲ over), a pattern (stripes under,
 * plain within, cross-hatch over) and a blue/orange pair that deuteranopes tell apart. Text is dark on
 * light (≥ 4.5:1). No external assets; inline style attributes only (allowed by the page's CSP). */
(function (window) {
  "use strict";

  // ordered so that the first colours are the most distinct; no red/green pair relies on hue alone
  var PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", // Okabe–Ito
    "#332288", "#44AA99", "#882255", "#999933", "#AA4499", "#88CCEE", "#DDCC77", "#117733", "#CC6677", // Tol muted
    "#77AADD", "#EE8866", "#BBCC33", "#FFAABB", "#99DDFF", "#44BB99" // Tol light
  ];
  var DEFAULT_RULES = { min_households: 300, max_households: 500, max_people: 1000 };
  var STATUS = {
    under: { zh: "不足", en: "under the minimum", icon: "▼" },
    ok: { zh: "达标", en: "within the bounds", icon: "✓" },
    over: { zh: "超限", en: "over a maximum", icon: "▲" }
  };
  var fmt = new Intl.NumberFormat("zh-CN");
  var assigned = {};

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function rulesOf(rules) {
    var r = {};
    Object.keys(DEFAULT_RULES).forEach(function (k) {
      r[k] = rules && rules[k] != null ? Number(rules[k]) : DEFAULT_RULES[k];
    });
    return r;
  }
  function num(v) { var n = Number(v); return isFinite(n) ? n : 0; }

  function color(index, code) {
    if (code != null && assigned[code]) return assigned[code];
    var i = Math.abs(Number(index) || 0) % PALETTE.length;
    return PALETTE[i];
  }

  // ---- neighbours differ: grids sharing two or more vertices are neighbours ---------------------
  function rings(geom) {
    if (!geom) return [];
    if (geom.type === "Polygon") return geom.coordinates;
    if (geom.type === "MultiPolygon") return [].concat.apply([], geom.coordinates);
    if (geom.type === "Feature") return rings(geom.geometry);
    return [];
  }
  function adjacency(grids) {
    var byVertex = {}, shared = {};
    grids.forEach(function (g) {
      var seen = {};
      rings(g.geometry).forEach(function (ring) {
        ring.forEach(function (pt) {
          var k = pt[0].toFixed(6) + "," + pt[1].toFixed(6);
          if (seen[k]) return;
          seen[k] = 1;
          (byVertex[k] = byVertex[k] || []).push(g.code);
        });
      });
    });
    Object.keys(byVertex).forEach(function (k) {
      var codes = byVertex[k];
      for (var i = 0; i < codes.length; i++) {
        for (var j = i + 1; j < codes.length; j++) {
          var a = codes[i] < codes[j] ? codes[i] : codes[j], b = codes[i] < codes[j] ? codes[j] : codes[i];
          var key = a + "|" + b;
          shared[key] = (shared[key] || 0) + 1;
        }
      }
    });
    var adj = {};
    grids.forEach(function (g) { adj[g.code] = {}; });
    Object.keys(shared).forEach(function (key) {
      if (shared[key] < 2) return;
      var p = key.split("|");
      adj[p[0]][p[1]] = 1; adj[p[1]][p[0]] = 1;
    });
    return adj;
  }
  // Welsh–Powell: most neighbours first, each takes the first colour none of its neighbours has; a grid
  // keeps its colour from the previous call when no neighbour took it (colours stay put while editing)
  function assign(grids) {
    grids = (grids || []).filter(function (g) { return g && g.code != null; });
    var adj = adjacency(grids);
    var order = grids.map(function (g) { return g.code; }).sort(function (a, b) {
      return Object.keys(adj[b]).length - Object.keys(adj[a]).length || (a < b ? -1 : a > b ? 1 : 0);
    });
    var out = {};
    order.forEach(function (code) {
      var used = {};
      Object.keys(adj[code]).forEach(function (n) { if (out[n]) used[out[n]] = 1; });
      var keep = assigned[code];
      if (keep && !used[keep]) { out[code] = keep; return; }
      for (var i = 0; i < PALETTE.length; i++) {
        if (!used[PALETTE[i]]) { out[code] = PALETTE[i]; return; }
      }
      out[code] = PALETTE[order.indexOf(code) % PALETTE.length];
    });
    assigned = out;
    return Object.assign({}, out);
  }

  // ---- figures ---------------------------------------------------------------------------------
  function status(row, rules) {
    if (row && STATUS[row.status]) return row.status;
    var r = rulesOf(rules), h = num(row && row.households), p = num(row && row.people);
    if (h > r.max_households || p > r.max_people) return "over";
    if (h < r.min_households) return "under";
    return "ok";
  }
  function deviation(row, rules) {
    var r = rulesOf(rules), centre = (r.min_households + r.max_households) / 2;
    var v = Math.round(num(row && row.households) - centre);
    return { value: v, pct: centre ? (v < 0 ? -1 : 1) * Math.round((Math.abs(v) / centre) * 100) : 0, centre: centre };
  }
  function signed(n) { return (n > 0 ? "+" : n < 0 ? "−" : "±") + fmt.format(Math.abs(n)); }
  function pos(v, max) { return Math.max(0, Math.min(100, (v / max) * 100)).toFixed(1) + "%"; }

  function hhBar(h, r, dev) {
    var max = r.max_households * 1.4;
    var over = h > max;
    return "<span class='gb-bar gb-hh' role='img' aria-label='户数 households " + fmt.format(h) + "，区间 band " +
      r.min_households + "–" + r.max_households + "，偏离中心 from the centre " + signed(dev.value) + " (" +
      signed(dev.pct) + "%)'>" +
      "<span class='gb-band' style='left:" + pos(r.min_households, max) + ";width:" +
      pos(r.max_households - r.min_households, max) + "'></span>" +
      "<span class='gb-fill' style='width:" + pos(h, max) + "'></span>" +
      "<span class='gb-centre' style='left:" + pos(dev.centre, max) + "'></span>" +
      "<span class='gb-mark' style='left:" + pos(h, max) + "'></span>" +
      (over ? "<span class='gb-more' aria-hidden='true'>»</span>" : "") + "</span>";
  }
  function ppBar(p, r) {
    var max = r.max_people * 1.25;
    return "<span class='gb-bar gb-pp' role='img' aria-label='人数 people " + fmt.format(p) + " / 上限 maximum " +
      fmt.format(r.max_people) + "'>" +
      "<span class='gb-fill' style='width:" + pos(p, max) + "'></span>" +
      "<span class='gb-limit' style='left:" + pos(r.max_people, max) + "'></span>" +
      (p > max ? "<span class='gb-more' aria-hidden='true'>»</span>" : "") + "</span>";
  }

  // two rows: ▲/✓/▼, the households bar, the households and their deviation from the band's centre;
  // the people bar and the people (the cell replaces the table's two number columns)
  function cell(row, rules) {
    var r = rulesOf(rules), st = status(row, r), dev = deviation(row, r), s = STATUS[st];
    var h = num(row && row.households), p = num(row && row.people);
    var title = s.zh + " " + s.en + " · " + fmt.format(h) + " 户 households (" + r.min_households + "–" +
      r.max_households + ", 中心 centre " + dev.centre + ": " + signed(dev.value) + ", " + signed(dev.pct) + "%) · " +
      fmt.format(p) + " 人 people (≤ " + fmt.format(r.max_people) + ")";
    return "<span class='gb-cell gb-" + st + "' data-status='" + st + "' data-deviation='" + dev.value +
      "' data-households='" + h + "' data-people='" + p + "' title='" + esc(title) + "'>" +
      "<span class='gb-icon' aria-hidden='true'>" + s.icon + "</span>" + hhBar(h, r, dev) +
      "<span class='gb-num'>" + fmt.format(h) + " <small>户</small></span>" +
      "<span class='gb-dev'><b>" + signed(dev.value) + "</b> <small>" + signed(dev.pct) + "%</small></span>" +
      "<span class='gb-sr'>" + s.zh + " " + s.en + "</span>" + ppBar(p, r) +
      "<span class='gb-num gb-pnum" + (p > r.max_people ? " gb-bad" : "") + "'>" + fmt.format(p) + " <small>人</small></span>" +
      "</span>";
  }

  function legend(rules) {
    var r = rulesOf(rules);
    return "<div class='gb-legend'><span><i class='gb-key gb-key-band'></i>" + r.min_households + "–" +
      r.max_households + " 户 区间 band</span><span><i class='gb-key gb-key-centre'></i>中心 centre " +
      deviation({ households: 0 }, r).centre + "</span><span><i class='gb-key gb-key-limit'></i>≤ " +
      fmt.format(r.max_people) + " 人 people</span>" +
      ["under", "ok", "over"].map(function (k) {
        return "<span class='gb-" + k + "'><b class='gb-icon'>" + STATUS[k].icon + "</b>" + STATUS[k].zh +
          " <small>" + STATUS[k].en + "</small></span>";
      }).join("") + "</div>";
  }

  // rows: [{code, households, people, status?}]; worst |deviation| first (grids over a maximum first)
  function render(container, rows, rules) {
    if (!container) return;
    var r = rulesOf(rules);
    var list = (rows || []).slice().sort(function (a, b) {
      var da = Math.abs(deviation(a, r).value), db = Math.abs(deviation(b, r).value);
      return db - da || (a.code < b.code ? -1 : 1);
    });
    container.innerHTML = legend(r) + "<ol class='gb-list'>" + list.map(function (row) {
      var c = color(rows.indexOf(row), row.code);
      return "<li data-code='" + esc(row.code) + "'><span class='gb-swatch' style='background:" + c +
        "' aria-hidden='true'></span><b class='gb-code' title='" + esc(row.code) + "'>" +
        esc(String(row.code).slice(-3)) + "</b>" + cell(row, r) + "</li>";
    }).join("") + "</ol>";
  }

  window.gridBalance = {
    palette: PALETTE.slice(),
    color: color,
    assign: assign,
    adjacency: adjacency,
    status: status,
    deviation: deviation,
    cell: cell,
    legend: legend,
    render: render,
    STATUS: STATUS
  };
})(window);

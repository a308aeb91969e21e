/* 省级汇总 the province page: GET /api/rollup/cities (per-city rows, province totals, stale exports) and
 * /api/rollup/features?level=city (the outlines the cities exported; no outline = no map, the table and the
 * bar chart stay). Figures are counts or suppression labels ("<5", "≥5"; a sum over one is a lower bound "≥N"),
 * shown as such, never turned into numbers. State for tests: #province[data-state] = loading | ready | refused |
 * error, data-cities = rows drawn, data-features = outlines on the map. No inline scripts (CSP). */
(function (window, document) {
  "use strict";
  var gisgov = window.gisgov;
  var root = document.getElementById("province");
  var fmt = new Intl.NumberFormat("zh-CN");

  // indicators shown in the table and the chart: [key, 中文, English]
  var COLUMNS = [
    ["households", "户数", "households"],
    ["residents", "人数", "residents"],
    ["buildings", "楼栋", "buildings"],
    ["compounds", "小区", "compounds"],
    ["grids", "网格", "grids"],
    ["staff.total", "网格员", "grid staff"],
    ["age.60+", "60岁以上", "aged 60+"],
    ["special.people", "特殊人群", "special groups"]
  ];
  var SHARES = [
    ["elderly_share", "老龄化率", "aged 60+ share", true],
    ["old_compound_share", "老旧小区率", "old compounds", true],
    ["coverage.complete.share", "完整服务圈覆盖", "complete circle coverage", true]
  ];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function isLabel(v) { return typeof v === "string"; }

  // a figure cell: numbers formatted, suppression labels marked (title explains), lower bounds marked
  function figure(v) {
    var span = el("span");
    if (v === undefined || v === null) { span.textContent = "—"; span.className = "muted"; return span; }
    if (isLabel(v)) {
      span.textContent = v;
      var lower = /^≥\d+$/.test(v);
      span.className = "sup";
      span.title = v.charAt(0) === "<" ? "小数抑制：少于" + v.slice(1) + "，精确数不公开 suppressed: fewer than " + v.slice(1)
        : (lower ? "下限：含小数抑制 lower bound (a suppressed figure inside) " : "") + v;
      span.setAttribute("data-suppressed", "1");
      return span;
    }
    span.textContent = fmt.format(v);
    return span;
  }

  function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + "%"; }

  function th(zh, en) { var h = el("th", {}, zh); h.appendChild(el("span", {}, en)); return h; }

  function groupColumns(view) {
    var out = [];
    var seen = {};
    (view.labels.special_groups || []).forEach(function (g) {
      var key = "special.group." + g.code;
      if (!seen[key]) { seen[key] = 1; out.push([key, g.name_zh || g.code, g.name_en || g.code]); }
    });
    return out;
  }

  function drawTable(view) {
    var table = document.getElementById("cities");
    table.textContent = "";
    var cols = COLUMNS.concat(groupColumns(view));
    var head = el("tr");
    head.appendChild(th("代码", "code"));
    head.appendChild(th("名称", "name"));
    head.appendChild(th("导出时间", "exported"));
    cols.forEach(function (c) { head.appendChild(th(c[1], c[2])); });
    SHARES.forEach(function (s) { head.appendChild(th(s[1], s[2])); });
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var body = el("tbody");
    view.cities.forEach(function (c) {
      var tr = el("tr", {"data-city": c.city_code});
      if (c.stale) tr.className = "stale";
      tr.appendChild(el("td", {}, c.city_code));
      tr.appendChild(el("td", {}, c.name));
      var when = el("td", {"title": "载入 loaded " + c.loaded_at + " · " + (c.checksum || "")});
      when.textContent = c.exported_at.replace("T", " ").slice(0, 16) + " (" + c.age_hours.toFixed(1) + " h)";
      if (c.stale) {
        var tag = el("b", {"class": "stale-tag", "title": "导出早于 " + view.stale_hours + " 小时 older than " + view.stale_hours + " h"}, "过期 stale");
        when.appendChild(tag);
      }
      tr.appendChild(when);
      cols.forEach(function (col) { var td = el("td", {"data-ind": col[0]}); td.appendChild(figure(c.figures[col[0]])); tr.appendChild(td); });
      SHARES.forEach(function (s) { tr.appendChild(el("td", {}, pct(c.shares[s[0]]))); });
      body.appendChild(tr);
    });
    var p = view.province;
    var tot = el("tr", {"class": "total", "data-city": "province"});
    tot.appendChild(el("td", {}, "全省"));
    tot.appendChild(el("td", {}, "合计 province (" + p.cities + " 市 cities)"));
    tot.appendChild(el("td", {}, p.stale_cities ? p.stale_cities + " 个过期 stale" : ""));
    cols.forEach(function (col) { var td = el("td", {"data-ind": col[0]}); td.appendChild(figure(p.figures[col[0]])); tot.appendChild(td); });
    SHARES.forEach(function (s) { tot.appendChild(el("td", {}, pct(p.shares[s[0]]))); });
    body.appendChild(tot);
    table.appendChild(body);
  }

  function drawTotals(view) {
    var p = view.province;
    var box = document.getElementById("totals");
    box.textContent = "";
    var big = el("div", {"class": "big"});
    big.appendChild(figure(p.figures.residents));
    box.appendChild(big);
    box.appendChild(el("div", {"class": "muted"}, "人 residents · " + p.cities + " 市 cities · " + p.streets + " 街道 streets · " + p.communities + " 社区 communities"));
    var kv = el("table", {"class": "kv"});
    COLUMNS.forEach(function (c) {
      var tr = el("tr"); var h = el("th", {}, c[1]); h.appendChild(el("span", {}, " " + c[2])); tr.appendChild(h);
      var td = el("td"); td.appendChild(figure(p.figures[c[0]])); tr.appendChild(td); kv.appendChild(tr);
    });
    SHARES.forEach(function (s) {
      var tr = el("tr"); var h = el("th", {}, s[1]); h.appendChild(el("span", {}, " " + s[2])); tr.appendChild(h);
      tr.appendChild(el("td", {}, pct(p.shares[s[0]]))); kv.appendChild(tr);
    });
    box.appendChild(kv);
    var notes = document.getElementById("notes");
    notes.textContent = "";
    view.notes.forEach(function (n) { notes.appendChild(el("li", {}, n)); });
    if (p.stale_cities) notes.appendChild(el("li", {}, p.stale_cities + " 个市的导出已过期（早于 " + view.stale_hours + " 小时）" + p.stale_cities + " cities' exports are stale (older than " + view.stale_hours + " h)"));
    document.getElementById("notes-card").hidden = !notes.children.length;
    document.getElementById("generated").textContent = "生成于 generated " + view.generated_at.replace("T", " ").slice(0, 19);
  }

  function drawBars(view, key) {
    var box = document.getElementById("bars");
    box.textContent = "";
    var lb = function (v) { return typeof v === "number" ? v : (isLabel(v) && v.charAt(0) === "≥" ? Number(v.slice(1)) : 0); };
    var max = 0;
    view.cities.forEach(function (c) { max = Math.max(max, lb(c.figures[key])); });
    view.cities.forEach(function (c) {
      var v = c.figures[key];
      var row = el("div", {"class": "bar", "data-city": c.city_code});
      row.appendChild(el("span", {"title": c.city_code}, c.name));
      var track = el("span", {"class": "track"});
      var fill = el("span", {"class": "fill" + (isLabel(v) ? " lower" : "")});
      fill.style.width = (max ? (100 * lb(v) / max) : 0) + "%";
      track.appendChild(fill); row.appendChild(track);
      var val = el("span", {"class": "v"}); val.appendChild(figure(v)); row.appendChild(val);
      box.appendChild(row);
    });
  }

  var map = null, outlines = null, features = null;

  function drawMap(fc, view, key) {
    features = fc;
    root.setAttribute("data-features", String(fc.features.length));
    if (!fc.features.length) {
      var n = document.getElementById("notice");
      n.hidden = false;
      n.textContent = "汇总数据不含范围，无法绘图；见下表与左侧条形图 the roll-up carries no outlines: no map, see the table and the bar chart";
      return;
    }
    if (!map) map = window.L.map("map", {zoomControl: true});
    if (outlines) outlines.remove();
    var byCity = {};
    view.cities.forEach(function (c) { byCity[c.city_code] = c; });
    var max = 0;
    fc.features.forEach(function (f) { var v = (byCity[f.properties.city_code] || {figures: {}}).figures[key]; if (typeof v === "number") max = Math.max(max, v); });
    outlines = window.L.geoJSON(fc, {
      style: function (f) {
        var c = byCity[f.properties.city_code] || {figures: {}};
        var v = c.figures[key];
        var t = typeof v === "number" && max ? v / max : 0;
        return {color: c.stale ? "#d95f02" : "#13294b", weight: 2, dashArray: c.stale ? "6 4" : null,
          fillColor: "#1f5fbf", fillOpacity: 0.1 + 0.55 * t};
      },
      onEachFeature: function (f, layer) {
        var c = byCity[f.properties.city_code] || {figures: {}, shares: {}};
        var div = el("div");
        div.appendChild(el("b", {}, f.properties.name + " " + f.properties.city_code));
        COLUMNS.slice(0, 5).forEach(function (col) {
          var line = el("div", {}, col[1] + " " + col[2] + ": "); line.appendChild(figure(c.figures[col[0]])); div.appendChild(line);
        });
        div.appendChild(el("div", {}, "导出 exported " + (c.exported_at || "").slice(0, 16).replace("T", " ") + (c.stale ? " · 过期 stale" : "")));
        layer.bindPopup(div);
        layer.bindTooltip(f.properties.name, {permanent: true, direction: "center", className: "city-label"});
      }
    }).addTo(map);
    map.fitBounds(outlines.getBounds(), {padding: [20, 20]});
  }

  function fill(view) {
    var sel = document.getElementById("indicator");
    COLUMNS.forEach(function (c) { sel.appendChild(el("option", {value: c[0]}, c[1] + " " + c[2])); });
    groupColumns(view).forEach(function (c) { sel.appendChild(el("option", {value: c[0]}, c[1] + " " + c[2])); });
    sel.value = "residents";
    sel.addEventListener("change", function () { drawBars(view, sel.value); if (features) drawMap(features, view, sel.value); });
    drawTotals(view);
    drawTable(view);
    drawBars(view, sel.value);
    root.setAttribute("data-cities", String(view.cities.length));
  }

  function refuse(err) {
    var n = document.getElementById("notice");
    n.hidden = false;
    n.textContent = err.status === 403
      ? "仅限全市（省级）账号查看省级汇总 the province roll-up is for accounts bound to the top of the hierarchy only"
      : "载入失败 could not load: " + err.message;
    document.getElementById("totals").textContent = n.textContent;
    root.setAttribute("data-state", err.status === 403 ? "refused" : "error");
  }

  gisgov.bindSignOut("sign-out");
  gisgov.whoami("user");
  gisgov.api("/api/rollup/cities").then(function (view) {
    fill(view);
    if (!view.cities.length) {
      document.getElementById("notice").hidden = false;
      document.getElementById("notice").textContent = "尚未载入任何城市的汇总（gisgov rollup load） no city roll-up loaded yet";
      root.setAttribute("data-features", "0");
      root.setAttribute("data-state", "ready");
      return null;
    }
    return gisgov.api("/api/rollup/features?level=city").then(function (fc) {
      drawMap(fc, view, "residents");
      root.setAttribute("data-state", "ready");
    });
  }).catch(refuse);
})(window, document);

/* 方案版本 plan versions panel of the grid editor (issue 12 item 3), in #plans-panel.
 *
 * Lists the community's versions (草稿 draft / 启用 active / 归档 archived: author, time, note, grids, share
 * within the bounds; the version open in the editor is marked) and does the plan's lifecycle from the page:
 *   打开 open a version (gridEditor.open({plan})), 对比 compare two (counts before/after per grid, moved
 *   buildings highlighted on the map through gridEditor.highlight), 删除草稿 delete a draft, 自动划分 propose
 *   (grids ticked as locked are kept as they are) and 修复 repair the open version (both saved as a draft
 *   and opened), 启用 activate (a confirmation showing the diff against the active version; a 409 conflict
 *   explained in Chinese with what to do), 导出 export (code table CSV, GeoPackage, Shapefile).
 * Refreshes on the editor's "grideditor:saved" event. Every control is a button, link, select or checkbox;
 * dialogs are <dialog> elements (Esc closes). No inline scripts, nothing loaded from elsewhere.
 *
 * Page state for tests and scripts: #plans-panel[data-state] ("loading" | "ready" | "error"),
 * [data-loads] (incremented after each list load), [data-busy] while a request runs, [data-open] the
 * version open in the editor, [data-highlighted] how many buildings the last comparison highlighted. */
(function (window, document) {
  "use strict";

  var STATUS_ZH = { draft: "草稿", active: "启用", archived: "归档" };
  var STATUS_EN = { draft: "draft", active: "active", archived: "archived" };
  // moved buildings: white with the editor's black outline, apart from every grid fill and the grey buildings
  var MOVED_COLOR = "#ffffff";
  var fmt = new Intl.NumberFormat("zh-CN");
  var panel = document.getElementById("plans-panel");
  if (!panel) return;

  var P = { plans: [], me: null, loads: 0, busy: false, compare: null, openVersion: null, ownHighlight: null };
  var params = new URLSearchParams(window.location.search);

  // ---- helpers ---------------------------------------------------------------------------------
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function api(method, url, body) { return window.gisgov.api(url, { method: method, body: body }); }
  function editor() { return window.gridEditor || null; }
  function short(code) { return code && code.length > 3 ? code.slice(-3) : code; }
  function when(t) { return t ? String(t).slice(0, 16).replace("T", " ") : "—"; }
  function signed(n) { return n > 0 ? "+" + fmt.format(n) : n < 0 ? "−" + fmt.format(-n) : "0"; }
  function el(id) { return document.getElementById(id); }

  // the editor's state: gridEditor.state() (the editor's documented interface) or, from an older editor,
  // its state object
  function state() {
    var ge = editor();
    if (!ge || !ge.state) return {};
    var s = typeof ge.state === "function" ? ge.state() : ge.state;
    if (!s) return {};
    var community = s.community && typeof s.community === "object" ? s.community.code : s.community;
    return {
      sid: s.sid, community: community || params.get("community"), revision: s.revision,
      base_version: s.base_version, plan_version: s.plan_version,
      dirty: s.dirty != null ? !!s.dirty : !!s.moves, order: s.order || [], grids: s.grids || {}, rules: s.rules || null
    };
  }
  function community() { return state().community || params.get("community"); }
  function active() { return P.plans.filter(function (p) { return p.status === "active"; })[0] || null; }
  function byVersion(v) { return P.plans.filter(function (p) { return p.version === v; })[0] || null; }
  // the version open in the editor: the one it says, else the version its session started from, else active
  function openVersion() {
    var s = state();
    if (s.plan_version != null) return Number(s.plan_version);
    if (P.openVersion != null) return P.openVersion;
    if (s.base_version != null) return Number(s.base_version);
    var a = active();
    return a ? a.version : null;
  }
  function can(perm) { return !!(P.me && (P.me.permissions || []).indexOf(perm) >= 0); }
  // share of grids within the bounds: the list's within_bounds (a share, 0–1), else the count stored in stats
  function withinShare(p) {
    var n = p.grids || 0;
    if (!n) return null;
    var share = null;
    if (p.within_bounds != null) share = Number(p.within_bounds);
    else if (p.stats && p.stats.summary && p.stats.summary.within_bounds != null) share = Number(p.stats.summary.within_bounds) / n;
    if (share == null || !isFinite(share)) return null;
    return { count: Math.round(share * n), share: share };
  }
  function setBusy(on) {
    P.busy = on;
    if (on) panel.dataset.busy = "1"; else delete panel.dataset.busy;
    panel.querySelectorAll("button.plans-act").forEach(function (b) { b.disabled = on || b.dataset.off === "1"; });
  }
  function message(html, kind) {
    var m = el("plans-msg");
    if (!m) return;
    m.hidden = !html;
    m.className = "plans-msg " + (kind || "");
    m.innerHTML = html || "";
  }
  function errorText(e) {
    var b = e && e.body;
    return esc((b && (b.message_zh ? b.message_zh + " " + (b.message_en || "") : b.detail)) || (e && e.message) || e);
  }

  // ---- the panel -------------------------------------------------------------------------------
  function skeleton() {
    panel.innerHTML =
      "<h3>方案版本 <span>Plan versions</span> <em class='count' id='plans-count'></em></h3>" +
      "<div class='plans-tools'>" +
      "<button type='button' id='plans-propose' class='plans-act'>自动划分 <span>Propose…</span></button>" +
      "<button type='button' id='plans-repair' class='plans-act'>修复 <span>Repair</span></button>" +
      "</div>" +
      "<div id='plans-msg' class='plans-msg' role='status' aria-live='polite' hidden></div>" +
      "<ol id='plans-list' class='plans-list' aria-label='方案版本 plan versions'></ol>" +
      "<form id='plans-compare' class='plans-compare'>" +
      "<label>对比 <span>Compare</span> <select id='plans-a' aria-label='原版本 version a'></select></label>" +
      "<label>→ <select id='plans-b' aria-label='新版本 version b'></select></label>" +
      "<button type='submit' class='plans-act' id='plans-compare-go'>对比 <span>Compare</span></button>" +
      "</form>" +
      "<div id='plans-diff' class='plans-diff' hidden></div>";
    el("plans-propose").addEventListener("click", proposeDialog);
    el("plans-repair").addEventListener("click", repair);
    el("plans-compare").addEventListener("submit", function (e) { e.preventDefault(); compare(); });
  }

  function render() {
    var open = openVersion();
    panel.dataset.open = open == null ? "" : String(open);
    el("plans-count").textContent = P.plans.length ? String(P.plans.length) : "";
    var list = el("plans-list");
    var edit = can("edit_plans"), act = can("activate_plans");
    var c = community();
    list.innerHTML = P.plans.slice().reverse().map(function (p) {
      var w = withinShare(p), isOpen = p.version === open;
      var base = "/api/grids/plans/" + encodeURIComponent(c) + "/" + p.version;
      return "<li class='plan plan-" + esc(p.status) + (isOpen ? " is-open" : "") + "' data-version='" + p.version +
        "' data-status='" + esc(p.status) + "'" + (isOpen ? " aria-current='true'" : "") + ">" +
        "<div class='plan-head'><b class='plan-v'>第 " + p.version + " 版</b>" +
        "<span class='plan-status st-" + esc(p.status) + "'>" + (STATUS_ZH[p.status] || esc(p.status)) +
        " <small>" + (STATUS_EN[p.status] || "") + "</small></span>" +
        (isOpen ? "<span class='plan-open-tag'>编辑中 <small>open</small></span>" : "") + "</div>" +
        "<div class='plan-meta'>" + esc(p.author || "—") + " · " + esc(when(p.activated || p.created)) +
        (p.parent_version != null ? " · 基于 v" + p.parent_version : "") + "</div>" +
        "<div class='plan-figs'>" + fmt.format(p.grids) + " 格 grids" +
        (w ? " · 达标 within <b>" + w.count + "/" + p.grids + "</b> (" + Math.round(w.share * 100) + "%)" : "") + "</div>" +
        (p.note ? "<div class='plan-note' title='" + esc(p.note) + "'>" + esc(p.note) + "</div>" : "") +
        "<div class='plan-actions'>" +
        "<button type='button' class='plans-act' data-act='open'" + (isOpen ? " data-off='1' disabled" : "") + ">" +
        (isOpen ? "已打开 <span>Open</span>" : "打开 <span>Open</span>") + "</button>" +
        (act && p.status !== "active" ? "<button type='button' class='plans-act' data-act='activate'>启用 <span>Activate</span></button>" : "") +
        (edit && p.status === "draft" ? "<button type='button' class='plans-act danger' data-act='delete'>删除草稿 <span>Delete</span></button>" : "") +
        "<details class='plan-export'><summary>导出 <span>Export</span></summary>" +
        "<a class='dl-csv' href='" + base + "/codes?format=csv' download>编码表 <span>Code table (CSV)</span></a>" +
        "<a class='dl-gpkg' href='" + base + "/export?format=gpkg' download>GeoPackage</a>" +
        "<a class='dl-shp' href='" + base + "/export?format=shp' download>Shapefile</a></details>" +
        "</div></li>";
    }).join("") || "<li class='plan none'>暂无方案 <span>no plan yet</span></li>";
    list.querySelectorAll("button[data-act]").forEach(function (b) {
      var v = Number(b.closest("li").dataset.version);
      b.addEventListener("click", function () {
        var act = b.dataset.act;
        if (act === "open") openPlan(v);
        else if (act === "activate") activateDialog(v);
        else if (act === "delete") deleteDialog(v);
      });
    });
    el("plans-propose").hidden = !edit;
    el("plans-repair").hidden = !edit;
    var r = el("plans-repair");
    r.dataset.off = open == null ? "1" : "";
    r.title = open == null ? "" : "修复第 " + open + " 版的规则问题，结果另存为草稿 repair version " + open + " (saved as a draft)";
    // compare: defaults a = active, b = the open version (or the newest other)
    var a = el("plans-a"), b = el("plans-b"), keepA = a.value, keepB = b.value;
    var opts = P.plans.slice().reverse().map(function (p) {
      return "<option value='" + p.version + "'>第 " + p.version + " 版 " + (STATUS_ZH[p.status] || "") + "</option>";
    }).join("");
    a.innerHTML = opts; b.innerHTML = opts;
    var act0 = active();
    var defA = act0 ? act0.version : (P.plans[0] && P.plans[0].version);
    var defB = open != null && open !== defA ? open : (P.plans.length ? P.plans[P.plans.length - 1].version : null);
    a.value = keepA && byVersion(Number(keepA)) ? keepA : String(defA);
    b.value = keepB && byVersion(Number(keepB)) ? keepB : String(defB);
    el("plans-compare").hidden = P.plans.length < 2;
    setBusy(P.busy);
  }

  function load() {
    var c = community();
    if (!c) { panel.dataset.state = "error"; return Promise.resolve(); }
    return api("GET", "/api/grids/plans/" + encodeURIComponent(c)).then(function (plans) {
      P.plans = (plans || []).slice().sort(function (x, y) { return x.version - y.version; });
      render();
      P.loads++;
      panel.dataset.loads = String(P.loads);
      panel.dataset.state = "ready";
    }).catch(function (e) {
      panel.dataset.state = "error";
      message("方案列表加载失败 Could not load the versions: " + errorText(e), "error");
    });
  }

  // ---- open ------------------------------------------------------------------------------------
  function openPlan(v) {
    var ge = editor();
    if (!ge || typeof ge.open !== "function") {
      message("此编辑器版本不能打开其他版本 this editor cannot open another version yet", "error");
      return Promise.resolve(false);
    }
    setBusy(true);
    message("正在打开第 " + v + " 版… <span>Opening version " + v + "…</span>");
    return Promise.resolve(ge.open({ plan: v })).then(function () {
      P.openVersion = v;
      message("已打开第 " + v + " 版 <span>Version " + v + " is open</span>", "ok");
      setBusy(false);
      render();
      return true;
    }, function (e) {
      setBusy(false);
      // the planner chose to keep their unsaved edits: not an error
      var kept = !e || !e.message || /取消|cancel/i.test(e.message);
      message(kept ? "未打开第 " + v + " 版：保留未保存的修改 <span>not opened: your unsaved edits are kept</span>"
        : "打开失败 Could not open: " + errorText(e), kept ? "" : "error");
      render();
      return false;
    });
  }

  // ---- compare ---------------------------------------------------------------------------------
  function highlight(codes) {
    var ge = editor();
    clearHighlight();
    if (ge && typeof ge.highlight === "function") {
      var n = ge.highlight(codes, { color: MOVED_COLOR, className: "plan-moved" });
      if (typeof n === "number") return n;
      if (n && n.length != null) return n.length;
      // the editor says how many of the codes it found on the map
      var said = document.body.dataset.highlighted;
      return said != null && said !== "" ? Number(said) : codes.length;
    }
    // an editor without highlight(): outline the buildings' own layers in a layer of this panel
    var s = ge && ge.state && typeof ge.state !== "function" ? ge.state : null;
    if (!ge || !ge.map || !s || !s.buildings || !window.L) return 0;
    var group = window.L.featureGroup();
    codes.forEach(function (code) {
      var b = s.buildings[code];
      if (!b || !b.layer) return;
      var gj = b.layer.toGeoJSON();
      window.L.geoJSON(gj, {
        interactive: false,
        pointToLayer: function (f, ll) { return window.L.circleMarker(ll, { radius: 5 }); },
        style: function () {
          return { color: "#000000", weight: 2.2, fillColor: MOVED_COLOR, fillOpacity: 1, className: "plan-moved" };
        }
      }).addTo(group);
    });
    group.addTo(ge.map);
    P.ownHighlight = group;
    return group.getLayers().length;
  }
  function clearHighlight() {
    var ge = editor();
    if (P.ownHighlight && ge && ge.map) ge.map.removeLayer(P.ownHighlight);
    P.ownHighlight = null;
    if (ge && typeof ge.clearHighlight === "function") ge.clearHighlight();
    delete panel.dataset.highlighted;
  }

  function diffTable(d) {
    var rows = (d.grids || []).map(function (g) {
      var b = g.before || { households: 0, people: 0, buildings: 0 }, a = g.after || { households: 0, people: 0, buildings: 0 };
      var dh = a.households - b.households, dp = a.people - b.people;
      var tag = !g.before ? " <em class='tag-new'>新 new</em>" : !g.after ? " <em class='tag-gone'>撤 gone</em>" : "";
      return { changed: dh !== 0 || dp !== 0 || !g.before || !g.after, html: "<tr data-code='" + esc(g.code) +
        "' data-before='" + b.households + "' data-after='" + a.households + "'><td title='" + esc(g.code) + "'><b>" +
        esc(short(g.code)) + "</b>" + tag + "</td><td class='num'>" + fmt.format(b.households) + " → <b>" +
        fmt.format(a.households) + "</b> <em class='" + (dh ? "chg" : "") + "'>" + signed(dh) + "</em></td><td class='num'>" +
        fmt.format(b.people) + " → <b>" + fmt.format(a.people) + "</b> <em class='" + (dp ? "chg" : "") + "'>" +
        signed(dp) + "</em></td></tr>" };
    });
    rows.sort(function (x, y) { return (y.changed ? 1 : 0) - (x.changed ? 1 : 0); });
    var hh = (d.moved || []).reduce(function (s, m) { return s + (m.households || 0); }, 0);
    return "<div class='diff-sum' data-moved='" + d.buildings_moved + "'>第 " + d.from + " 版 → 第 " + d.to +
      " 版：<b>" + fmt.format(d.buildings_moved) + "</b> 栋楼栋改变网格（" + fmt.format(hh) + " 户）" +
      "<br><span>v" + d.from + " → v" + d.to + ": " + d.buildings_moved + " buildings in another grid (" + hh +
      " households)</span></div>" +
      "<div class='table-wrap diff-wrap'><table class='mini diff-table'><thead><tr><th>网格 <span>Grid</span></th>" +
      "<th class='num'>户 <span>HH</span></th><th class='num'>人 <span>People</span></th></tr></thead><tbody>" +
      rows.map(function (r) { return r.html; }).join("") + "</tbody></table></div>";
  }

  function compare() {
    var a = Number(el("plans-a").value), b = Number(el("plans-b").value);
    var box = el("plans-diff");
    if (!a || !b || a === b) {
      box.hidden = false;
      box.innerHTML = "<div class='plans-msg'>请选择两个不同的版本 <span>pick two different versions</span></div>";
      return Promise.resolve(null);
    }
    setBusy(true);
    return api("GET", "/api/grids/diff/" + encodeURIComponent(community()) + "?a=" + a + "&b=" + b).then(function (d) {
      P.compare = d;
      box.hidden = false;
      box.innerHTML = diffTable(d) + "<div class='diff-foot'><span class='legend-moved'><i></i>地图上白色为移动的楼栋 " +
        "<span>moved buildings marked on the map</span></span>" +
        "<button type='button' id='plans-diff-clear'>清除对比 <span>Clear</span></button></div>";
      el("plans-diff-clear").addEventListener("click", function () {
        clearHighlight(); box.hidden = true; box.innerHTML = ""; P.compare = null;
      });
      var n = highlight((d.moved || []).map(function (m) { return m.building; }));
      panel.dataset.highlighted = String(n);
      panel.dataset.compared = a + ":" + b;
      setBusy(false);
      return d;
    }).catch(function (e) {
      setBusy(false);
      box.hidden = false;
      box.innerHTML = "<div class='plans-msg error'>对比失败 Compare failed: " + errorText(e) + "</div>";
      return null;
    });
  }

  // ---- dialogs ---------------------------------------------------------------------------------
  // one <dialog> for every question; body: HTML; buttons: [{id, label, kind}]; resolves with the id chosen
  function dialog(title, body, buttons, opts) {
    opts = opts || {};
    var d = el("plans-dialog");
    if (!d) {
      d = document.createElement("dialog");
      d.id = "plans-dialog";
      d.className = "plans-dialog";
      d.setAttribute("aria-labelledby", "plans-dialog-title");
      document.body.appendChild(d);
    }
    d.dataset.kind = opts.kind || "";
    d.innerHTML = "<form method='dialog'><h2 id='plans-dialog-title'>" + title + "</h2><div class='dlg-body'>" + body +
      "</div><div class='dlg-msg' role='alert' hidden></div><div class='dlg-buttons'>" + buttons.map(function (b) {
        return "<button type='submit' value='" + b.id + "' class='" + (b.kind || "") + "' id='dlg-" + b.id + "'>" + b.label + "</button>";
      }).join("") + "<button type='submit' value='cancel' id='dlg-cancel'>取消 <span>Cancel</span></button></div></form>";
    return new Promise(function (resolve) {
      var form = d.querySelector("form");
      var handler = opts.onSubmit;
      form.addEventListener("submit", function (e) {
        var which = e.submitter ? e.submitter.value : "cancel";
        if (which === "cancel" || !handler) { return; }
        // the dialog stays open while the action runs (its answer may be a question: a 409)
        e.preventDefault();
        handler(which, d).then(function (done) { if (done) { d.close(which); } });
      });
      d.addEventListener("close", function onClose() {
        d.removeEventListener("close", onClose);
        resolve(d.returnValue || "cancel");
      });
      d.showModal();
      var first = d.querySelector(opts.focus || ".dlg-buttons button");
      if (first) first.focus();
    });
  }
  function dialogMsg(d, html, kind) {
    var m = d.querySelector(".dlg-msg");
    m.hidden = !html;
    m.className = "dlg-msg " + (kind || "");
    m.innerHTML = html || "";
  }
  function dialogBusy(d, on) {
    d.querySelectorAll(".dlg-buttons button").forEach(function (b) { b.disabled = on && b.value !== "cancel"; });
    if (on) d.dataset.busy = "1"; else delete d.dataset.busy;
  }

  // ---- propose / repair ------------------------------------------------------------------------
  function proposeDialog() {
    var s = state();
    var act0 = active();
    var order = s.order || [];
    var body = "<p>按规则自动划分本社区的网格，结果保存为新草稿并打开。勾选的网格保持不变。<br><span>Draft a plan for " +
      "the community with the solver; it is saved as a new draft and opened. Ticked grids are kept as they are " +
      "(grids of the active plan" + (act0 ? ", version " + act0.version : "") + ").</span></p>" +
      "<fieldset class='lock-list'><legend>锁定网格 <span>Lock grids</span></legend>" +
      (order.length ? order.map(function (code) {
        var g = s.grids[code] || {};
        return "<label><input type='checkbox' name='lock' value='" + esc(code) + "'> <b>" + esc(short(code)) + "</b> <small>" +
          esc(code) + " · " + fmt.format(g.households || 0) + " 户</small></label>";
      }).join("") : "<p class='muted'>暂无网格 <span>no grids</span></p>") + "</fieldset>" +
      "<label class='note'>说明 <span>Note</span> <input type='text' name='note' maxlength='200' value='自动划分 proposed in the editor'></label>";
    return dialog("自动划分 <span>Propose a plan</span>", body,
      [{ id: "propose", label: "划分并保存为草稿 <span>Propose, save as draft</span>", kind: "primary" }], {
        kind: "propose", focus: "input[name=lock]",
        onSubmit: function (which, d) {
          var lock = Array.prototype.map.call(d.querySelectorAll("input[name=lock]:checked"), function (i) { return i.value; });
          var note = d.querySelector("input[name=note]").value || null;
          dialogBusy(d, true);
          dialogMsg(d, "正在划分… <span>Solving…</span>");
          return api("POST", "/api/grids/propose", { community: community(), lock: lock, save: true, note: note }).then(function (out) {
            dialogBusy(d, false);
            if (out.version == null) {
              dialogMsg(d, "<b>未得到方案</b>（" + esc(out.status) + "）：" + esc((out.findings || []).map(function (f) {
                return f.message || f.kind || JSON.stringify(f);
              }).join("；") || "无可行方案 no plan obeys the rules") + "。可减少锁定的网格后重试。<br><span>No plan was " +
                "drafted; unlock some grids and try again.</span>", "error");
              return false;
            }
            saved(out.version, "自动划分 proposed" + (lock.length ? "（锁定 " + lock.length + " 格 locked）" : ""));
            return true;
          }, function (e) {
            dialogBusy(d, false);
            dialogMsg(d, "划分失败 Propose failed: " + errorText(e), "error");
            return false;
          });
        }
      });
  }

  function repair() {
    var v = openVersion();
    if (v == null || P.busy) return Promise.resolve(null);
    setBusy(true);
    message("正在修复第 " + v + " 版… <span>Repairing version " + v + "…</span>");
    return api("POST", "/api/grids/repair", { community: community(), plan: v, save: true }).then(function (out) {
      setBusy(false);
      if (out.version == null) {
        message("修复未保存新版本 <span>repair saved no version</span>", "error");
        return null;
      }
      saved(out.version, "修复 repaired v" + v + "：移动 " + out.buildings_moved + " 栋 moved, 问题 breaks " +
        out.breaks_before + " → " + out.breaks_after);
      return out;
    }, function (e) {
      setBusy(false);
      message("修复失败 Repair failed: " + errorText(e), "error");
      return null;
    });
  }

  // a new draft was saved by propose/repair: list it, say so, open it
  function saved(version, what) {
    return load().then(function () {
      message("✓ " + esc(what) + " → 草稿第 " + version + " 版 <span>saved as draft version " + version + "</span>", "ok");
      panel.dataset.lastSaved = String(version);
      return openPlan(version).then(function (ok) {
        if (ok) message("✓ " + esc(what) + " → 草稿第 " + version + " 版，已打开 <span>saved as draft version " + version +
          " and opened</span>", "ok");
      });
    });
  }

  // ---- delete ----------------------------------------------------------------------------------
  function deleteDialog(v) {
    var p = byVersion(v);
    if (!p || p.status !== "draft") return Promise.resolve(null);
    var isOpen = v === openVersion();
    return dialog("删除草稿第 " + v + " 版？ <span>Delete draft version " + v + "?</span>",
      "<p>草稿将被永久删除（启用和归档的版本不能删除）。" + (isOpen ? "<b>该草稿正在编辑中。</b>" : "") +
      "<br><span>The draft is deleted for good (active and archived versions cannot be deleted)." +
      (isOpen ? " It is open in the editor." : "") + "</span></p><p class='plan-meta'>" + esc(p.author || "—") + " · " +
      esc(when(p.created)) + (p.note ? " · " + esc(p.note) : "") + "</p>",
      [{ id: "delete", label: "删除 <span>Delete</span>", kind: "danger" }], {
        kind: "delete", focus: "#dlg-cancel",
        onSubmit: function (which, d) {
          dialogBusy(d, true);
          return api("DELETE", "/api/grids/plans/" + encodeURIComponent(community()) + "/" + v).then(function () {
            dialogBusy(d, false);
            if (P.openVersion === v) P.openVersion = null;
            message("已删除草稿第 " + v + " 版 <span>draft version " + v + " deleted</span>", "ok");
            load();
            return true;
          }, function (e) {
            dialogBusy(d, false);
            dialogMsg(d, (e.status === 409 ? "只能删除草稿 only drafts can be deleted: " : "删除失败 Delete failed: ") + errorText(e), "error");
            return false;
          });
        }
      });
  }

  // ---- activate --------------------------------------------------------------------------------
  function conflictText(c) {
    return "<b>方案冲突，未启用</b>：本草稿基于第 " + esc(c.parent_version == null ? "—" : c.parent_version) +
      " 版制作，之后第 " + esc(c.active_version) + " 版已由 " + esc(c.activated_by || "命令行") + " 于 " +
      esc(when(c.activated)) + " 启用" + (c.buildings_changed != null ? "，两版之间有 " + esc(c.buildings_changed) +
      " 栋楼栋的网格不同" : "") + "。草稿已保留。<br>可以：① 打开第 " + esc(c.active_version) + " 版，在其上重新修改；" +
      "② 对比两版后仍然启用本草稿（将覆盖当前启用方案）。<br><span>Conflict, not activated: this draft was made from " +
      "version " + esc(c.parent_version) + "; version " + esc(c.active_version) + " was activated since. Open the active " +
      "version and redo the edits, or compare and activate this draft anyway (it replaces the active plan).</span>";
  }

  function activateDialog(v) {
    var act0 = active();
    var c = community();
    var diffReq = act0 && act0.version !== v
      ? api("GET", "/api/grids/diff/" + encodeURIComponent(c) + "?a=" + act0.version + "&b=" + v)
      : Promise.resolve(null);
    setBusy(true);
    return diffReq.then(function (d) {
      setBusy(false);
      var body = "<p>启用后，第 " + v + " 版成为本社区的现行网格方案，网格编码按自西向东、自北向南重排，网格员随楼栋迁移；" +
        (act0 ? "现行第 " + act0.version + " 版将归档。" : "") + "<br><span>Version " + v + " becomes the community's plan; " +
        "codes are renumbered W→E, N→S and staff follow their buildings" + (act0 ? "; version " + act0.version +
        " is archived" : "") + ".</span></p>" +
        (d ? "<h4>与现行方案的差异 <span>Difference from the active version</span></h4>" + diffTable(d)
           : "<p class='muted'>暂无启用方案可对比 <span>no active version to compare with</span></p>");
      return dialog("启用第 " + v + " 版？ <span>Activate version " + v + "?</span>", body,
        [{ id: "activate", label: "确认启用 <span>Activate</span>", kind: "primary" }], {
          kind: "activate",
          onSubmit: function (which, dlg) { return doActivate(v, dlg, which); }
        });
    }, function (e) {
      setBusy(false);
      message("无法读取差异 Could not read the difference: " + errorText(e), "error");
      return null;
    });
  }

  function doActivate(v, d, which) {
    var opts = { force: which === "force" || d.dataset.force === "1", rebase: which === "rebase" || d.dataset.rebase === "1" };
    dialogBusy(d, true);
    dialogMsg(d, "正在启用… <span>Activating…</span>");
    return api("POST", "/api/grids/plans/" + encodeURIComponent(community()) + "/" + v + "/activate", opts).then(function (out) {
      dialogBusy(d, false);
      message("✓ 已启用第 " + v + " 版" + (out.previous ? "，第 " + out.previous + " 版已归档" : "") + " <span>version " + v +
        " is active" + (out.previous ? ", version " + out.previous + " archived" : "") + "</span>", "ok");
      panel.dataset.activated = String(v);
      document.dispatchEvent(new CustomEvent("gridplans:activated", { detail: { version: v, previous: out.previous } }));
      load();
      return true;
    }, function (e) {
      dialogBusy(d, false);
      if (e.status !== 409) { dialogMsg(d, "启用失败 Activation failed: " + errorText(e), "error"); return false; }
      var c = e.body && e.body.conflict;
      var next = document.createElement("button");
      next.type = "submit";
      if (c) {
        d.dataset.rebase = "1";
        dialogMsg(d, conflictText(c), "error conflict");
        next.value = "rebase"; next.className = "danger"; next.id = "dlg-rebase";
        next.innerHTML = "仍然启用，覆盖当前方案 <span>Activate anyway</span>";
      } else {
        var already = /已是启用方案|already active/.test(e.message || "");
        dialogMsg(d, already ? "第 " + v + " 版已是启用方案 <span>already active</span>" : "<b>未启用：方案有规则问题</b>。" +
          "可先“修复”，或确认后带着问题启用。<br><span>Not activated: the plan breaks rules. Repair it first, or " +
          "activate it with the breaks.</span><details><summary>详情 <span>Details</span></summary>" + errorText(e) +
          "</details>", "error");
        if (already) { load(); return false; }
        d.dataset.force = "1";
        next.value = "force"; next.className = "danger"; next.id = "dlg-force";
        next.innerHTML = "仍然启用（含规则问题） <span>Activate with the breaks</span>";
      }
      var ok = d.querySelector("#dlg-activate");
      if (ok) ok.replaceWith(next); else d.querySelector(".dlg-buttons").insertBefore(next, d.querySelector("#dlg-cancel"));
      next.focus();
      return false;
    });
  }

  // ---- start -----------------------------------------------------------------------------------
  function start() {
    skeleton();
    panel.dataset.state = "loading";
    var me = window.gisgov ? api("GET", "/api/auth/me").catch(function () { return null; }) : Promise.resolve(null);
    me.then(function (m) { P.me = m; return load(); });
    document.addEventListener("grideditor:saved", function (e) {
      if (e.detail && e.detail.version != null) P.openVersion = Number(e.detail.version);
      load();
    });
    var lastOpen = null;
    document.addEventListener("grideditor:change", function () {
      var v = openVersion();
      if (v !== lastOpen) { lastOpen = v; if (P.plans.length) render(); }
    });
  }

  window.gridPlans = { reload: load, open: openPlan, compare: compare, state: function () { return P; } };
  start();
})(window, document);

// Audit log page 审计日志: filters -> GET /api/audit (admin only; each read is itself audited),
// rows rendered with textContent only (nothing from the log is parsed as HTML), paging by offset.
// Requests (401 -> /login), the user badge and sign-out come from the shared /static/common/gisgov.js.
// That script is included after this one, so everything here starts on DOMContentLoaded, when both have run.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  var rowsEl = document.getElementById("audit-rows");
  var statusEl = document.getElementById("status");
  var prevBtn = document.getElementById("prev");
  var nextBtn = document.getElementById("next");
  var pageInfo = document.getElementById("page-info");
  var state = { offset: 0, next: null, limit: 50 };
  var FIELDS = ["since", "until", "actor", "action", "result", "limit"];

  function status(msg, isError) {
    statusEl.textContent = msg || "";
    statusEl.className = "status" + (isError ? " error" : "");
  }

  function toLocalInput(iso) {
    // "2024-05-01T08:30:00+08:00" -> value for <input type=datetime-local> in the browser's zone
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function fromUrl() {
    var q = new URLSearchParams(window.location.search);
    FIELDS.forEach(function (f) {
      var v = q.get(f);
      if (v === null) { return; }
      form.elements[f].value = (f === "since" || f === "until") ? toLocalInput(v) : v;
    });
    state.offset = Math.max(0, parseInt(q.get("offset") || "0", 10) || 0);
  }

  function params() {
    var q = new URLSearchParams();
    FIELDS.forEach(function (f) {
      var v = (form.elements[f].value || "").trim();
      if (!v) { return; }
      if (f === "since" || f === "until") {
        var d = new Date(v); // datetime-local is the browser's local time
        if (isNaN(d.getTime())) { return; }
        v = d.toISOString();
      }
      q.set(f, v);
    });
    state.limit = parseInt(form.elements.limit.value, 10) || 50;
    if (state.offset) { q.set("offset", String(state.offset)); }
    return q;
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text === null || text === undefined ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    return d.toLocaleString("zh-CN", { hour12: false });
  }

  function render(data) {
    rowsEl.textContent = "";
    data.items.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, fmtTime(r.at), "time").title = r.at;
      cell(tr, r.actor || "—");
      cell(tr, r.actor_role || "");
      cell(tr, r.action_label || r.action).title = r.action;
      cell(tr, r.object || "");
      var res = cell(tr, "");
      var badge = document.createElement("span");
      badge.className = "result " + r.result;
      badge.textContent = r.result;
      res.appendChild(badge);
      cell(tr, r.client_addr || "");
      cell(tr, r.detail ? JSON.stringify(r.detail) : "", "detail");
      rowsEl.appendChild(tr);
    });
    state.next = data.next_offset;
    prevBtn.disabled = state.offset <= 0;
    nextBtn.disabled = data.next_offset === null || data.next_offset === undefined;
    var first = data.items.length ? state.offset + 1 : 0;
    pageInfo.textContent = "第 " + first + "–" + (state.offset + data.items.length) + " 条 rows";
    status(data.items.length ? "" : "没有符合条件的记录 no matching rows", false);
  }

  function load() {
    var q = params();
    history.replaceState(null, "", "/admin/audit" + (q.toString() ? "?" + q.toString() : ""));
    status("加载中 loading…", false);
    window.gisgov.api("/api/audit?" + q.toString())
      .then(render)
      .catch(function (e) {
        if (e.status === 401) { return; } // on its way to /login?next=<this page and its filters>
        status("查询失败 query failed: " + e.message, true);
      });
  }

  function start() {
    form.addEventListener("submit", function (ev) { ev.preventDefault(); state.offset = 0; load(); });
    form.addEventListener("reset", function () { window.setTimeout(function () { state.offset = 0; load(); }, 0); });
    prevBtn.addEventListener("click", function () { state.offset = Math.max(0, state.offset - state.limit); load(); });
    nextBtn.addEventListener("click", function () { if (state.next !== null) { state.offset = state.next; load(); } });
    window.gisgov.bindSignOut("logout");
    window.gisgov.whoami("who");

    fromUrl();
    load();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();

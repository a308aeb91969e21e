/* 网格治理 governance page: staff 一格三员, compound rules, special-group services. Everything it shows comes
 * from the APIs as they answer for the signed-in account (names and masked phones only when the API gives
 * them; suppressed cells as given); controls the account cannot use are hidden, and the API refuses them
 * anyway (403 / 404). No inline scripts, nothing loaded from elsewhere. */
(function (window, document) {
  "use strict";

  var g = window.gisgov;
  var $ = function (id) { return document.getElementById(id); };
  var state = { me: null, canEdit: false, canPersonal: false, grids: [], roles: [], compound: null, loaded: {}, groupNames: {} };

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else if (k.slice(0, 5) === "data-") e.setAttribute(k, attrs[k]);
      else e[k] = attrs[k];
    });
    (kids || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }

  function show(box, text, error) {
    box = typeof box === "string" ? $(box) : box;
    box.textContent = text;
    box.className = "msg" + (error ? " error" : "");
    box.hidden = !text;
  }

  function pct(x) { return x === null || x === undefined ? "—" : (Math.round(x * 1000) / 10) + "%"; }

  // ---------------------------------------------------------------- tabs
  function selectTab(name) {
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.dataset.tab === name));
    });
    ["staff", "compounds", "special"].forEach(function (t) { $("pane-" + t).hidden = t !== name; });
    if (window.location.hash !== "#" + name) window.history.replaceState(null, "", "#" + name);
    if (!state.loaded[name]) { state.loaded[name] = true; return loaders[name](); }
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- staff 网格员
  var GAP_TEXT = { no_leader: "缺网格长 No grid leader", no_full_time: "缺专职网格员 No full-time worker" };

  function loadStaff() {
    return g.api("/api/staff").then(renderStaff).catch(function (e) { show("staff-msg", "读取失败 Could not load staff: " + e.message, true); });
  }

  function renderStaff(d) {
    state.grids = d.grids;
    var s = d.summary;
    var sum = $("staff-summary");
    sum.textContent = "";
    [["网格 Grids", s.grids], ["人员 Staff", s.staff], ["达标网格 Grids OK", s.grids_ok],
      ["缺网格长 No leader", s.no_leader.length], ["缺专职 No full-time", s.no_full_time.length],
      ["超负荷 Over ceiling (" + s.ceiling + " 户/人)", s.caseload_over.length]].forEach(function (x) {
      sum.appendChild(el("div", { cls: "stat" }, [el("b", { text: String(x[1]) }), x[0]]));
    });
    var roles = {};
    d.grids.forEach(function (gr) { Object.keys(gr.roles).forEach(function (r) { roles[r] = true; }); });
    state.roles = Object.keys(roles);
    fillStaffForm();
    var list = $("grid-list");
    list.textContent = "";
    d.grids.forEach(function (gr) { list.appendChild(gridCard(gr, d.names_shown)); });
    if (!d.grids.length) list.appendChild(el("p", { cls: "muted", text: "范围内没有网格 No grids in your area" }));
  }

  function gridCard(gr, names) {
    var badges = el("div", { cls: "chips badges" });
    gr.gaps.forEach(function (gap) { badges.appendChild(el("span", { cls: "badge", "data-gap": gap, text: GAP_TEXT[gap] || gap })); });
    if (gr.caseload_over) badges.appendChild(el("span", { cls: "badge", "data-gap": "caseload_over", text: "超负荷 Caseload over" }));
    if (!gr.gaps.length && !gr.caseload_over) badges.appendChild(el("span", { cls: "badge ok", text: "达标 OK" }));
    var chips = el("div", { cls: "chips" });
    Object.keys(gr.roles).forEach(function (r) {
      chips.appendChild(el("span", { cls: "chip" + (gr.roles[r] ? "" : " zero"), "data-role": r, text: r + " " + gr.roles[r] }));
    });
    var card = el("div", { cls: "card grid-card", "data-code": gr.code }, [
      el("div", { cls: "head" }, [el("b", { text: gr.name || ("网格 " + gr.code.slice(-3)) }), el("span", { cls: "code", text: gr.code })]),
      badges, chips,
      el("div", { cls: "muted", text: "户数 Households " + gr.households + " · 专职 Full-time " + gr.full_time +
        " · 每人户数 Caseload " + (gr.caseload === null || gr.caseload === undefined ? "—" : gr.caseload) })
    ]);
    if (names && gr.people) {
      var tb = el("tbody");
      gr.people.forEach(function (p) {
        var tools = el("td");
        if (state.canEdit) {
          var ed = el("button", { type: "button", cls: "small edit", text: "编辑 Edit" });
          ed.addEventListener("click", function () { editStaff(gr.code, p); });
          var rm = el("button", { type: "button", cls: "small danger remove", text: "移除 Remove" });
          rm.addEventListener("click", function () { removeStaff(rm, p); });
          tools.appendChild(ed); tools.appendChild(document.createTextNode(" ")); tools.appendChild(rm);
        }
        tb.appendChild(el("tr", { "data-id": String(p.id) }, [el("td", { text: p.role }), el("td", { text: p.name }),
          el("td", { text: p.phone_masked || "—" }), tools]));
      });
      if (!gr.people.length) tb.appendChild(el("tr", {}, [el("td", { colSpan: 4, cls: "muted", text: "暂无人员 Nobody yet" })]));
      card.appendChild(el("table", { cls: "tbl staff-tbl" }, [
        el("thead", {}, [el("tr", {}, [el("th", { text: "角色 Role" }), el("th", { text: "姓名 Name" }), el("th", { text: "手机 Phone" }), el("th")])]), tb]));
    } else {
      card.appendChild(el("p", { cls: "muted", text: "人员名单仅对有个人信息权限的角色显示 Names are shown to roles that may read personal data" }));
    }
    return card;
  }

  function fillStaffForm() {
    var gs = $("sf-grid"), rs = $("sf-role");
    var keepG = gs.value, keepR = rs.value;
    gs.textContent = ""; rs.textContent = "";
    state.grids.forEach(function (gr) { gs.appendChild(el("option", { value: gr.code, text: (gr.name || "网格") + " " + gr.code })); });
    state.roles.forEach(function (r) { rs.appendChild(el("option", { value: r, text: r })); });
    if (keepG) gs.value = keepG;
    if (keepR) rs.value = keepR;
  }

  function resetStaffForm() {
    $("sf-id").value = ""; $("sf-name").value = ""; $("sf-phone").value = ""; $("sf-clear").checked = false;
    $("sf-clear-wrap").hidden = true; $("sf-cancel").hidden = true;
    $("staff-form-title").innerHTML = "配备网格员 <span>Assign a staff member</span>";
  }

  function editStaff(grid, p) {
    $("sf-id").value = p.id; $("sf-grid").value = grid; $("sf-role").value = p.role; $("sf-name").value = p.name;
    $("sf-phone").value = ""; $("sf-clear").checked = false; $("sf-clear-wrap").hidden = !p.phone_masked;
    $("sf-cancel").hidden = false;
    $("staff-form-title").textContent = "修改网格员 Edit staff member · " + p.name;
    $("staff-form").scrollIntoView({ block: "nearest" });
    $("sf-name").focus();
  }

  function submitStaff(ev) {
    ev.preventDefault();
    var id = $("sf-id").value, phone = $("sf-phone").value.trim();
    var body = { grid: $("sf-grid").value, role: $("sf-role").value, name: $("sf-name").value.trim() };
    if (!body.name) { show("staff-msg", "请填写姓名 Enter a name", true); return; }
    var req;
    if (id) {
      if (phone) body.phone = phone; else if ($("sf-clear").checked) body.phone = "";
      req = g.api("/api/staff/" + encodeURIComponent(id), { method: "PATCH", body: body });
    } else {
      if (phone) body.phone = phone;
      req = g.api("/api/staff", { method: "POST", body: body });
    }
    $("sf-submit").disabled = true;
    req.then(function (row) {
      show("staff-msg", (id ? "已修改 Saved: " : "已配备 Assigned: ") + row.role + " " + row.name + " → " + row.grid_code);
      document.body.dataset.lastStaff = String(row.id);
      resetStaffForm();
      return loadStaff();
    }).catch(function (e) {
      show("staff-msg", (e.status === 403 ? "无权限 Not allowed: " : "保存失败 Not saved: ") + e.message, true);
    }).then(function () { $("sf-submit").disabled = false; });
  }

  function removeStaff(btn, p) {
    if (btn.dataset.armed !== "1") {  // two clicks: no modal dialog (works the same on a phone)
      btn.dataset.armed = "1";
      btn.textContent = "确认移除 Confirm";
      return;
    }
    btn.disabled = true;
    g.api("/api/staff/" + p.id, { method: "DELETE" }).then(function () {
      show("staff-msg", "已移除 Removed: " + p.role + " " + p.name);
      return loadStaff();
    }).catch(function (e) { btn.disabled = false; show("staff-msg", "移除失败 Not removed: " + e.message, true); });
  }

  // XLSX import: multipart, so not through gisgov.api (which sends JSON)
  function upload(dry) {
    var f = $("imp-file").files[0];
    if (!f) { show("imp-result", "请选择文件 Choose a file first", true); return Promise.resolve(); }
    var fd = new window.FormData();
    fd.append("file", f, f.name);
    fd.append("mode", $("imp-mode").value);
    fd.append("dry_run", dry ? "true" : "false");
    $("imp-check").disabled = true; $("imp-run").disabled = true;
    return window.fetch("/api/staff/import", {
      method: "POST", credentials: "same-origin", body: fd,
      headers: { Accept: "application/json", "X-CSRF-Token": g.csrf() }
    }).then(function (r) {
      if (r.status === 401) { g.signIn(); throw new Error("请先登录 sign in first"); }
      return r.json().catch(function () { return {}; }).then(function (body) { return { status: r.status, ok: r.ok, body: body }; });
    }).then(function (res) {
      var tb = $("imp-errors").querySelector("tbody");
      tb.textContent = "";
      $("imp-errors").hidden = true;
      var b = res.body;
      if (res.ok) {
        var gaps = b.gaps_after && b.gaps_after.length ? "；导入后仍有缺口 gaps after: " + b.gaps_after.join(", ") : "；导入后无缺口 no gaps after";
        if (dry) {
          show("imp-result", "预检通过 Dry run OK: " + b.rows + " 行 rows, " + b.grids + " 个网格 grids, 将删除 would remove " +
            b.removed + gaps + "。确认无误后点“导入” Press Import to write.");
          $("imp-run").disabled = false;
        } else {
          show("imp-result", "已导入 Imported: " + b.written + " 行 rows, " + b.grids + " 个网格 grids, 删除 removed " + b.removed + gaps);
          $("imp-file").value = "";
          loadStaff();
        }
        document.body.dataset.importResult = dry ? "dry-ok" : "imported";
        return;
      }
      show("imp-result", (res.status === 403 ? "无权限 Not allowed: " : "") + (b.detail || ("HTTP " + res.status)), true);
      (b.rows || []).forEach(function (x) {
        tb.appendChild(el("tr", { "data-row": String(x.row) }, [el("td", { text: String(x.row) }), el("td", { text: x.column }),
          el("td", { text: x.message || x.rule })]));
      });
      $("imp-errors").hidden = !(b.rows && b.rows.length);
      document.body.dataset.importResult = "rejected";
    }).catch(function (e) { show("imp-result", "上传失败 Upload failed: " + e.message, true); })
      .then(function () { $("imp-check").disabled = false; });
  }

  // ---------------------------------------------------------------- compounds 小区
  function loadCompounds() {
    return g.api("/api/compounds/check").then(renderCheck).catch(function (e) { show("cmp-msg", "读取失败 Could not load: " + e.message, true); });
  }

  function renderCheck(d) {
    var r = d.rules;
    $("cmp-rules").textContent = "规则 Rules: " + r.rules.filter(function (x) { return x.enabled; }).map(function (x) { return x.label; }).join("；") +
      "（大型小区 large ≥ " + r.large_households + " 户 households；老旧 old: 建成于 built before " + r.old_before_year + "）";
    var list = $("community-list");
    list.textContent = "";
    d.communities.forEach(function (c) {
      var modes = el("div", { cls: "chips" });
      Object.keys(c.property_modes).forEach(function (m) {
        modes.appendChild(el("span", { cls: "chip", text: m + " " + c.property_modes[m].n + "（" + pct(c.property_modes[m].share) + "）" }));
      });
      var br = el("div", { cls: "chips" });
      Object.keys(c.breaches || {}).forEach(function (rc) {
        var label = (r.rules.filter(function (x) { return x.code === rc; })[0] || {}).label || rc;
        br.appendChild(el("span", { cls: c.breaches[rc] ? "badge" : "badge ok", text: label + " " + c.breaches[rc] }));
      });
      list.appendChild(el("div", { cls: "card", "data-code": c.code }, [
        el("div", { cls: "head" }, [el("b", { text: c.name || c.code }), " ", el("span", { cls: "muted", text: c.code })]),
        el("div", { text: "小区 Compounds " + c.compounds + " · 户数 Households " + c.households + " · 老旧小区率 Old-compound ratio " +
          pct(c.old_ratio) + "（" + c.old + "/" + c.known_year + (c.unknown_year ? "，年份不详 year unknown " + c.unknown_year : "") + "）" }),
        el("div", { cls: "muted", text: "物业模式 Property modes" }), modes,
        el("div", { cls: "muted", text: "违规 Breaches" }), br
      ]));
    });
    var tb = $("breach-table").querySelector("tbody");
    tb.textContent = "";
    d.breaches.forEach(function (b) {
      var td = el("td");
      var open = el("button", { type: "button", cls: "small", text: state.canEdit ? "编辑 Edit" : "查看 View" });
      open.addEventListener("click", function () { openCompound(b.code); });
      td.appendChild(open);
      tb.appendChild(el("tr", { "data-code": b.code, "data-rules": b.rules.join(" ") }, [
        el("td", {}, [el("b", { text: b.name || "" }), el("br"), el("span", { cls: "muted", text: b.code })]),
        el("td", { cls: "num", text: String(b.households) }), el("td", { text: b.year_built ? String(b.year_built) : "—" }),
        el("td", { text: b.labels.join("；") }), td]));
    });
    $("breach-table").hidden = !d.breaches.length;
    $("no-breach").hidden = !!d.breaches.length;
  }

  function fillCompound(c) {
    state.compound = c;
    $("cf-title").textContent = (c.name || "") + " " + c.code;
    $("cf-version").textContent = String(c.version);
    $("cf-party").checked = !!c.has_party_org;
    $("cf-point").checked = !!c.has_service_point;
    $("cf-mode").value = c.property_mode || "";
    $("cf-year").value = c.year_built || "";
    var b = $("cf-breaches");
    b.textContent = "";
    (c.breach_labels || []).forEach(function (l) { b.appendChild(el("span", { cls: "badge", text: l })); b.appendChild(document.createTextNode(" ")); });
    if (!(c.breach_labels || []).length) b.appendChild(el("span", { cls: "badge ok", text: "符合规则 No breach" }));
    b.appendChild(el("span", { cls: "muted", text: " 户数 households " + c.households }));
    ["cf-party", "cf-point", "cf-mode", "cf-year"].forEach(function (id) { $(id).disabled = !state.canEdit; });
    $("cf-save").hidden = !state.canEdit;
    $("cmp-form").hidden = false;
    $("cmp-form").dataset.code = c.code;
  }

  function openCompound(code) {
    show("cf-msg", "");
    return g.api("/api/compounds/" + encodeURIComponent(code)).then(function (c) {
      fillCompound(c);
      $("cmp-form").scrollIntoView({ block: "nearest" });
    }).catch(function (e) { show("cmp-msg", (e.status === 404 ? "未找到或不在您的范围内 Not found in your area: " : "") + e.message, true); });
  }

  function saveCompound(ev) {
    ev.preventDefault();
    var c = state.compound;
    if (!c) return;
    var body = { version: c.version };
    if ($("cf-party").checked !== !!c.has_party_org) body.has_party_org = $("cf-party").checked;
    if ($("cf-point").checked !== !!c.has_service_point) body.has_service_point = $("cf-point").checked;
    if ($("cf-mode").value !== (c.property_mode || "")) body.property_mode = $("cf-mode").value;
    var y = $("cf-year").value ? parseInt($("cf-year").value, 10) : null;
    if (y !== null && y !== c.year_built) body.year_built = y;
    if (Object.keys(body).length === 1) { show("cf-msg", "没有修改 Nothing changed"); return; }
    $("cf-save").disabled = true;
    g.api("/api/compounds/" + encodeURIComponent(c.code), { method: "PATCH", body: body }).then(function (out) {
      fillCompound(out);
      show("cf-msg", "已保存 Saved (版本 version " + out.version + ")：" + (out.changed || []).join(", "));
      document.body.dataset.compoundVersion = String(out.version);
      return loadCompounds();
    }).catch(function (e) {
      if (e.status === 409) {
        show("cf-msg", "保存未成功：该小区已被他人修改（您看到的是旧版本 " + c.version + "）。已重新载入最新数据，请核对后再保存。 " +
          "Not saved: someone else changed this compound since you opened it (stale version); the latest data is reloaded — check it and save again.", true);
        return g.api("/api/compounds/" + encodeURIComponent(c.code)).then(function (fresh) {
          var keep = $("cf-msg").textContent;
          fillCompound(fresh);
          show("cf-msg", keep, true);
          loadCompounds();
        });
      }
      show("cf-msg", (e.status === 403 ? "无权限 Not allowed: " : "保存失败 Not saved: ") + e.message, true);
    }).then(function () { $("cf-save").disabled = false; });
  }

  // ---------------------------------------------------------------- special groups 特殊人群
  function loadSpecial() {
    var p = g.api("/api/special/summary").then(renderSummary)
      .catch(function (e) { show("sp-msg", "读取失败 Could not load the summary: " + e.message, true); });
    if (!state.canPersonal) return p;
    $("sp-personal").hidden = false;
    return p.then(function () { return Promise.all([loadOverdue(), loadBeyond()]); });  // lists use the summary's group names
  }

  function cell(v) {
    if (v === null || v === undefined) return el("td", { cls: "num muted", text: "—" });
    return el("td", { cls: "num" + (typeof v === "string" ? " sup" : ""), text: String(v) });
  }

  function renderSummary(d) {
    var note = "服务圈 Circle " + d.circle + "（" + Math.round(d.budget_m) + " m, " + d.profile + "）";
    if (d.suppression) note += "。" + d.suppression.note;
    $("sp-note").textContent = note;
    var t = $("sp-summary");
    t.querySelector("thead").innerHTML = "";
    var th = function (zh, en, cls) { return el("th", { cls: cls || "" }, [zh, el("br"), el("span", { text: en })]); };
    t.querySelector("thead").appendChild(el("tr", {}, [th("单元", "Unit"), th("人群", "Group"),
      th("人数", "Members", "num"), th("圈外", "Beyond", "num"), th("走访超期", "Overdue", "num")]));
    var tb = t.querySelector("tbody");
    tb.textContent = "";
    d.units.forEach(function (u) {
      u.groups.forEach(function (x) { state.groupNames[x.group] = x.group_name; });
      var rows = u.groups.filter(function (x) { return x.members !== 0; });
      rows.forEach(function (x, i) {
        var tr = el("tr", { "data-code": u.code, "data-group": x.group });
        if (i === 0) tr.appendChild(el("td", { rowSpan: rows.length }, [el("b", { text: (u.level === "grid" ? "网格 " : "社区 ") + (u.name || "") }),
          el("br"), el("span", { cls: "muted", text: u.code })]));
        tr.appendChild(el("td", { text: x.group_name }));
        tr.appendChild(cell(x.members)); tr.appendChild(cell(x.beyond)); tr.appendChild(cell(x.overdue));
        tb.appendChild(tr);
      });
    });
    if (!tb.children.length) tb.appendChild(el("tr", {}, [el("td", { colSpan: 5, cls: "muted", text: "范围内无特殊人群 No special-group members in your area" })]));
  }

  function where(x) {
    return [x.grid_name, x.compound_name, x.building_name, x.door_no ? x.door_no + "室" : null].filter(Boolean).join(" · ");
  }

  function loadOverdue() {
    return g.api("/api/special/visits/overdue?limit=200").then(function (d) {
      var ul = $("overdue-list");
      ul.textContent = "";
      $("od-count").textContent = "共 " + d.total + " 人 total";
      d.items.forEach(function (x) {
        var btn = el("button", { type: "button", cls: "primary small visit", text: "记录走访 Record a visit" });
        btn.addEventListener("click", function () { recordVisit(btn, x); });
        var late = x.last_visit ? "超期 " + x.days_overdue + " 天 days overdue（上次 last " + x.last_visit.slice(0, 10) + "）"
          : "从未走访 never visited";
        ul.appendChild(el("li", { "data-resident": String(x.resident_id) }, [
          el("div", {}, [el("b", { text: x.name }), " ", el("span", { cls: "muted", text: x.groups.map(function (c) { return state.groupNames[c] || c; }).join("、") + " · 每 " + x.interval_days + " 天 every " + x.interval_days + " days" }),
            el("div", { cls: "late", text: late }), el("div", { cls: "meta", text: where(x) })]), btn]));
      });
      $("od-none").hidden = d.total > 0;
    }).catch(function (e) {
      if (e.status === 403) { $("sp-personal").hidden = true; return; }
      show("sp-msg", "走访名单读取失败 Could not load the overdue list: " + e.message, true);
    });
  }

  function loadBeyond() {
    return g.api("/api/special/beyond?limit=200").then(function (d) {
      var ul = $("beyond-list");
      ul.textContent = "";
      $("bd-count").textContent = "共 " + d.total + " 人 total（" + d.members + " 名成员 members）";
      d.items.forEach(function (x) {
        var dist = x.distance_m === null || x.distance_m === undefined || !isFinite(x.distance_m) ? "超出计算范围 beyond the cap"
          : Math.round(x.distance_m) + " m";
        ul.appendChild(el("li", { "data-resident": String(x.resident_id) }, [el("div", {}, [
          el("b", { text: x.name }), " ", el("span", { cls: "muted", text: x.need }),
          el("div", { text: "最近服务 Nearest: " + (x.nearest ? x.nearest.name : "—") + " · " + dist + " > " + Math.round(x.budget_m) + " m" }),
          el("div", { cls: "meta", text: where(x) })])]));
      });
      $("bd-none").hidden = d.total > 0;
    }).catch(function (e) {
      if (e.status === 403) return;
      show("sp-msg", "圈外名单读取失败 Could not load the beyond list: " + e.message, true);
    });
  }

  function recordVisit(btn, x) {
    btn.disabled = true;
    g.api("/api/special/visits", { method: "POST", body: { resident_id: x.resident_id } }).then(function (out) {
      show("sp-msg", "已记录走访 Visit recorded: " + x.name + "（事件 event #" + out.event_id + "）");
      document.body.dataset.lastVisit = String(out.event_id);
      return Promise.all([loadOverdue(), g.api("/api/special/summary").then(renderSummary)]);
    }).catch(function (e) { btn.disabled = false; show("sp-msg", "记录失败 Not recorded: " + e.message, true); });
  }

  var loaders = { staff: loadStaff, compounds: loadCompounds, special: loadSpecial };

  // ---------------------------------------------------------------- start
  function start() {
    g.bindSignOut("logout");
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.addEventListener("click", function () { selectTab(b.dataset.tab); });
    });
    $("staff-form").addEventListener("submit", submitStaff);
    $("sf-cancel").addEventListener("click", resetStaffForm);
    $("imp-check").addEventListener("click", function () { upload(true); });
    $("imp-run").addEventListener("click", function () { upload(false); });
    $("imp-file").addEventListener("change", function () { $("imp-run").disabled = true; show("imp-result", ""); $("imp-errors").hidden = true; });
    $("imp-mode").addEventListener("change", function () { $("imp-run").disabled = true; });
    $("cmp-form").addEventListener("submit", saveCompound);
    $("cf-close").addEventListener("click", function () { $("cmp-form").hidden = true; state.compound = null; });
    $("cmp-open").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var code = $("cmp-code").value.trim();
      if (!/^[0-9]{16}$/.test(code)) { show("cmp-msg", "小区编码应为 16 位数字 A compound code has 16 digits", true); return; }
      openCompound(code);
    });
    g.whoami("who").then(function (me) {
      if (!me) return;
      state.me = me;
      var perms = me.permissions || [];
      state.canEdit = perms.indexOf("import_data") >= 0;
      state.canPersonal = perms.indexOf("read_personal") >= 0 && perms.indexOf("read_special_groups") >= 0;
      $("staff-tools").hidden = !state.canEdit;
      var tab = (window.location.hash || "").slice(1);
      return selectTab(loaders[tab] ? tab : "staff").then(function () { document.body.dataset.ready = "1"; });
    });
  }

  window.governancePage = { state: state, reload: function () { state.loaded = {}; } };
  start();
})(window, document);

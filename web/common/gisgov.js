/* gisgov 公共脚本: what every signed-in page shares (dashboard, grid editor, audit log). Load it before the
 * page's own script; it defines window.gisgov and nothing else.
 *   gisgov.csrf()           the CSRF token (the gisgov_csrf cookie), "" when there is none
 *   gisgov.api(url, opts)   fetch with same-origin credentials, Accept JSON; opts.method (default GET),
 *                           opts.body (sent as JSON on non-GET, with X-CSRF-Token). Resolves to the parsed
 *                           JSON body; rejects with an Error carrying .status and the server's detail.
 *                           401 sends the browser to /login?next=<this page> (and still rejects).
 *   gisgov.whoami(el)       fills the user badge from GET /api/auth/me: .me-name = display name,
 *                           .me-role = role label (· scope); el.dataset.username/role; shows el.
 *   gisgov.signOut(button)  POST /api/auth/logout with the token; success (or already signed out, 401)
 *                           goes to /login; any other failure keeps the page, re-enables the button and
 *                           shows the error (the session may still be live, so never pretend otherwise).
 *   gisgov.bindSignOut(el)  el's clicks call signOut(el).
 * No inline scripts (CSP), no framework, nothing loaded from elsewhere. */
(function (window, document) {
  "use strict";

  var CSRF_COOKIE = "gisgov_csrf";

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].replace(/^\s+/, "");
      var eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq) === name) {
        try { return decodeURIComponent(part.slice(eq + 1)); } catch (e) { return part.slice(eq + 1); }
      }
    }
    return "";
  }

  function csrf() { return cookie(CSRF_COOKIE); }

  // where to come back to after signing in: this page with its query and hash (the dashboard keeps its
  // place in the hash); the sign-in page only follows same-site paths
  function signIn() {
    var l = window.location;
    l.assign("/login?next=" + encodeURIComponent(l.pathname + l.search + l.hash));
  }

  function detail(body, status) {
    var d = body && (body.detail || body.message);
    if (d && typeof d !== "string") d = JSON.stringify(d);
    return d || ("HTTP " + status);
  }

  function api(url, opts) {
    opts = opts || {};
    var method = (opts.method || "GET").toUpperCase();
    var headers = { Accept: "application/json" };
    var init = { method: method, credentials: "same-origin", headers: headers };
    if (method !== "GET" && method !== "HEAD") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = csrf();
      init.body = JSON.stringify(opts.body === undefined ? {} : opts.body);
    }
    return window.fetch(url, init).then(function (r) {
      if (r.status === 401) {
        signIn();
        var e401 = new Error("请先登录 sign in first");
        e401.status = 401;
        throw e401;
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) {
          var e = new Error(detail(body, r.status));
          e.status = r.status;
          e.body = body;
          throw e;
        }
        return body;
      });
    });
  }

  function element(el) { return typeof el === "string" ? document.getElementById(el) : el; }

  function whoami(el) {
    el = element(el);
    return api("/api/auth/me").then(function (me) {
      var name = el.querySelector(".me-name");
      var role = el.querySelector(".me-role");
      var who = me.display_name || me.username;
      var label = (me.role_label || me.role) + (me.scope ? " · " + me.scope : "");
      if (name) name.textContent = who;
      if (role) role.textContent = label;
      if (!name && !role) el.textContent = who + " · " + label;
      el.dataset.username = me.username;
      el.dataset.role = me.role;
      el.title = who + "（" + me.username + "）" + label;
      el.hidden = false;
      return me;
    }).catch(function () {
      el.hidden = true;  // a 401 is already on its way to /login; the page reports other failures itself
      return null;
    });
  }

  // one line at the top of the page for failures that belong to no panel (sign-out)
  function flash(msg) {
    var box = document.getElementById("gisgov-flash");
    if (!box) {
      box = document.createElement("div");
      box.id = "gisgov-flash";
      box.className = "gisgov-flash";
      box.setAttribute("role", "alert");
      document.body.appendChild(box);
      box.addEventListener("click", function () { box.hidden = true; });
    }
    box.textContent = msg;
    box.hidden = false;
  }

  function signOut(button) {
    button = element(button);
    if (button) button.disabled = true;
    return window.fetch("/api/auth/logout", {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: "{}"
    }).then(function (r) {
      // 401: the session had already ended, which is what the user asked for
      if (!r.ok && r.status !== 401) {
        return r.json().catch(function () { return {}; }).then(function (body) { throw new Error(detail(body, r.status)); });
      }
      window.location.assign("/login");
      return true;
    }).catch(function (err) {
      if (button) button.disabled = false;
      flash("退出失败，仍处于登录状态 Could not sign out, you are still signed in: " + err.message);
      return false;
    });
  }

  function bindSignOut(el) {
    el = element(el);
    el.addEventListener("click", function () { signOut(el); });
  }

  window.gisgov = { csrf: csrf, api: api, whoami: whoami, signOut: signOut, bindSignOut: bindSignOut, signIn: signIn };
})(window, document);

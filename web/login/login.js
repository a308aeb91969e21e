// Sign-in page: POST the credentials as JSON, then go to ?next= (same-site paths only) or the dashboard.
(function () {
  "use strict";
  var form = document.getElementById("login-form");
  var err = document.getElementById("login-error");
  var btn = document.getElementById("login-submit");

  function target() {
    var next = new URLSearchParams(window.location.search).get("next") || "/dashboard";
    // only a path of this site: "/x", never "//host" or "http://host"
    return /^\/(?!\/)/.test(next) && next.indexOf("\\") < 0 ? next : "/dashboard";
  }

  function show(msg) {
    err.textContent = msg;
    err.hidden = false;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    err.hidden = true;
    var body = { username: form.username.value.trim(), password: form.password.value };
    if (!body.username || !body.password) { show("请输入用户名和密码 Enter user name and password"); return; }
    btn.disabled = true;
    fetch("/api/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.ok) { window.location.assign(target()); return; }
      return r.json().catch(function () { return {}; }).then(function (j) {
        show(j.detail || ("登录失败 sign-in failed (" + r.status + ")"));
        form.password.value = "";
        form.password.focus();
      });
    }).catch(function () {
      show("无法连接服务器 cannot reach the server");
    }).finally(function () { btn.disabled = false; });
  });
})();

/* Yima console pages: small enhancements on server-rendered forms, and `yima.api` for pages
   that call the management API with the session cookie (same origin) and the session's CSRF
   token (from <meta name="csrf-token">) in the X-CSRF-Token header. No framework, no build. */
(function () {
  "use strict";
  var body = document.body;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  /* Resolves {status, data}; status 0 when the network failed. */
  function api(method, path, payload) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrf;
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(body.getAttribute("data-api") + path, init).then(function (response) {
      return response.json().then(
        function (data) { return { status: response.status, data: data }; },
        function () { return { status: response.status, data: {} }; }
      );
    }, function () { return { status: 0, data: {} }; });
  }
  window.yima = { api: api, csrf: csrf };

  // A form with data-confirm asks first (disabling a user, say).
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // The distributor field matters only for the distributor role.
  Array.prototype.forEach.call(document.querySelectorAll("select[data-distributor]"), function (select) {
    var field = document.getElementById(select.getAttribute("data-distributor"));
    if (!field) return;
    var sync = function () {
      var needed = select.value === "distributor";
      field.hidden = !needed;
      var wrapper = field.closest("div");
      if (wrapper && wrapper.parentNode && wrapper.parentNode.id === "new-user") wrapper.hidden = !needed;
    };
    select.addEventListener("change", sync);
    sync();
  });

  // The overview asks the API who it sees: the page and the API share the session.
  var me = document.getElementById("api-me");
  if (me) {
    api("GET", "/me").then(function (answer) {
      if (answer.status !== 200 || !answer.data.user) {
        me.textContent = me.getAttribute("data-failed");
        return;
      }
      me.textContent = "GET /me → " + answer.data.user.email + " · " + answer.data.tenant + " · " +
        answer.data.role + " · [" + answer.data.permissions.join(", ") + "]";
    });
  }
})();

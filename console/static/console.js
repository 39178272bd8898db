/* Yima console pages: small enhancements on server-rendered forms, and `window.yima`, what the
   dashboards (dashboards.js) and the management pages (manage.js) share: their page's settings
   and texts (JSON in the data-config of their root element: no inline script), and `api`, which
   calls the management API with the session cookie (same origin), the session's CSRF token (from
   <meta name="csrf-token">) in the X-CSRF-Token header, and the page's language in
   Accept-Language (the API's field errors come back in it). Loaded first (in <head>, deferred).
   No framework, no build. */
(function () {
  "use strict";
  var body = document.body;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var lang = body.getAttribute("data-lang") === "en" ? "en" : "zh";
  var base = body.getAttribute("data-api");

  /* Resolves {status, data}; status 0 when the network failed. */
  function api(method, path, payload) {
    var init = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Accept-Language": lang === "en" ? "en" : "zh-CN" },
    };
    if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrf;
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(base + path, init).then(function (response) {
      return response.json().then(
        function (data) { return { status: response.status, data: data }; },
        function () { return { status: response.status, data: {} }; }
      );
    }, function () { return { status: 0, data: {} }; });
  }

  /* "{n} items" filled from {n: 3}; unknown names are left as they are. */
  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (m, key) { return key in values ? values[key] : m; });
  }

  /* The settings a page's script was handed in #<rootId>[data-config] (null off that page). */
  function page(rootId) {
    var root = document.getElementById(rootId);
    if (!root) return null;
    var config = JSON.parse(root.getAttribute("data-config"));
    return { root: root, config: config, texts: config.texts, locale: config.lang === "en" ? "en-US" : "zh-CN" };
  }

  window.yima = { api: api, csrf: csrf, lang: lang, apiBase: base, fill: fill, page: page };

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

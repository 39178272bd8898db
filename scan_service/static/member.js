/* Yima member pages: fills the server-rendered shell from the consumer API (same origin; the
   yima_m cookie is the session). No framework, no build step. Strings come from the page
   (data-texts, in the page's language); times are shown in the brand's timezone (data-tz). */
(function () {
  "use strict";
  var root = document.getElementById("member");
  if (!root) return;
  var T = JSON.parse(root.getAttribute("data-texts") || "{}");
  var D = root.dataset;
  var lang = D.lang === "en" ? "en" : "zh";
  var locale = lang === "en" ? "en-GB" : "zh-CN";
  var tz = D.tz || "Asia/Shanghai";

  function $(id) { return document.getElementById(id); }

  function t(key, vars) {
    var text = T[key] || key;
    Object.keys(vars || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(vars[name]));
    });
    return text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function say(node, text, kind) {
    if (!node) return;
    node.textContent = text || "";
    node.className = "msg " + (kind || "info");
    node.hidden = !text;
  }

  function number(n) { return Number(n || 0).toLocaleString(locale); }

  // --- the API ------------------------------------------------------------------------------

  /* Resolves {status, data, retryAfter}; status 0 when the network failed. */
  function call(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(D.api + path, init).then(function (response) {
      var retry = parseInt(response.headers.get("Retry-After") || "", 10);
      var done = function (data) {
        return { status: response.status, data: data || {}, retryAfter: isNaN(retry) ? null : retry };
      };
      if (response.status === 204) return done({});
      return response.json().then(done, function () { return done({}); });
    }, function () {
      return { status: 0, data: {}, retryAfter: null };
    });
  }

  function signInUrl(extra) {
    var query = new URLSearchParams(extra || {});
    if (D.brand) query.set("brand", D.brand);
    return D.root + "/m/sign-in?" + query.toString();
  }

  function signInAgain() {
    location.href = signInUrl({ next: location.pathname.slice(D.root.length) + location.search });
  }

  /* The member's words for a problem+json answer. */
  function problem(res) {
    var data = res.data || {};
    var code = String(data.code || "");
    var fields = Object.keys(data.errors || {});
    if (res.status === 0 || res.status >= 500) return t("err_network");
    if (res.status === 429) {
      return t("err_wait", { n: res.retryAfter || data.retry_after || 60 });
    }
    if (res.status === 401) return t("err_signed_out");
    if (code === "otp_invalid") {
      // errors.code says why: "wrong code", or expired / used / too many attempts.
      return /wrong/.test(String((data.errors || {}).code)) ? t("err_code_wrong") : t("err_code_expired");
    }
    if (code === "shipping_required" || fields.some(function (f) { return f.indexOf("shipping") === 0; })) {
      return t("err_shipping");
    }
    if (fields.indexOf("phone") >= 0) return t("err_phone");
    if (fields.indexOf("brand") >= 0 || code === "brand_not_found") return t("err_brand");
    if (fields.indexOf("code") >= 0) return t("err_code_format");
    var known = {
      insufficient_points: "err_insufficient_points",
      sold_out: "err_sold_out",
      limit_reached: "err_limit_reached",
      tier_too_low: "err_tier",
      not_on_sale: "err_not_available",
      item_not_found: "err_not_available",
      already_checked_in: "already_checked_in",
      member_erased: "err_signed_out",
    };
    return known[code] ? t(known[code]) : t("err_generic");
  }

  // --- times, in the brand's timezone -------------------------------------------------------

  function parts(date) {
    var out = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(date).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }

  function day(iso, lastInstantBefore) {
    var date = new Date(iso);
    // An expiry is the first instant points are void: the last day they count is the day before.
    if (lastInstantBefore) date = new Date(date.getTime() - 1);
    var p = parts(date);
    return p.year + "-" + p.month + "-" + p.day;
  }

  function when(iso) {
    var p = parts(new Date(iso));
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }

  function today() { return day(new Date().toISOString()); }

  // --- idempotency keys ---------------------------------------------------------------------

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // --- sign-in ------------------------------------------------------------------------------

  function signInPage() {
    var phone = $("phone"), code = $("code"), send = $("send-code"), submit = $("sign-in");
    var message = $("sign-in-message");
    var timer = null;

    function countdown(seconds) {
      var left = Math.max(1, Math.ceil(seconds));
      clearInterval(timer);
      send.disabled = true;
      send.textContent = t("resend_in", { n: left });
      timer = setInterval(function () {
        left -= 1;
        if (left <= 0) {
          clearInterval(timer);
          send.disabled = false;
          send.textContent = t("send_code");
        } else {
          send.textContent = t("resend_in", { n: left });
        }
      }, 1000);
    }

    send.addEventListener("click", function () {
      if (!phone.value.trim()) { say(message, t("err_phone"), "error"); phone.focus(); return; }
      send.disabled = true;
      call("POST", "/members/otp", { brand: D.brand, phone: phone.value.trim() }).then(function (res) {
        if (res.status === 202 || res.status === 200) {
          var minutes = Math.max(1, Math.round((res.data.expires_in || 300) / 60));
          say(message, t("code_sent", { n: minutes }), "ok");
          countdown(res.data.resend_after || 60);
          code.focus();
          return;
        }
        say(message, problem(res), "error");
        if (res.status === 429) countdown(res.retryAfter || 60);
        else send.disabled = false;
      });
    });

    $("sign-in-form").addEventListener("submit", function (event) {
      event.preventDefault();
      if (!phone.value.trim()) { say(message, t("err_phone"), "error"); phone.focus(); return; }
      if (!code.value.trim()) { say(message, t("err_code_format"), "error"); code.focus(); return; }
      var body = { brand: D.brand, phone: phone.value.trim(), code: code.value.trim() };
      if (D.ref) body.referral_code = D.ref;
      if (D.channel) body.channel = D.channel;
      submit.disabled = true;
      submit.textContent = t("signing_in");
      call("POST", "/members/sign-in", body).then(function (res) {
        if (res.status === 200 || res.status === 201) {
          location.replace(D.root + (D.next || "/m/"));
          return;
        }
        submit.disabled = false;
        submit.textContent = t("sign_in");
        say(message, problem(res), "error");
      });
    });
  }

  // --- my account ---------------------------------------------------------------------------

  function showPoints(points) {
    $("points-active").textContent = number(points.active);
    var pending = $("points-pending");
    pending.hidden = !points.pending;
    pending.textContent = points.pending ? t("points_pending") + " " + number(points.pending) : "";
    var next = points.next_expiry;
    $("points-expiry").textContent = next
      ? t("expiry_line", { n: number(next.points), date: day(next.at, true) })
      : t("no_expiry");
  }

  function showTier(data) {
    var tier = data.tier;
    if (tier) $("tier-name").textContent = tier.name;
    var bar = $("tier-progress"), line = $("tier-next");
    var next = data.next;
    if (!next) { bar.hidden = true; line.textContent = tier ? t("tier_top") : ""; return; }
    var need = next.need || {}, progress = data.progress || {};
    var units = { growth: "growth_unit", spend: "spend_unit", scans: "scans_unit" };
    var key = ["growth", "spend", "scans"].filter(function (k) { return need[k]; })[0];
    if (!key) { bar.hidden = true; line.textContent = ""; return; }
    // ``need`` is what is still missing for the next tier; ``progress`` what the member has.
    var have = Math.max(0, Number(progress[key] || 0)), missing = Number(need[key]);
    bar.max = have + missing;
    bar.value = have;
    bar.hidden = false;
    line.textContent = t("tier_next", {
      name: next.name,
      need: number(missing) + " " + t(units[key]),
    });
  }

  function accountPage() {
    call("GET", "/me").then(function (res) {
      if (res.status === 401) return signInAgain();
      if (res.status !== 200) return say($("account-message"), problem(res), "error");
      var me = res.data;
      $("phone").textContent = me.phone || "";
      $("tier-name").textContent = me.tier ? me.tier.name : t("no_tier");
      showPoints(me.points || {});
    });
    call("GET", "/me/tier").then(function (res) {
      if (res.status === 200) showTier(res.data);
    });
    var month = today().slice(0, 7);
    call("GET", "/me/check-ins?month=" + month).then(function (res) {
      if (res.status !== 200) return;
      var days = res.data.days || [];
      var done = days.some(function (d) { return (d.day || d) === today(); });
      if (done) say($("check-in-message"), t("already_checked_in"), "info");
      if (res.data.streak) $("streak").textContent = t("streak", { n: res.data.streak });
    });
    call("GET", "/me/referral").then(function (res) {
      if (res.status !== 200) { $("referral").hidden = true; return; }
      var link = res.data.link;
      if (!link && res.data.code) {
        link = location.origin + D.root + "/m/invite/" + encodeURIComponent(res.data.code);
      }
      // Referral codes are unique per brand: the invitation names the brand.
      if (link && !/[?&]brand=/.test(link)) {
        link += (link.indexOf("?") < 0 ? "?" : "&") + "brand=" + encodeURIComponent(D.brand);
      }
      $("referral-link").value = link || "";
      $("referral-stats").textContent = t("referral_stats", {
        n: number(res.data.invited), points: number(res.data.points_earned),
      });
    });

    var checkIn = $("check-in-button");
    checkIn.addEventListener("click", function () {
      checkIn.disabled = true;
      call("POST", "/me/check-ins").then(function (res) {
        checkIn.disabled = false;
        if (res.status === 401) return signInAgain();
        if (res.status === 201 || res.status === 200) {
          var text = t("checked_in", { points: number(res.data.points) });
          if (res.data.bonus) text += t("checked_in_bonus", { bonus: number(res.data.bonus) });
          say($("check-in-message"), text, "ok");
          $("streak").textContent = t("streak", { n: res.data.streak });
          call("GET", "/me/points").then(function (p) { if (p.status === 200) showPoints(p.data); });
          return;
        }
        say($("check-in-message"), problem(res), res.status === 409 ? "info" : "error");
      });
    });

    $("copy-link").addEventListener("click", function () {
      var input = $("referral-link");
      var copied = function () { $("copy-message").textContent = t("copied"); };
      var fallback = function () {
        input.focus();
        input.select();
        try {
          if (document.execCommand("copy")) return copied();
        } catch (e) { /* fall through */ }
        $("copy-message").textContent = t("copy_failed");
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(copied, fallback);
      } else {
        fallback();
      }
    });

    $("sign-out").addEventListener("click", function () {
      call("POST", "/me/sign-out").then(function (res) {
        if (res.status === 204 || res.status === 200 || res.status === 401) {
          location.replace(signInUrl());
        } else {
          say($("account-message"), problem(res), "error");
        }
      });
    });

    $("erase").addEventListener("click", function () {
      $("erase-confirm").hidden = false;
      $("erase").hidden = true;
    });
    $("erase-cancel").addEventListener("click", function () {
      $("erase-confirm").hidden = true;
      $("erase").hidden = false;
    });
    $("erase-yes").addEventListener("click", function () {
      var button = $("erase-yes");
      button.disabled = true;
      call("DELETE", "/me").then(function (res) {
        if (res.status === 204 || res.status === 200) {
          location.replace(signInUrl({ erased: "1" }));
          return;
        }
        button.disabled = false;
        if (res.status === 401) return signInAgain();
        say($("account-message"), problem(res), "error");
      });
    });
  }

  // --- points history -----------------------------------------------------------------------

  function reasonText(reason) {
    reason = String(reason || "");
    var redeemed = /^redeemed (.+)$/.exec(reason);
    if (redeemed) return t("reason_redeem") + " · " + redeemed[1];
    if (/^order \d+ cancelled/.test(reason)) return t("reason_refund");
    var key = "reason_" + reason.toLowerCase().replace(/[^a-z]+/g, "_");
    return T[key] ? T[key] : reason;
  }

  function pointsPage() {
    var list = $("history"), more = $("history-more");
    var after = null;
    function load() {
      more.disabled = true;
      var path = "/me/points/history?limit=20" + (after ? "&after=" + encodeURIComponent(after) : "");
      call("GET", path).then(function (res) {
        more.disabled = false;
        if (res.status === 401) return signInAgain();
        if (res.status !== 200) return say($("history-message"), problem(res), "error");
        (res.data.items || []).forEach(function (item) {
          var li = el("li", "entry");
          li.setAttribute("data-kind", item.kind);
          var left = el("div");
          left.appendChild(el("div", null, [t("kind_" + item.kind), reasonText(item.reason)]
            .filter(Boolean).join(" · ")));
          var time = el("time", "muted", when(item.at));
          time.setAttribute("datetime", item.at);
          left.appendChild(time);
          li.appendChild(left);
          var sign = item.points > 0 ? "+" : "";
          li.appendChild(el("div", item.points > 0 ? "plus" : "minus", sign + number(item.points)));
          list.appendChild(li);
        });
        after = res.data.next_after || null;
        more.hidden = !after;
        $("history-empty").hidden = list.children.length > 0;
      });
    }
    more.addEventListener("click", load);
    load();
  }

  // --- catalogue ----------------------------------------------------------------------------

  function yuan(fen) { return (Number(fen) / 100).toFixed(fen % 100 ? 2 : 0); }

  function field(form, name, label, type, autocomplete) {
    var id = form.id + "-" + name;
    var lab = el("label", null, label);
    lab.setAttribute("for", id);
    var input = el("input");
    input.id = id;
    input.name = name;
    input.type = type;
    input.autocomplete = autocomplete;
    input.maxLength = name === "address" ? 200 : 40;
    form.appendChild(lab);
    form.appendChild(input);
    return input;
  }

  function cataloguePage() {
    var signedIn = D.signedIn === "1";
    var box = $("items"), message = $("catalogue-message");

    function refreshPoints() {
      if (!signedIn) return;
      call("GET", "/me/points").then(function (res) {
        if (res.status === 200) $("my-points").textContent = t("my_points", { n: number(res.data.active) });
      });
    }

    function render(item) {
      var card = el("section", "card item");
      card.id = "item-" + item.id;
      card.setAttribute("data-kind", item.kind);
      if (item.image_url && /^https:\/\//.test(item.image_url)) {
        var img = el("img");
        img.src = item.image_url;
        img.alt = item.name;
        img.loading = "lazy";
        card.appendChild(img);
      }
      card.appendChild(el("h2", null, lang === "en" && item.name_en ? item.name_en : item.name));
      if (item.description) card.appendChild(el("p", "muted", item.description));
      var facts = el("p");
      var cost = item.member_points_cost || item.points_cost;
      facts.appendChild(el("span", "cost", t("points_cost", { n: number(cost) })));
      if (cost !== item.points_cost) {
        facts.appendChild(document.createTextNode(" "));
        facts.appendChild(el("s", "muted", number(item.points_cost)));
      }
      var soldOut = item.stock === 0;
      var stock = soldOut ? t("sold_out_label")
        : item.stock === null || item.stock === undefined ? t("stock_unlimited")
        : t("stock", { n: number(item.stock) });
      facts.appendChild(document.createTextNode(" "));
      facts.appendChild(el("span", "badge stock", stock));
      if (item.face_value_fen) {
        facts.appendChild(document.createTextNode(" "));
        facts.appendChild(el("span", "badge", t("face_value", { amount: yuan(item.face_value_fen) })));
      }
      card.appendChild(facts);
      var note = el("p", "msg");
      note.hidden = true;
      note.setAttribute("role", "status");
      note.setAttribute("aria-live", "polite");

      if (!signedIn) {
        var link = el("a", "button secondary", t("sign_in_to_redeem"));
        link.href = D.signIn;
        card.appendChild(link);
        return card;
      }
      var why = item.available === false ? item.unavailable_reason || "not_on_sale" : null;
      var closed = { sold_out: "sold_out_label", tier_too_low: "err_tier", limit_reached: "err_limit_reached" };
      var open = el("button", "redeem", why ? t(closed[why] || "unavailable") : t("redeem"));
      open.type = "button";
      open.disabled = soldOut || !!why;
      card.appendChild(open);

      var form = el("form", "stack");
      form.id = "redeem-" + item.id;
      form.hidden = true;
      form.noValidate = true;
      var ship = null;
      if (item.kind === "goods") {
        ship = {
          name: field(form, "name", t("ship_name"), "text", "name"),
          phone: field(form, "phone", t("ship_phone"), "tel", "tel"),
          address: field(form, "address", t("ship_address"), "text", "street-address"),
        };
      }
      var row = el("div", "row");
      var cancel = el("button", "secondary", t("cancel"));
      cancel.type = "button";
      var confirm = el("button", "confirm", t("redeem_confirm"));
      confirm.type = "submit";
      row.appendChild(cancel);
      row.appendChild(confirm);
      form.appendChild(row);
      card.appendChild(form);
      card.appendChild(note);

      // One key per attempt: a double tap, or a retry after a lost answer, reuses it, so the
      // server places one order; a definite answer ends the attempt.
      var key = null;
      open.addEventListener("click", function () {
        key = key || newKey();
        form.hidden = false;
        open.hidden = true;
        note.hidden = true;
        if (ship) ship.name.focus();
      });
      cancel.addEventListener("click", function () {
        key = null;
        form.hidden = true;
        open.hidden = false;
      });
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        if (confirm.disabled) return;
        var body = { item_id: item.id, quantity: 1, idempotency_key: key || (key = newKey()) };
        if (ship) {
          body.shipping = {
            name: ship.name.value.trim(), phone: ship.phone.value.trim(), address: ship.address.value.trim(),
          };
          if (!body.shipping.name || !body.shipping.phone || !body.shipping.address) {
            say(note, t("err_shipping"), "error");
            return;
          }
        }
        confirm.disabled = true;
        confirm.textContent = t("redeeming");
        call("POST", "/me/orders", body).then(function (res) {
          confirm.disabled = false;
          confirm.textContent = t("redeem_confirm");
          if (res.status === 401) return signInAgain();
          if (res.status === 0 || res.status >= 500) {
            say(note, problem(res), "error"); // the same key is kept for the retry
            return;
          }
          key = null;
          if (res.status === 201 || res.status === 200) {
            form.hidden = true;
            open.hidden = false;
            say(note, t("redeemed") + " ", "ok");
            var orders = el("a", null, t("orders_title"));
            orders.href = D.root + "/m/orders";
            note.appendChild(orders);
            refreshPoints();
            reload();
            return;
          }
          say(note, problem(res), "error");
          if (res.status === 409 && (res.data.code === "sold_out" || res.data.code === "limit_reached")) {
            form.hidden = true;
            open.hidden = false;
            open.disabled = true;
          }
        });
      });
      return card;
    }

    function reload() {
      call("GET", "/catalogue?brand=" + encodeURIComponent(D.brand)).then(function (res) {
        if (res.status !== 200) return say(message, problem(res), "error");
        var items = res.data.items || [];
        items.forEach(function (item) {
          var old = $("item-" + item.id);
          if (!old) { box.appendChild(render(item)); return; }
          // A card already shown keeps its form and message: only its stock changes.
          old.querySelector(".stock").textContent = render(item).querySelector(".stock").textContent;
        });
        $("items-empty").hidden = items.length > 0;
      });
    }
    refreshPoints();
    reload();
  }

  // --- orders and coupons -------------------------------------------------------------------

  function couponState(c) {
    if (c.status) return c.status;
    if (c.used_at) return "used";
    if (c.valid_until && new Date(c.valid_until) <= new Date()) return "expired";
    return "unused";
  }

  function ordersPage() {
    call("GET", "/me/orders").then(function (res) {
      if (res.status === 401) return signInAgain();
      if (res.status !== 200) return say($("orders-message"), problem(res), "error");
      var list = $("orders");
      (res.data.items || []).forEach(function (o) {
        var li = el("li");
        li.id = "order-" + o.id;
        li.setAttribute("data-status", o.status);
        var top = el("div", "entry");
        var name = o.item_name || (o.item && o.item.name) || o.name || "#" + o.id;
        top.appendChild(el("strong", null, (o.quantity > 1 ? o.quantity + " × " : "") + name));
        top.appendChild(el("span", "badge " + o.status, T["order_" + o.status] || o.status));
        li.appendChild(top);
        var meta = [t("points_cost", { n: number(o.points) })];
        if (o.created_at) meta.push(when(o.created_at));
        li.appendChild(el("div", "muted", meta.join(" · ")));
        if (o.tracking) li.appendChild(el("div", "muted", t("tracking", { n: o.tracking })));
        list.appendChild(li);
      });
      $("orders-empty").hidden = list.children.length > 0;
    });
    call("GET", "/me/coupons").then(function (res) {
      if (res.status === 401) return signInAgain();
      if (res.status !== 200) return say($("orders-message"), problem(res), "error");
      var list = $("coupons");
      (res.data.items || []).forEach(function (c) {
        var state = couponState(c);
        var li = el("li");
        li.id = "coupon-" + c.code;
        li.setAttribute("data-status", state);
        var top = el("div", "entry");
        var title = c.item_name || c.name || t("face_value", { amount: yuan(c.face_value_fen) });
        top.appendChild(el("strong", null, title));
        top.appendChild(el("span", "badge " + state, t("coupon_" + state)));
        li.appendChild(top);
        var code = el("div");
        code.appendChild(el("span", "muted", t("coupon_code") + " "));
        code.appendChild(el("span", "code", c.code));
        li.appendChild(code);
        if (c.valid_until) {
          li.appendChild(el("div", "muted", c.valid_from
            ? t("valid_range", { from: day(c.valid_from), until: day(c.valid_until, true) })
            : t("valid_until", { date: day(c.valid_until, true) })));
        }
        list.appendChild(li);
      });
      $("coupons-empty").hidden = list.children.length > 0;
    });
  }

  var pages = {
    "sign-in": signInPage,
    account: accountPage,
    points: pointsPage,
    catalogue: cataloguePage,
    orders: ordersPage,
  };
  if (pages[D.page]) pages[D.page]();
})();

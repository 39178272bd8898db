/* Yima draws: the scan page's draw card, and the member pages "my prizes" and "claim a prize".

   The draw card only animates a result the server already decided and rendered into the page
   (data-won, and the words in #draw-result): a wheel spins for about 1.5 s and lands on a
   segment of that kind, then the words show. No spin for readers who prefer reduced motion,
   nor when this script came late (the page's CSS has shown the result by then).

   The member pages are filled from the consumer API (same origin; the yima_m cookie is the
   session), with the words the page hands over (data-texts) and times in the brand's zone. */
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // --- the scan page's draw card ------------------------------------------------------------

  var SEGMENTS = 8; // even segments are prizes, odd ones "thanks"
  var SPIN_MS = 1500;

  function drawCard(card) {
    var D = card.dataset;
    function finish() {
      card.classList.remove("pending");
      card.setAttribute("data-state", "done");
    }
    var reduce = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    var late = window.performance && performance.now() > 3000;
    if (reduce || late || !card.classList.contains("pending")) { finish(); return; }

    var stage = $("draw-stage");
    var wheel = el("div", "draw-wheel");
    var step = 360 / SEGMENTS;
    for (var i = 0; i < SEGMENTS; i++) {
      var label = el("span", null, i % 2 ? D.thanksLabel : D.prizeLabel);
      label.style.transform = "translate(-50%,-50%) rotate(" + (i * step + step / 2) + "deg) translateY(-4.2rem)";
      wheel.appendChild(label);
    }
    stage.appendChild(el("div", "draw-pointer"));
    stage.appendChild(wheel);
    stage.hidden = false;

    // The server decided: the wheel only comes to rest under the pointer on that kind.
    var segment = D.won === "1" ? 6 : 5;
    var angle = 4 * 360 + (360 - (segment * step + step / 2));
    card.setAttribute("data-segment", String(segment));
    card.setAttribute("data-state", "spinning");
    var landed = false;
    function land() {
      if (landed) return;
      landed = true;
      finish();
    }
    wheel.addEventListener("transitionend", land);
    setTimeout(land, SPIN_MS + 300); // in case no transition ran (a hidden tab)
    // Two frames: the wheel is laid out at 0° before it is told where to turn.
    requestAnimationFrame(function () {
      requestAnimationFrame(function () { wheel.style.transform = "rotate(" + angle + "deg)"; });
    });
  }

  var card = $("draw");
  if (card) drawCard(card);

  // --- member pages -------------------------------------------------------------------------

  var root = $("member");
  if (!root) return;
  var T = JSON.parse(root.getAttribute("data-texts") || "{}");
  var M = root.dataset;
  var tz = M.tz || "Asia/Shanghai";

  function t(key, vars) {
    var text = T[key] || key;
    Object.keys(vars || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(vars[name]));
    });
    return text;
  }

  function say(node, text, kind) {
    node.textContent = text || "";
    node.className = "msg " + (kind || "info");
    node.hidden = !text;
  }

  /* Resolves {status, data}; status 0 when the network failed. */
  function call(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(M.api + path, init).then(function (response) {
      return response.json().then(function (data) {
        return { status: response.status, data: data || {} };
      }, function () { return { status: response.status, data: {} }; });
    }, function () { return { status: 0, data: {} }; });
  }

  function signInAgain() {
    var query = new URLSearchParams({ next: location.pathname.slice(M.root.length) + location.search });
    if (M.brand) query.set("brand", M.brand);
    location.href = M.root + "/m/sign-in?" + query.toString();
  }

  function problem(res) {
    if (res.status === 0 || res.status >= 500) return t("err_network");
    if (res.status === 401) return t("err_signed_out");
    if (res.status === 404) return t("prize_not_found");
    if (res.data.code === "claim_state") return t("err_claim_state");
    return t("err_generic");
  }

  function when(iso) {
    var p = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(iso)).forEach(function (x) { p[x.type] = x.value; });
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }

  function yuan(fen) {
    fen = Number(fen || 0);
    return "¥" + Math.floor(fen / 100).toLocaleString("en") + "." + String(fen % 100).padStart(2, "0");
  }

  function prizeName(prize) {
    if (prize.kind === "cash" && prize.amount_fen) return t("prize_cash", { amount: yuan(prize.amount_fen) });
    if (prize.kind === "points" && prize.points) return t("prize_points", { n: prize.points });
    return prize.name;
  }

  /* Where a prize stands (the keys of scan_service/texts.py prize_state). */
  function state(item) {
    var kind = item.prize.kind, status = item.status;
    if (status === "held" || status === "cancelled" || status === "failed") return status;
    if (kind === "goods") {
      return { claim_wanted: "claim", claimed: "claimed", shipped: "shipped" }[status] || "claimed";
    }
    if (kind === "cash") return status === "done" ? "cash_sent" : "cash_sending";
    return "credited";
  }

  function claimUrl(item) { return M.root + "/m/prizes/" + item.reward_id + "/claim"; }

  function rulesUrl(item) {
    return M.root + "/campaigns/" + encodeURIComponent(item.campaign.brand) + "/" + item.campaign.id;
  }

  function prizeMeta(item) {
    var meta = [item.campaign.name, when(item.won_at)];
    if (item.outcome === "fallback") meta.push(t("prize_fallback"));
    return meta.join(" · ");
  }

  function prizesPage() {
    var list = $("prizes"), more = $("prizes-more");
    var after = null;
    function load() {
      more.disabled = true;
      var path = "/me/prizes?limit=20" + (after ? "&after=" + encodeURIComponent(after) : "");
      call("GET", path).then(function (res) {
        more.disabled = false;
        if (res.status === 401) return signInAgain();
        if (res.status !== 200) return say($("prizes-message"), problem(res), "error");
        (res.data.items || []).forEach(function (item) {
          var s = state(item);
          var li = el("li");
          li.id = "prize-" + item.reward_id;
          li.setAttribute("data-status", item.status);
          li.setAttribute("data-kind", item.prize.kind);
          var top = el("div", "entry");
          top.appendChild(el("strong", null, prizeName(item.prize)));
          top.appendChild(el("span", "badge " + s, t("prize_state_" + s)));
          li.appendChild(top);
          li.appendChild(el("div", "muted", prizeMeta(item)));
          if (item.tracking_no) li.appendChild(el("div", "muted", t("tracking", { n: item.tracking_no })));
          if (item.coupon_code) {
            var code = el("div");
            code.appendChild(el("span", "muted", t("coupon_code") + " "));
            code.appendChild(el("span", "code", item.coupon_code));
            li.appendChild(code);
          }
          var links = el("div", "muted");
          if (item.claim_needed) {
            var claim = el("a", "claim", t("claim_link"));
            claim.href = claimUrl(item);
            links.appendChild(claim);
            links.appendChild(document.createTextNode(" · "));
          }
          var rules = el("a", "rules", t("campaign_rules"));
          rules.href = rulesUrl(item);
          links.appendChild(rules);
          li.appendChild(links);
          list.appendChild(li);
        });
        after = res.data.next_after || null;
        more.hidden = !after;
        $("prizes-empty").hidden = list.children.length > 0;
      });
    }
    more.addEventListener("click", load);
    load();
  }

  var FIELDS = ["name", "phone", "address"];
  var FIELD_ERRORS = { name: "err_ship_name", phone: "err_phone", address: "err_ship_address" };

  function claimPage() {
    var form = $("claim-form"), submit = $("claim-submit"), message = $("claim-message");
    var path = "/me/prizes/" + encodeURIComponent(M.reward);

    function show(item) {
      var s = state(item);
      $("claim-prize-name").textContent = prizeName(item.prize);
      $("claim-prize-meta").textContent = prizeMeta(item);
      var badge = $("claim-prize-state");
      badge.textContent = t("prize_state_" + s);
      badge.className = "badge " + s;
      $("claim-prize").hidden = false;
      $("claim-prize").setAttribute("data-status", item.status);
    }

    function fieldError(name, text) {
      var node = $("claim-" + name + "-error");
      node.textContent = text || "";
      node.hidden = !text;
      $("claim-" + name).setAttribute("aria-invalid", text ? "true" : "false");
    }

    call("GET", path).then(function (res) {
      if (res.status === 401) return signInAgain();
      if (res.status !== 200) return say(message, problem(res), "error");
      show(res.data);
      if (res.data.claim_needed) {
        form.hidden = false;
        $("claim-name").focus();
      } else if (res.data.prize.kind !== "goods") {
        say(message, t("claim_not_needed"), "info");
      }
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (submit.disabled) return;
      var body = {}, missing = false;
      FIELDS.forEach(function (name) {
        body[name] = $("claim-" + name).value.trim();
        fieldError(name, body[name] ? "" : t(FIELD_ERRORS[name]));
        if (!body[name]) missing = true;
      });
      if (missing) return;
      submit.disabled = true;
      submit.textContent = t("claiming");
      say(message, "");
      call("POST", path + "/claim", body).then(function (res) {
        submit.disabled = false;
        submit.textContent = t("claim_submit");
        if (res.status === 401) return signInAgain();
        if (res.status === 200) {
          show(res.data);
          form.hidden = true;
          say(message, t("claim_done") + " ", "ok");
          var back = el("a", null, t("prizes_link"));
          back.href = M.root + "/m/prizes";
          message.appendChild(back);
          return;
        }
        var errors = (res.data && res.data.errors) || {};
        var named = FIELDS.filter(function (name) { return errors[name]; });
        if (res.status === 422 && named.length) {
          named.forEach(function (name) { fieldError(name, t(FIELD_ERRORS[name])); });
          $("claim-" + named[0]).focus();
          return;
        }
        say(message, problem(res), "error");
        if (res.status === 409) form.hidden = true;
      });
    });
  }

  var pages = { prizes: prizesPage, claim: claimPage };
  if (pages[M.page]) pages[M.page]();
})();

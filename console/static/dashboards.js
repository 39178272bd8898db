/* Yima console dashboards: reads /api/v1/dashboards/<page> with the session cookie (the same
   filters as the page's URL) and draws the figures with ECharts (vendor/echarts-*.min.js).
   Actions post to the management API through console.js's `yima.api`. The page
   hands over its settings and texts as JSON in #dashboard[data-config]: no inline script. */
(function () {
  "use strict";
  const yima = window.yima; // console.js: the page's settings, fill, the API with CSRF
  const page = yima.page("dashboard");
  if (!page) return;
  const root = page.root;
  const config = page.config;
  const T = page.texts;
  const LOCALE = page.locale;
  const fill = yima.fill;
  const request = yima.api;
  const statusBox = document.getElementById("dash-status");
  const charts = [];
  const COLORS = {
    scans: "#165dff",
    genuine: "#00b42a",
    already_verified: "#4080ff",
    suspicious: "#ff7d00",
    counterfeit: "#f53f3f",
    diverted: "#722ed1",
    points_earned: "#14c9c9",
    points_spent: "#f7ba1e",
    new_members: "#165dff",
  };
  const SCALES = {
    scans: ["#e8f3ff", "#94bfff", "#4080ff", "#0e42d2"],
    counterfeit: ["#ffece8", "#fdab9e", "#f76560", "#cb2634"],
    suspicious: ["#fff7e8", "#ffcf8b", "#ff9a2e", "#d25f00"],
    diverted: ["#f5e8ff", "#c396ed", "#8d4eda", "#551db0"],
  };

  // --- small helpers ------------------------------------------------------------------------

  function num(n) {
    return n === null || n === undefined ? T.none : Number(n).toLocaleString(LOCALE);
  }

  function yuan(fen) {
    if (fen === null || fen === undefined) return T.none;
    return "¥" + (fen / 100).toLocaleString(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function percent(share) {
    if (share === null || share === undefined || !isFinite(share)) return T.none;
    return (share * 100).toLocaleString(LOCALE, { maximumFractionDigits: 1 }) + "%";
  }

  const stamp = new Intl.DateTimeFormat("sv-SE", {
    timeZone: config.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function when(iso) {
    return iso ? stamp.format(new Date(iso)) : T.none;
  }

  const regionNames = typeof Intl.DisplayNames === "function"
    ? new Intl.DisplayNames([LOCALE], { type: "region" }) : null;

  function country(code) {
    if (!code) return T.unknown_place;
    if (T[code] && /^[A-Z]{2}$/.test(code)) return T[code]; // HK, MO, TW as the brand names them
    try { return regionNames ? regionNames.of(code) : code; } catch (e) { return code; }
  }

  function place(code, countryCode) {
    if (code && config.provinces[code]) return config.provinces[code].label;
    if (code && code.indexOf("/") > 0) return place(code.split("/")[0]) + " " + code.split("/")[1];
    if (code) return country(code);
    return countryCode ? country(countryCode) : T.unknown_place;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach((key) => {
      const value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "style") node.style.cssText = value; // CSSOM: the CSP refuses style attributes
      else if (key === "on") Object.keys(value).forEach((e) => node.addEventListener(e, value[e]));
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach((child) => {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function badge(kind, value, id) {
    return el("span", { class: "badge " + kind + "-" + value, "data-status": value, id: id, text: T[kind + "_" + value] || value });
  }

  function table(id, headers, rows) {
    const node = document.getElementById(id);
    if (!node) return;
    const head = node.tHead || node.createTHead();
    if (headers) {
      head.textContent = "";
      head.appendChild(el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : null, text: h.text || h }))));
    }
    const body = node.tBodies[0] || node.appendChild(document.createElement("tbody"));
    body.textContent = "";
    if (!rows.length) {
      const cols = head.rows[0] ? head.rows[0].cells.length : 1;
      body.appendChild(el("tr", { class: "empty" }, [el("td", { colspan: cols, text: T.empty })]));
      return;
    }
    rows.forEach((row) => body.appendChild(row));
  }

  function cells(values, attrs) {
    return el("tr", attrs || {}, values.map((v) => {
      if (v instanceof Node) return el("td", {}, [v]);
      if (typeof v === "number") return el("td", { class: "num", text: num(v) });
      return el("td", { text: v === null || v === undefined ? T.none : String(v) });
    }));
  }

  function detail(answer) {
    const data = answer.data || {};
    const fields = data.errors ? Object.keys(data.errors).map((k) => k + ": " + [].concat(data.errors[k]).join(", ")) : [];
    return fields.length ? fields.join("; ") : (data.detail || data.title || "");
  }

  function fail(answer) {
    statusBox.hidden = false;
    statusBox.className = "msg error";
    statusBox.textContent = answer.status === 0 ? T.offline : fill(T.failed, { status: answer.status, detail: detail(answer) });
  }

  function query(extra) {
    const params = new URLSearchParams(config.query);
    Object.keys(extra || {}).forEach((k) => params.set(k, extra[k]));
    const text = params.toString();
    return text ? "?" + text : "";
  }

  function chart(id, option) {
    const dom = document.getElementById(id);
    if (!dom || typeof echarts === "undefined") return null;
    let instance = echarts.getInstanceByDom(dom);
    if (!instance) {
      instance = echarts.init(dom, null, { renderer: "canvas", locale: config.lang === "en" ? "EN" : "ZH" });
      charts.push(instance);
    }
    instance.setOption(Object.assign({ animation: false, textStyle: { fontFamily: "inherit" } }, option), true);
    dom.setAttribute("data-ready", "1");
    return instance;
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => charts.forEach((c) => c.resize()), 100);
  });

  function kpi(id, value, note) {
    const box = document.getElementById("kpi-" + id);
    if (!box) return;
    box.querySelector(".kpi-value").textContent = value;
    let small = box.querySelector(".kpi-note");
    if (note) {
      if (!small) small = box.appendChild(el("span", { class: "kpi-note" }));
      small.textContent = note;
    }
  }

  function label(start, interval) {
    // "2026-12-07" -> "12-07"; "2026-12-07T14:00:00+08:00" -> "12-07 14:00"
    return interval === "hour" ? start.slice(5, 10) + " " + start.slice(11, 16) : start.slice(5, 10);
  }

  const GRID = { left: 8, right: 16, top: 36, bottom: 8, containLabel: true };
  const AXIS_TIP = { trigger: "axis" };

  // --- pages --------------------------------------------------------------------------------

  function overview(data) {
    const v = data.verdicts;
    const people = data.members.totals;
    kpi("scans", num(v.scans));
    kpi("scanners", data.unique_scanners === null ? T.none : num(data.unique_scanners),
      data.unique_scanners === null ? T.not_estimated : "");
    kpi("genuine", v.scans ? percent((v.genuine + v.already_verified) / v.scans) : T.none);
    kpi("risky", num(v.counterfeit + v.suspicious));
    kpi("diverted", num(v.diverted));
    kpi("new_members", num(people.new_members));
    kpi("points_issued", num(people.points_earned));
    kpi("points_redeemed", num(people.points_spent));
    const xs = data.series.map((p) => label(p.start, data.interval));
    const line = (key, extra) => Object.assign({
      name: T[key], type: "line", data: data.series.map((p) => p[key]), showSymbol: xs.length < 40,
      smooth: false, itemStyle: { color: COLORS[key] }, lineStyle: { width: 2 },
    }, extra || {});
    chart("chart-scans", {
      tooltip: AXIS_TIP,
      legend: { top: 0, left: 0 },
      grid: GRID,
      xAxis: { type: "category", data: xs, boundaryGap: false },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        line("scans", { areaStyle: { opacity: 0.12 } }),
        line("suspicious"),
        line("counterfeit"),
        line("diverted", { lineStyle: { width: 2, type: "dashed" } }),
      ],
    });
    const mix = ["genuine", "already_verified", "suspicious", "counterfeit"]
      .map((k) => ({ name: T[k], value: v[k], itemStyle: { color: COLORS[k] } }));
    chart("chart-verdicts", {
      tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
      legend: { bottom: 0, left: "center" },
      title: { text: num(v.scans), subtext: T.scans, left: "center", top: "36%", textStyle: { fontSize: 22 } },
      series: [{
        type: "pie", radius: ["48%", "70%"], center: ["50%", "45%"], data: mix,
        label: { show: false }, avoidLabelOverlap: true,
      }],
    });
    const days = data.members.days;
    const dx = days.map((d) => d.day.slice(5));
    chart("chart-members", {
      tooltip: AXIS_TIP, grid: GRID,
      xAxis: { type: "category", data: dx }, yAxis: { type: "value", minInterval: 1 },
      series: [{ name: T.new_members, type: "bar", data: days.map((d) => d.new_members), itemStyle: { color: COLORS.new_members } }],
    });
    chart("chart-points", {
      tooltip: AXIS_TIP, legend: { top: 0, left: 0 }, grid: GRID,
      xAxis: { type: "category", data: dx }, yAxis: { type: "value" },
      series: ["points_earned", "points_spent"].map((k) => ({
        name: T[k], type: "bar", data: days.map((d) => d[k]), itemStyle: { color: COLORS[k] },
      })),
    });
    const note = document.getElementById("rollups-note");
    if (note && data.rollups) note.textContent = note.getAttribute("data-prefix") + when(data.rollups.updated_at);
  }

  let mapData = null;
  let mapReady = null;
  let worldCodes = [];

  function loadMap() {
    if (!mapReady) {
      const load = (name, url) => fetch(url, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((geo) => {
          echarts.registerMap(name, geo);
          return geo.features.map((f) => f.properties.name).filter((n) => n !== "-");
        });
      mapReady = Promise.all([load("china", config.map_url), load("world", config.world_map_url)])
        .then(([, world]) => { worldCodes = world; });
    }
    return mapReady;
  }

  // Colour bands on a rough log scale (a few places hold most scans): zero stays grey.
  function bands(metric, top) {
    const cuts = [1, Math.ceil(top / 27), Math.ceil(top / 9), Math.ceil(top / 3)]
      .filter((v, i, all) => i === 0 || v > all[i - 1]);
    return [{ value: 0, label: "0", color: "#f2f3f5" }].concat(cuts.map((low, i) => {
      const high = i + 1 < cuts.length ? cuts[i + 1] - 1 : top;
      return {
        min: low, max: high, color: SCALES[metric][i + (4 - cuts.length)],
        label: low === high ? num(low) : num(low) + " – " + num(high),
      };
    }));
  }

  // The world by country (the outlines are named by ISO code, as the scans are).
  function drawWorld(metric) {
    // Every country is in the data (0 when none scanned there), as every province is in China's.
    const byCode = {};
    worldCodes.forEach((code) => { byCode[code] = 0; });
    mapData.countries.forEach((c) => { if (c.country) byCode[c.country] = (byCode[c.country] || 0) + (c[metric] || 0); });
    const values = Object.keys(byCode).map((code) => ({ name: code, value: byCode[code] }));
    const top = Math.max(1, ...values.map((x) => x.value));
    chart("chart-world", {
      tooltip: {
        trigger: "item",
        formatter: (p) => (p.name === "-" ? "" : country(p.name) + "<br>" + T[metric] + ": " + num(p.value || 0)),
      },
      visualMap: { type: "piecewise", pieces: bands(metric, top), left: 8, bottom: 8, itemWidth: 14, itemHeight: 10 },
      series: [{
        name: T[metric], type: "map", map: "world", roam: true, data: values,
        emphasis: { label: { show: false }, itemStyle: { areaColor: "#ffe4ba" } },
        itemStyle: { borderColor: "#ffffff", borderWidth: 0.5, areaColor: "#f2f3f5" },
        label: { show: false },
      }],
    });
  }

  function drawMap(metric) {
    const byName = {};
    Object.keys(config.provinces).forEach((iso) => { byName[config.provinces[iso].map] = 0; });
    mapData.provinces.forEach((p) => {
      const known = config.provinces[p.province];
      if (known) byName[known.map] += p[metric];
    });
    const values = Object.keys(byName).map((name) => ({ name: name, value: byName[name] }));
    const pieces = bands(metric, Math.max(1, ...values.map((x) => x.value)));
    const labels = {};
    Object.keys(config.provinces).forEach((iso) => { labels[config.provinces[iso].map] = config.provinces[iso].label; });
    chart("chart-map", {
      tooltip: { trigger: "item", formatter: (p) => (labels[p.name] || p.name) + "<br>" + T[metric] + ": " + num(p.value || 0) },
      visualMap: { type: "piecewise", pieces: pieces, left: 8, bottom: 8, itemWidth: 14, itemHeight: 10 },
      series: [{
        name: T[metric], type: "map", map: "china", roam: false, data: values,
        // Data and features share the map's names (浙江); labels are the reader's language.
        emphasis: { label: { show: true, formatter: (p) => labels[p.name] || p.name }, itemStyle: { areaColor: "#ffe4ba" } },
        itemStyle: { borderColor: "#ffffff", borderWidth: 0.8, areaColor: "#f2f3f5" },
        label: { show: false }, layoutCenter: ["50%", "58%"], layoutSize: "112%",
      }],
    });
    drawWorld(metric);
    root.setAttribute("data-metric", metric);
  }

  function map(data) {
    mapData = data;
    table("provinces", null, data.provinces.map((p) => cells(
      [place(p.province, p.country), p.scans, p.genuine, p.suspicious, p.counterfeit, p.diverted],
      { "data-province": p.province }
    )));
    table("countries", null, data.countries.filter((c) => c.country !== "CN").map((c) => cells(
      [country(c.country), c.scans, c.genuine, c.suspicious, c.counterfeit], { "data-country": c.country }
    )));
    loadMap().then(() => drawMap(config.extra.metric || "scans"), () => fail({ status: 0 }));
    document.querySelectorAll("#metrics a[data-metric]").forEach((link) => {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        document.querySelectorAll("#metrics a").forEach((a) => { a.classList.remove("on"); a.removeAttribute("aria-current"); });
        link.classList.add("on");
        link.setAttribute("aria-current", "true");
        history.replaceState(null, "", link.getAttribute("href"));
        loadMap().then(() => drawMap(link.getAttribute("data-metric")));
      });
    });
  }

  // Diversion: distributors, their alerts, the evidence and the review.
  function reviewForm(alert, onDone) {
    if (!config.can.review_diversion) return null;
    const note = el("textarea", { id: "alert-" + alert.id + "-note", rows: 2, maxlength: 1000, placeholder: T.note });
    const message = el("p", { class: "review-message", id: "alert-" + alert.id + "-message", role: "status" });
    alertDetail(alert).then((answer) => {
      if (answer.status !== 200) return;
      if (!note.value) note.value = answer.data.review_note || "";
      if (answer.data.reviewed_at && !message.textContent) {
        message.textContent = fill(T.reviewed, {
          status: T["status_" + answer.data.status], who: answer.data.reviewed_by || "", when: when(answer.data.reviewed_at),
        });
      }
    });
    const send = (status) => {
      buttons.forEach((b) => { b.disabled = true; });
      request("POST", "/diversion/alerts/" + alert.id + "/review", { status: status, note: note.value }).then((answer) => {
        buttons.forEach((b) => { b.disabled = false; });
        if (answer.status !== 200) {
          message.className = "review-message error";
          message.textContent = fill(T.review_failed, { status: answer.status, detail: detail(answer) });
          return;
        }
        message.className = "review-message ok";
        message.textContent = fill(T.reviewed, {
          status: T["status_" + answer.data.status], who: answer.data.reviewed_by || "", when: when(answer.data.reviewed_at),
        });
        onDone(answer.data);
      });
    };
    const buttons = [
      el("button", { type: "button", id: "alert-" + alert.id + "-confirm", class: "danger", text: T.confirm, on: { click: () => send("confirmed") } }),
      el("button", { type: "button", id: "alert-" + alert.id + "-dismiss", class: "secondary", text: T.dismiss, on: { click: () => send("dismissed") } }),
      el("button", { type: "button", id: "alert-" + alert.id + "-reopen", class: "secondary", text: T.reopen, on: { click: () => send("open") } }),
      el("button", { type: "button", id: "alert-" + alert.id + "-save-note", class: "link", text: T.save_note, on: { click: () => send(current.status) } }),
    ];
    const current = alert;
    // Offer what changes the state: no "confirm" on a confirmed alert, no "reopen" on an open one.
    const sync = () => {
      buttons[0].hidden = current.status === "confirmed";
      buttons[1].hidden = current.status === "dismissed";
      buttons[2].hidden = current.status === "open";
    };
    sync();
    const done = onDone;
    onDone = (answer) => { done(answer); sync(); };
    return el("div", { class: "review" }, [el("label", { for: note.id, text: T.note }), note, el("div", { class: "actions" }, buttons), message]);
  }

  // The alert with its scans (and its review note), read once per alert.
  const details = {};
  function alertDetail(alert) {
    if (!details[alert.id]) details[alert.id] = request("GET", "/diversion/alerts/" + alert.id);
    return details[alert.id];
  }

  function evidence(alert, box, button) {
    if (box.getAttribute("data-loaded")) {
      box.hidden = !box.hidden;
      button.textContent = box.hidden ? T.evidence : T.hide;
      return;
    }
    alertDetail(alert).then((answer) => {
      if (answer.status !== 200) {
        box.hidden = false;
        box.textContent = fill(T.failed, { status: answer.status, detail: detail(answer) });
        return;
      }
      const rows = answer.data.scans.map((s) => cells([
        s.batch_id + " / " + s.serial, when(s.scanned_at),
        [s.province ? place(s.province) : country(s.country), s.city].filter(Boolean).join(" "),
        T["src_" + s.place_source] || s.place_source, T["prec_" + s.place_precision] || s.place_precision,
        T[s.verdict] || s.verdict,
      ]));
      const t = el("table", { class: "figures evidence", id: "alert-" + alert.id + "-scans" }, [
        el("thead", {}, [el("tr", {}, [T.code, T.scanned_at, T.place, T.source, T.precision, T.status].map((h) => el("th", { text: h })))]),
        el("tbody", {}, rows),
      ]);
      box.textContent = "";
      box.appendChild(t);
      box.hidden = false;
      box.setAttribute("data-loaded", "1");
      button.textContent = T.hide;
    });
  }

  function alertCard(alert, row) {
    const status = badge("status", alert.status, "alert-" + alert.id + "-status");
    const box = el("div", { class: "evidence-box", id: "alert-" + alert.id + "-evidence-box", hidden: true });
    const button = el("button", { type: "button", class: "secondary", id: "alert-" + alert.id + "-evidence", text: T.evidence });
    button.addEventListener("click", () => evidence(alert, box, button));
    const card = el("article", { class: "alert-card", id: "alert-" + alert.id, "data-status": alert.status }, [
      el("header", {}, [
        el("strong", { text: fill(T.alert, { id: alert.id }) }), " · ", fill(T.shipment, { id: alert.shipment_id }), " ", status,
      ]),
      el("dl", { class: "facts" }, [
        el("dt", { text: T.score }), el("dd", { text: Number(alert.score).toFixed(1) }),
        el("dt", { text: T.codes }), el("dd", { text: num(alert.codes) + " · " + T.scans + " " + num(alert.scans) }),
        el("dt", { text: T.authorised }), el("dd", { text: alert.regions.map((r) => place(r)).join("、") || T.none }),
        el("dt", { text: T.seen }), el("dd", { text: when(alert.first_seen_at) + " – " + when(alert.last_seen_at) }),
      ]),
      button,
      box,
      reviewForm(alert, (done) => {
        const was = alert.status;
        alert.status = done.status;
        alert.review_note = done.review_note;
        status.replaceWith(badge("status", done.status, "alert-" + alert.id + "-status"));
        card.setAttribute("data-status", done.status);
        if (was !== done.status && row) {
          const open = row.querySelector(".open-alerts");
          const n = Number(open.getAttribute("data-n")) + (done.status === "open" ? 1 : 0) - (was === "open" ? 1 : 0);
          open.setAttribute("data-n", n);
          open.textContent = num(n);
        }
      }),
    ]);
    return card;
  }

  function showAlerts(dist, row) {
    const card = document.getElementById("alerts-card");
    const list = document.getElementById("alerts");
    list.textContent = "";
    list.appendChild(el("h2", { id: "alerts-title", text: (dist.name || "#" + dist.distributor_id) + " · " + T.evidence }));
    if (!dist.alerts.length) list.appendChild(el("p", { class: "muted", text: T.empty }));
    dist.alerts.forEach((a) => list.appendChild(alertCard(a, row)));
    card.hidden = false;
    document.querySelectorAll("#distributors tbody tr").forEach((r) => r.classList.toggle("selected", r === row));
  }

  function placesText(places) {
    const shown = places.slice(0, 5).map((p) => place(p.region) + " " + num(p.scans)).join("、");
    return places.length > 5 ? shown + " " + fill(T.more_places, { n: places.length }) : shown || T.none;
  }

  function diversion(data) {
    const dists = data.distributors.slice(0, 10).reverse();
    const top = {};
    data.distributors.forEach((d) => d.places.slice(0, 3).forEach((p) => {
      top[p.region] = (top[p.region] || 0) + p.scans;
    }));
    const regions = Object.keys(top).sort((a, b) => top[b] - top[a]).slice(0, 6);
    const palette = ["#722ed1", "#8d4eda", "#a871e3", "#c396ed", "#dcbff5", "#eee0fb"];
    const series = regions.map((r, i) => ({
      name: place(r), type: "bar", stack: "d", itemStyle: { color: palette[i] },
      data: dists.map((d) => (d.places.find((p) => p.region === r) || { scans: 0 }).scans),
    }));
    series.push({
      name: T.other_places, type: "bar", stack: "d", itemStyle: { color: "#c9cdd4" },
      data: dists.map((d) => d.diverted_scans - d.places.filter((p) => regions.indexOf(p.region) >= 0).reduce((a, p) => a + p.scans, 0)),
    });
    chart("chart-diversion", {
      tooltip: AXIS_TIP, legend: { top: 0, left: 0 }, grid: GRID,
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: dists.map((d) => d.name || "#" + d.distributor_id) },
      series: series,
    });
    const rows = data.distributors.map((d) => {
      const open = el("span", { class: "open-alerts", "data-n": d.open_alerts, text: num(d.open_alerts) });
      const link = el("a", { href: "#alerts-card", class: "distributor", text: d.name || "#" + d.distributor_id });
      const row = el("tr", { "data-distributor": d.distributor_id }, [
        el("td", {}, [link]),
        el("td", { class: "num", text: num(d.diverted_scans) }),
        el("td", { text: placesText(d.places) }),
        el("td", { class: "num" }, [open]),
        el("td", { class: "num", text: num(d.alert_codes) }),
      ]);
      link.addEventListener("click", (event) => { event.preventDefault(); showAlerts(d, row); });
      return { row: row, dist: d };
    });
    table("distributors", null, rows.map((r) => r.row));
    const first = rows.find((r) => r.dist.alerts.length) || rows[0];
    if (first) showAlerts(first.dist, first.row);
  }

  function counterfeit(data) {
    const top = data.places.slice(0, 12).reverse();
    chart("chart-hotspots", {
      tooltip: AXIS_TIP, legend: { top: 0, left: 0 }, grid: GRID,
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: top.map((p) => place(p.province, p.country)) },
      series: ["counterfeit", "suspicious"].map((k) => ({
        name: T[k], type: "bar", stack: "all", data: top.map((p) => p[k]), itemStyle: { color: COLORS[k] },
      })),
    });
    const reasons = Object.keys(data.auto_blacklisted.by_reason).map((r) => ({
      name: T["reason_" + r] || r, value: data.auto_blacklisted.by_reason[r],
    }));
    chart("chart-reasons", {
      tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
      legend: { bottom: 0, left: "center" },
      color: ["#f53f3f", "#ff7d00", "#722ed1", "#165dff", "#14c9c9", "#86909c"],
      title: reasons.length ? undefined : { text: T.empty, left: "center", top: "middle", textStyle: { fontSize: 14, color: "#86909c", fontWeight: "normal" } },
      series: [{ type: "pie", radius: ["40%", "65%"], center: ["50%", "45%"], data: reasons, showEmptyCircle: false, label: { formatter: "{b}\n{c}" } }],
    });
    const alertHead = [T.kind, T.subject, { text: T.count, num: true }, T.status, T.created];
    const subject = (text) => {
      const code = /^batch (\d+) #(\d+)$/.exec(text);
      if (code) return fill(T.batch_serial, { batch: code[1], serial: code[2] });
      const region = /^([A-Z]{2})\/(.+)$/.exec(text); // CN/广东省: a country and a province
      if (region) return region[2] === "-" ? country(region[1]) : region[2];
      return config.provinces[text] ? place(text) : text;
    };
    const alertRow = (a) => cells([
      T["kind_" + a.kind] || a.kind, subject(a.subject), a.count,
      badge("status", a.status), when(a.created_at),
    ], { "data-alert": a.id });
    table("forged", alertHead, data.forged_clusters.map(alertRow));
    table("clones", alertHead, data.clone_alerts.map(alertRow));
    table("blacklisted", [T.range, T.reason, T.note, T.created, T.status],
      data.auto_blacklisted.entries.map((e) => cells([
        fill(T.batch_serial, { batch: e.batch_id, serial: e.first_serial + (e.last_serial !== e.first_serial ? "–" + e.last_serial : "") }),
        T["reason_" + e.reason] || e.reason, e.note || T.none, when(e.created_at), e.lifted ? T.lifted : T.active,
      ])));
  }

  function campaignCard(c, index) {
    const budget = c.budget;
    const share = budget.budget_fen ? budget.spent_fen / budget.budget_fen : null;
    const bar = el("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": share === null ? 0 : Math.round(share * 100) }, [
      el("span", { class: "fill", style: "width:" + Math.min(100, (share || 0) * 100).toFixed(1) + "%" }),
      c.pacing.elapsed_share !== null ? el("span", { class: "mark", style: "left:" + (c.pacing.elapsed_share * 100).toFixed(1) + "%", title: T.expected }) : null,
    ]);
    const stat = (name, value, id) => el("div", { class: "stat", id: id }, [el("span", { class: "kpi-label", text: name }), el("span", { class: "kpi-value", text: value })]);
    const prizesId = "chart-prizes-" + index;
    const burnId = "chart-burn-" + index;
    const card = el("section", { class: "card campaign", id: "campaign-" + c.id }, [
      el("div", { class: "card-head" }, [
        el("h2", {}, [c.name + " ", badge("campaign_status", c.status)]),
        el("span", { class: "muted", text: when(c.starts_at) + " – " + when(c.ends_at) }),
      ]),
      el("div", { class: "stats" }, [
        stat(T.draws, num(c.draws), "campaign-" + c.id + "-draws"),
        stat(T.winners, num(c.winners)),
        stat(T.spent, yuan(budget.spent_fen) + (budget.budget_fen ? " / " + yuan(budget.budget_fen) : "")),
        stat(T.pacing, c.pacing.spend_vs_expected === null ? T.none : fill(T.pacing_value, { share: percent(c.pacing.spend_vs_expected) })),
        stat(T.engaged, num(c.engaged_members)),
        stat(T.cost_per_engaged, yuan(c.cost_per_engaged_member_fen)),
        stat(T.review_count, num(c.review_queue)),
      ]),
      budget.budget_fen ? el("div", { class: "budget" }, [el("span", { class: "kpi-label", text: T.budget + " " + percent(share) }), bar]) : el("p", { class: "muted", text: T.no_budget }),
      el("div", { class: "charts halves" }, [
        el("div", {}, [el("h3", { text: T.wins_by_prize }), el("div", { class: "chart short", id: prizesId })]),
        el("div", {}, [el("h3", { text: T.burn_by_day }), el("div", { class: "chart short", id: burnId })]),
      ]),
    ]);
    return { card: card, draw: () => {
      chart(prizesId, {
        tooltip: {
          trigger: "axis",
          formatter: (items) => {
            const p = c.prizes[items[0].dataIndex];
            return p.name + "<br>" + T.prize_won + ": " + num(p.won) +
              (p.left === null || p.left === undefined ? "" : "<br>" + T.prize_left + ": " + num(p.left));
          },
        },
        grid: GRID,
        xAxis: { type: "category", data: c.prizes.map((p) => p.name), axisLabel: { interval: 0 } },
        yAxis: { type: "value", minInterval: 1 },
        series: [{
          name: T.prize_won, type: "bar", data: c.prizes.map((p) => p.won), itemStyle: { color: "#165dff" },
          label: { show: true, position: "top" }, barMaxWidth: 48,
          tooltip: { valueFormatter: (v) => num(v) },
        }],
      });
      chart(burnId, {
        tooltip: { trigger: "axis", valueFormatter: (v) => yuan(v * 100) }, grid: GRID,
        xAxis: { type: "category", data: budget.by_day.map((d) => d.day.slice(5)) },
        yAxis: { type: "value", axisLabel: { formatter: (v) => "¥" + v } },
        series: [{ name: T.spent, type: "bar", data: budget.by_day.map((d) => d.spent_fen / 100), itemStyle: { color: "#f7ba1e" } }],
      });
    } };
  }

  function reviewQueue() {
    if (!config.can.campaigns || !document.getElementById("review-queue")) return;
    request("GET", "/reviews?limit=50").then((answer) => {
      if (answer.status !== 200) {
        table("review-queue", [T.review_count], [cells([fill(T.failed, { status: answer.status, detail: detail(answer) })])]);
        return;
      }
      const head = ["#", T.member, T.code, T.created, T.reasons, T.place, T.status];
      const rows = answer.data.items.map((r) => {
        const actions = el("span", { class: "actions" });
        if (config.can.review_rewards) {
          ["release", "deny"].forEach((decision) => {
            actions.appendChild(el("button", {
              type: "button", class: decision === "deny" ? "danger" : "secondary", id: "reward-" + r.id + "-" + decision, text: T[decision],
              on: { click: () => request("POST", "/reviews/" + r.id, { decision: decision }).then((done) => {
                actions.textContent = done.status === 200 ? T["decided_" + decision] : fill(T.review_failed, { status: done.status, detail: detail(done) });
              }) },
            }));
          });
        }
        return cells([r.id, "#" + r.member_id, r.batch_id + " / " + r.serial, when(r.created_at), r.reasons.join("、"), r.region || T.none, actions], { "data-reward": r.id });
      });
      if (!rows.length) {
        table("review-queue", head, []);
        document.querySelector("#review-queue tbody td").textContent = T.queue_empty;
        return;
      }
      table("review-queue", head, rows);
    });
  }

  function campaignsPage(data) {
    const box = document.getElementById("campaigns");
    box.textContent = "";
    if (!data.campaigns.length) box.appendChild(el("section", { class: "card" }, [el("p", { class: "muted", text: T.empty })]));
    const made = data.campaigns.map((c, i) => campaignCard(c, i));
    made.forEach((m) => box.appendChild(m.card));
    made.forEach((m) => m.draw());
    reviewQueue();
  }

  function membersPage(data) {
    kpi("members_total", num(data.members));
    kpi("new_members", num(data.growth.totals.new_members));
    kpi("sleeping", num(data.sleeping));
    kpi("churn_risk", num(data.churn_risk));
    kpi("liability_active", num(data.points_liability.active));
    kpi("liability_pending", num(data.points_liability.pending));
    kpi("expiring", num(data.expiring.points), fill(T.expiring_value, { points: num(data.expiring.points), members: num(data.expiring.members) }));
    const days = data.growth.days;
    chart("chart-growth", {
      tooltip: AXIS_TIP, legend: { top: 0, left: 0 }, grid: GRID,
      xAxis: { type: "category", data: days.map((d) => d.day.slice(5)) },
      yAxis: [{ type: "value", minInterval: 1 }, { type: "value", splitLine: { show: false } }],
      series: [
        { name: T.new_members, type: "bar", data: days.map((d) => d.new_members), itemStyle: { color: COLORS.new_members } },
        { name: T.points_earned, type: "line", yAxisIndex: 1, data: days.map((d) => d.points_earned), itemStyle: { color: COLORS.points_earned } },
        { name: T.points_spent, type: "line", yAxisIndex: 1, data: days.map((d) => d.points_spent), itemStyle: { color: COLORS.points_spent } },
      ],
    });
    const tiers = data.tiers.map((t) => ({
      name: t.name === null ? T.no_tier : (config.lang === "en" && t.name_en ? t.name_en : t.name), value: t.members,
    }));
    chart("chart-tiers", {
      tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
      legend: { bottom: 0, left: "center" },
      color: ["#c9cdd4", "#f7ba1e", "#86909c", "#d4a017", "#165dff", "#722ed1"],
      series: [{ type: "pie", radius: ["40%", "65%"], center: ["50%", "45%"], data: tiers, label: { formatter: "{b}\n{c}" } }],
    });
    const segments = data.segments.slice().reverse();
    chart("chart-segments", {
      tooltip: AXIS_TIP, grid: GRID,
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: segments.map((s) => (config.lang === "en" ? s.en : s.zh)) },
      series: [{ name: T.members_unit, type: "bar", data: segments.map((s) => s.members), itemStyle: { color: "#4080ff" }, label: { show: true, position: "right" } }],
    });
    const note = document.getElementById("rfm-note");
    if (note) note.textContent = data.rfm_computed_at ? fill(T.rfm_at, { when: when(data.rfm_computed_at) }) : T.rfm_not_computed;
  }

  function coverage(part, whole) {
    const share = whole ? part / whole : 0;
    return el("span", { class: "coverage" }, [
      el("span", { class: "meter small" }, [el("span", { class: "fill", style: "width:" + Math.min(100, share * 100).toFixed(1) + "%" })]),
      el("span", { text: num(part) + " · " + percent(share) }),
    ]);
  }

  function jobProgress(job) {
    const share = job.chunks_total ? job.chunks_done / job.chunks_total : (job.status === "done" ? 1 : 0);
    return el("span", { class: "coverage" }, [
      el("span", { class: "meter small", role: "progressbar", "aria-valuenow": Math.round(share * 100), "aria-valuemin": 0, "aria-valuemax": 100 }, [
        el("span", { class: "fill" + (job.status === "failed" ? " failed" : ""), style: "width:" + (share * 100).toFixed(1) + "%" }),
      ]),
      el("span", { class: "progress-text", text: percent(share) + " (" + job.chunks_done + "/" + job.chunks_total + ")" }),
    ]);
  }

  function jobRow(job) {
    return cells([
      "#" + job.export_id, "#" + job.batch_id, job.format.toUpperCase(), badge("job_status", job.status),
      jobProgress(job), job.codes, when(job.created_at),
    ], { id: "job-" + job.export_id, "data-status": job.status });
  }

  function poll(job) {
    if (job.status === "done" || job.status === "failed") return;
    setTimeout(() => {
      request("GET", "/exports/" + job.export_id).then((answer) => {
        if (answer.status !== 200) return;
        const e = answer.data;
        const next = {
          export_id: e.id, batch_id: e.batch_id, format: e.format, status: e.status,
          chunks_done: e.chunks_done, chunks_total: e.chunks_total,
          codes: e.last_serial - e.first_serial + 1, created_at: e.created_at,
        };
        const old = document.getElementById("job-" + job.export_id);
        if (old) old.replaceWith(jobRow(next));
        poll(next);
      });
    }, 2000);
  }

  function production(data) {
    table("batches", ["#", T.product, T.lot, T.status, { text: T.issued, num: true }, T.activated, T.shipped, { text: T.scans, num: true }, { text: T.suspicious, num: true }, T.created],
      data.batches.map((b) => cells([
        "#" + b.batch_id, (config.products || {})[b.product_id] || "#" + b.product_id, b.lot,
        badge("batch_status", b.status), b.issued,
        coverage(b.activated, b.issued), coverage(b.shipped, b.issued), b.scans, b.suspicious, when(b.created_at),
      ], { "data-batch": b.batch_id })));
    table("print-jobs", [T.job, "#", T.format, T.status, T.progress, { text: T.codes, num: true }, T.created],
      data.print_jobs.map(jobRow));
    if (!data.print_jobs.length) document.querySelector("#print-jobs tbody td").textContent = T.no_jobs;
    data.print_jobs.forEach(poll);
  }

  const PAGES = {
    overview: overview,
    map: map,
    diversion: diversion,
    counterfeit: counterfeit,
    campaigns: campaignsPage,
    members: membersPage,
    production: production,
  };

  function load() {
    request("GET", config.endpoint + query()).then((answer) => {
      if (answer.status !== 200) {
        fail(answer);
        return;
      }
      statusBox.hidden = true;
      PAGES[config.page](answer.data);
      root.setAttribute("data-loaded", "1");
    });
  }

  load();
})();

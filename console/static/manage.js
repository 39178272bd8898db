/* Yima console management pages: read and write /api/v1 through console.js's `yima.api` (the
   session cookie, its CSRF token, the page's language), show the API's 422 field errors next to
   the fields, poll print-file jobs for their progress. The page hands over its settings and
   texts as JSON in #manage[data-config]: no inline script. No framework, no build. */
(function () {
  "use strict";
  const yima = window.yima; // console.js: the page's settings, fill, the API with CSRF
  const page = yima.page("manage");
  if (!page) return;
  const config = page.config;
  const T = page.texts;
  const LOCALE = page.locale;
  const API = yima.apiBase;
  const api = yima.api;
  const fill = yima.fill;
  const PAGES = config.pages || "";
  const can = (permission) => config.can.indexOf(permission) >= 0;
  const statusBox = document.getElementById("page-status");

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach((child) => {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function num(n) {
    return n === null || n === undefined ? T.none : Number(n).toLocaleString(LOCALE);
  }

  function yuan(fen) {
    if (fen === null || fen === undefined) return T.none;
    return "¥" + (fen / 100).toLocaleString(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function bytes(n) {
    if (n === null || n === undefined) return T.none;
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KB";
    return (n / 1048576).toFixed(1) + " MB";
  }

  const stamp = new Intl.DateTimeFormat("sv-SE", {
    timeZone: config.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function when(iso) {
    return iso ? stamp.format(new Date(iso)) : T.none;
  }

  // The offset of an IANA zone at a UTC instant, in minutes.
  function zoneOffset(zone, utcMillis) {
    const parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(utcMillis)).forEach((p) => { parts[p.type] = p.value; });
    const local = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return Math.round((local - utcMillis) / 60000);
  }

  // "2026-12-07T10:00" read in the zone → an ISO 8601 instant with its offset.
  function zonedISO(local, zone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || "");
    if (!m) return local || "";
    const naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    let offset = zoneOffset(zone, naive);
    offset = zoneOffset(zone, naive - offset * 60000);
    const sign = offset < 0 ? "-" : "+";
    const abs = Math.abs(offset);
    const pad = (n) => String(n).padStart(2, "0");
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  // A UTC instant → "YYYY-MM-DDTHH:MM" in the zone (for a datetime-local input).
  function localInput(utcMillis, zone) {
    return new Intl.DateTimeFormat("sv-SE", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).format(new Date(utcMillis)).replace(" ", "T").slice(0, 16);
  }

  // A region code in words: 浙江 for CN-ZJ, 浙江 杭州市 for CN-ZJ/杭州市 (the code itself for
  // a place the page has no name for).
  const REGIONS = config.regions || {};
  function regionName(code) {
    if (!code) return T.none;
    const [head, city] = String(code).split("/");
    const name = REGIONS[head] || head;
    return city ? name + " " + city : name;
  }

  function regionList(codes) {
    return (codes || []).map(regionName).join(config.lang === "en" ? ", " : "、");
  }

  // Region pickers: the provinces chosen in the list, the other regions typed as codes (whose
  // names are shown under the field as they are typed).
  function setRegions(form, codes, pick, text) {
    const picker = pick || form.querySelector('[data-type="region-pick"]');
    const typed = text || form.querySelector("[data-region-names]");
    const rest = [];
    Array.prototype.forEach.call(picker.options, (o) => { o.selected = false; });
    (codes || []).forEach((code) => {
      const option = Array.prototype.find.call(picker.options, (o) => o.value === code);
      if (option) option.selected = true; else rest.push(code);
    });
    typed.value = rest.join(typed.tagName === "TEXTAREA" ? "\n" : ", ");
    showRegionNames(typed);
  }

  function pickedRegions(picker) {
    return Array.prototype.filter.call(picker.options, (o) => o.selected).map((o) => o.value);
  }

  function showRegionNames(field) {
    const note = field.parentNode.querySelector(".region-names");
    if (!note) return;
    const codes = splitList(field.value);
    note.textContent = codes.length ? fill(T.regions_chosen, { names: regionList(codes) }) : "";
    note.hidden = !codes.length;
  }

  document.querySelectorAll("[data-region-names]").forEach((field) => {
    field.addEventListener("input", () => showRegionNames(field));
  });

  function say(text, kind) {
    if (!statusBox) return;
    statusBox.textContent = text;
    statusBox.className = "msg " + (kind || "ok");
    statusBox.hidden = !text;
  }

  // A field error as the API words it: in the reader's language already (the request asked
  // for it) when the API knows the kind of error (its error_codes), else marked as the API's.
  function errorText(message, code) {
    if (code && code !== "invalid") return message;
    return config.lang === "en" ? message : fill(T.field_error, { detail: message });
  }

  // An answer that is not a success, in words: field errors next to their fields, the rest
  // in the form's (or the page's) error box.
  function problemText(answer) {
    if (answer.status === 0) return T.network_failed;
    if (answer.status === 403) return T.forbidden_action;
    if (answer.status === 404) return T.not_found;
    const detail = (answer.data && answer.data.detail) || String(answer.status);
    if (answer.status === 409) return fill(T.conflict, { detail: detail });
    return fill(T.error_detail, { detail: detail });
  }

  // "draw.prizes[0].probability" and "draw.prizes.0.probability" are the same field.
  function fieldKey(key) {
    return String(key).replace(/\[(\d+)\]/g, ".$1");
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error.api").forEach((node) => node.remove());
    form.querySelectorAll("[data-error-for]").forEach((node) => { node.hidden = true; node.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    const box = form.querySelector(".form-error");
    if (box) { box.hidden = true; box.textContent = ""; }
  }

  function fieldOf(form, key) {
    const wanted = fieldKey(key);
    let best = null;
    form.querySelectorAll("[data-field], [name]").forEach((node) => {
      const name = fieldKey(node.getAttribute("data-field") || node.getAttribute("name"));
      if (!best && name === wanted) best = node;
    });
    if (best) return best;
    // A prize's points, amount_fen and value_fen are typed into its one value field.
    const alias = wanted.replace(/\.(points|amount_fen|value_fen)$/, ".value");
    if (alias !== wanted) return fieldOf(form, alias);
    // "draw.prizes.0" or "targeting" : the closest enclosing field named so.
    const dot = wanted.lastIndexOf(".");
    return dot > 0 ? fieldOf(form, wanted.slice(0, dot)) : null;
  }

  function showProblem(form, answer) {
    clearErrors(form);
    // 422: the fields are wrong; 409 with fields: they may not change now (a running campaign's odds).
    const errors = ((answer.status === 422 || answer.status === 409) && answer.data && answer.data.errors) || {};
    const codes = (answer.data && answer.data.error_codes) || {};
    const unplaced = [];
    Object.entries(errors).forEach(([key, message]) => {
      const slot = form.querySelector(`[data-error-for="${fieldKey(key).replace(/"/g, "")}"]`);
      const field = slot ? null : fieldOf(form, key);
      const text = errorText(message, codes[key]);
      if (slot) {
        slot.textContent = text;
        slot.hidden = false;
      } else if (field) {
        field.setAttribute("aria-invalid", "true");
        const note = el("p", { class: "field-error api", role: "alert", "data-error-of": fieldKey(key), text: text });
        const holder = field.closest("td, div, fieldset") || field.parentNode;
        holder.appendChild(note);
      } else {
        unplaced.push(key + ": " + text);
      }
    });
    const box = form.querySelector(".form-error");
    const placed = Object.keys(errors).length && !unplaced.length;
    const summary = placed && answer.status === 422 ? T.form_invalid :
      unplaced.length ? unplaced.join("\n") : problemText(answer);
    if (box) { box.textContent = summary; box.hidden = false; }
    else say(summary, "error");
    const first = form.querySelector("[aria-invalid]");
    if (first && first.focus) first.focus();
  }

  function toFen(text) {
    const value = String(text).trim();
    if (!/^\d+(\.\d{1,2})?$/.test(value)) return value; // the API names what is wrong
    return Math.round(parseFloat(value) * 100);
  }

  function toInt(text) {
    const value = String(text).trim();
    return /^-?\d+$/.test(value) ? parseInt(value, 10) : value;
  }

  function splitList(text) {
    return String(text).split(/[\s,，;；]+/).map((s) => s.trim()).filter(Boolean);
  }

  // A form's fields as the API's JSON: data-type says how (int, int-or-null, fen-or-null,
  // text-or-null, list, bool); empty optional fields are left out.
  function formJSON(form) {
    const out = {};
    form.querySelectorAll("input[name], select[name], textarea[name]").forEach((field) => {
      if (field.closest("template")) return;
      const name = field.getAttribute("name");
      const type = field.getAttribute("data-type") || "text";
      if (type === "bool") { out[name] = field.checked; return; }
      if (type === "region-pick" || type === "list") {
        // A picker and a typed list of one name make one list.
        const values = type === "list" ? splitList(field.value) : pickedRegions(field);
        out[name] = Array.from(new Set((out[name] || []).concat(values)));
        return;
      }
      const raw = field.value.trim();
      if (raw === "") {
        if (type === "text-or-null" || type === "int-or-null" || type === "fen-or-null") {
          if (!field.hasAttribute("data-omit-empty")) out[name] = null;
          return;
        }
        if (type === "int") { out[name] = null; return; }
        out[name] = "";
        return;
      }
      if (type === "int" || type === "int-or-null") out[name] = toInt(raw);
      else if (type === "fen-or-null") out[name] = toFen(raw);
      else out[name] = raw;
    });
    return out;
  }

  function busy(form, on) {
    form.querySelectorAll("button").forEach((b) => { b.disabled = on; });
  }

  // A form with data-api-form="METHOD /path" posts its JSON there; onDone(data) on success.
  function apiForm(form, onDone, pathOf) {
    if (!form) return;
    const [method, path] = form.getAttribute("data-api-form").split(" ");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      busy(form, true);
      const target = pathOf ? pathOf(path) : path;
      api(method, target, formJSON(form)).then((answer) => {
        busy(form, false);
        if (answer.status >= 200 && answer.status < 300) onDone(answer.data);
        else showProblem(form, answer);
      });
    });
  }

  function rows(table, items, render, emptyText) {
    const body = table.tBodies[0];
    body.textContent = "";
    if (!items.length) {
      const cols = table.tHead.rows[0].cells.length;
      body.appendChild(el("tr", { class: "empty" }, [el("td", { colspan: cols, class: "muted", text: emptyText || T.empty })]));
      return;
    }
    items.forEach((item) => body.appendChild(render(item)));
  }

  // Fill a table from a paginated API list; "load more" follows next_after.
  function loadInto(tableId, path, render, emptyText) {
    const table = document.getElementById(tableId);
    if (!table) return Promise.resolve([]);
    table.setAttribute("aria-busy", "true");
    const more = document.getElementById(tableId + "-more");
    if (more) more.remove();
    return api("GET", path).then((answer) => {
      table.removeAttribute("aria-busy");
      if (answer.status !== 200) {
        say(problemText(answer) || T.load_failed, "error");
        return [];
      }
      const items = answer.data.items || [];
      rows(table, items, render, emptyText);
      table.setAttribute("data-loaded", String(items.length));
      if (answer.data.next_after) moreButton(table, path, answer.data.next_after, render);
      return items;
    });
  }

  function moreButton(table, path, after, render) {
    const button = el("button", { type: "button", class: "secondary more", id: table.id + "-more" }, [T.more]);
    button.addEventListener("click", () => {
      button.disabled = true;
      const sep = path.indexOf("?") >= 0 ? "&" : "?";
      api("GET", path + sep + "after=" + encodeURIComponent(after)).then((answer) => {
        button.remove();
        if (answer.status !== 200) { say(problemText(answer), "error"); return; }
        answer.data.items.forEach((item) => table.tBodies[0].appendChild(render(item)));
        if (answer.data.next_after) moreButton(table, path, answer.data.next_after, render);
      });
    });
    table.parentNode.insertBefore(button, table.nextSibling);
  }

  function badge(status, prefix) {
    return el("span", { class: "badge st-" + status, text: T[(prefix || "st_") + status] || status });
  }

  function link(href, text, attrs) {
    return el("a", Object.assign({ href: PAGES + href }, attrs || {}), [text]);
  }

  function fillOptions(select, items, valueOf, labelOf) {
    items.forEach((item) => select.appendChild(el("option", { value: valueOf(item), text: labelOf(item) })));
  }

  function localTimes() {
    document.querySelectorAll("time[data-local]").forEach((node) => {
      node.textContent = when(node.getAttribute("datetime"));
    });
  }

  // --- products -----------------------------------------------------------------------------

  function productRow(p) {
    return el("tr", { id: "product-" + p.id }, [
      el("td", { text: p.id }), el("td", {}, [el("code", { text: p.sku })]), el("td", { text: p.gtin || T.none }),
      el("td", { text: p.name }), el("td", { text: p.specification || "" }), el("td", { text: when(p.created_at) }),
    ]);
  }

  const pages = {};

  pages.products = function () {
    loadInto("products", "/products?limit=200", productRow);
    const form = document.getElementById("new-product");
    apiForm(form, (product) => {
      form.reset();
      say(fill(T.product_created, { name: product.name }));
      loadInto("products", "/products?limit=200", productRow);
    });
  };

  // --- batches ------------------------------------------------------------------------------

  pages.batches = function () {
    const names = {};
    const activated = config.activated || {};
    api("GET", "/products?limit=200").then((answer) => {
      const items = answer.status === 200 ? answer.data.items : [];
      items.forEach((p) => { names[p.id] = p.name + " (" + p.sku + ")"; });
      const select = document.querySelector('select[data-options="products"]');
      if (select) fillOptions(select, items, (p) => p.id, (p) => p.name + " (" + p.sku + ")");
      loadInto("batches", "/batches?limit=200", (b) => el("tr", { id: "batch-" + b.id }, [
        el("td", { text: b.id }),
        el("td", {}, [link("/batches/" + b.id, b.lot, { class: "batch-link" })]),
        el("td", { text: names[b.product_id] || "#" + b.product_id }),
        el("td", { text: num(b.quantity) }),
        el("td", { class: "activated", text: b.id in activated ? num(activated[b.id]) : T.none }),
        el("td", { text: T["url_" + b.url_form] || b.url_form }),
        el("td", {}, [badge(b.status, "batch_")]),
        el("td", { text: when(b.created_at) }),
      ]));
    });
    const form = document.getElementById("new-batch");
    apiForm(form, (batch) => {
      say(fill(T.batch_created, { lot: batch.lot }));
      window.location.assign(PAGES + "/batches/" + batch.id);
    });
  };

  pages.batch = function () {
    const batchId = config.batch_id;
    const table = document.getElementById("exports");
    const polling = {};

    function progressCell(e) {
      const total = Math.max(1, e.chunks_total);
      const done = e.status === "done" ? total : e.chunks_done;
      return el("td", {}, [
        el("progress", { max: total, value: done, class: "job", "aria-label": T.progress }),
        el("span", { class: "muted small", text: " " + fill(T.progress_text, { done: e.chunks_done, total: e.chunks_total }) }),
      ]);
    }

    function exportRow(e) {
      const download = e.status === "done" && can("export")
        ? el("a", { class: "button", id: "download-" + e.id, href: API + "/exports/" + e.id + "/file", download: e.file_name || "" }, [T.download])
        : null;
      return el("tr", { id: "export-" + e.id, "data-status": e.status }, [
        el("td", { text: e.id }),
        el("td", { text: e.format.toUpperCase() }),
        el("td", { text: num(e.first_serial) + "–" + num(e.last_serial) }),
        el("td", { class: "export-status" }, [badge(e.status, "export_")]),
        progressCell(e),
        el("td", { text: e.encrypted ? T.yes : T.no }),
        el("td", { text: bytes(e.file_size) }),
        el("td", { text: when(e.created_at) }),
        el("td", {}, [download]),
      ]);
    }

    function put(e) {
      const row = exportRow(e);
      const old = document.getElementById("export-" + e.id);
      const body = table.tBodies[0];
      const empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
      if (old) old.replaceWith(row);
      else body.insertBefore(row, body.firstChild);
      if ((e.status === "running" || e.status === "assembling") && !polling[e.id]) poll(e.id);
    }

    function poll(id) {
      polling[id] = true;
      const tick = () => api("GET", "/exports/" + id).then((answer) => {
        if (answer.status !== 200) { delete polling[id]; return; }
        const e = answer.data;
        put(e);
        if (e.status === "running" || e.status === "assembling") {
          window.setTimeout(tick, 700);
          return;
        }
        delete polling[id];
        if (e.status === "done") say(fill(T.export_ready, { id: e.id }));
        if (e.status === "failed") say(fill(T.export_fail_msg, { id: e.id }), "error");
      });
      window.setTimeout(tick, 300);
    }

    loadInto("exports", "/exports?limit=50&batch_id=" + batchId, exportRow).then((items) => {
      items.forEach((e) => { if (e.status === "running" || e.status === "assembling") poll(e.id); });
    });
    const form = document.getElementById("new-export");
    apiForm(form, (e) => {
      form.querySelector('[name="password"]').value = "";
      say(fill(T.export_started, { id: e.id }), "info");
      put(e);
      if (!polling[e.id] && e.status === "done") say(fill(T.export_ready, { id: e.id }));
    });
  };

  // --- distributors -------------------------------------------------------------------------

  pages.distributors = function () {
    const editCard = document.getElementById("edit-distributor-card");
    const editForm = document.getElementById("edit-distributor");
    let editing = null;
    let all = [];

    function render(d) {
      const edit = can("write")
        ? el("button", { type: "button", class: "link", id: "edit-distributor-" + d.id, onclick: () => startEdit(d) }, [T.edit])
        : null;
      return el("tr", { id: "distributor-" + d.id }, [
        el("td", {}, [el("code", { text: d.code })]), el("td", { text: d.name }),
        el("td", { text: T["level_" + d.level] || d.level }), el("td", { text: T["channel_" + d.channel] || d.channel }),
        el("td", { class: "regions", text: regionList(d.regions) || T.none, title: d.regions.join(", ") }),
        el("td", { class: "regions", text: regionList(d.authorised_regions) || T.none, title: d.authorised_regions.join(", ") }),
        el("td", {}, [el("span", { class: "badge " + (d.active ? "st-running" : "st-ended"), text: d.active ? T.active : T.inactive })]),
        el("td", {}, [edit]),
      ]);
    }

    function parents() {
      document.querySelectorAll('select[data-options="distributors"]').forEach((select) => {
        const keep = select.value;
        select.querySelectorAll("option[value]:not([value=''])").forEach((o) => o.remove());
        fillOptions(select, all.filter((d) => !editing || d.id !== editing.id || select.form !== editForm),
          (d) => d.id, (d) => d.code + " · " + d.name);
        select.value = keep;
      });
    }

    function load() {
      return loadInto("distributors", "/trace/distributors?limit=200", render).then((items) => {
        all = items;
        parents();
      });
    }

    function startEdit(d) {
      editing = d;
      parents();
      editCard.hidden = false;
      document.getElementById("edit-distributor-title").textContent = fill(T.edit_distributor, { code: d.code });
      editForm.elements.name.value = d.name;
      editForm.elements.level.value = d.level;
      editForm.elements.channel.value = d.channel;
      editForm.elements.parent_id.value = d.parent_id || "";
      setRegions(editForm, d.regions);
      editForm.elements.contact.value = d.contact || "";
      editForm.elements.active.checked = d.active;
      clearErrors(editForm);
      editForm.querySelector('[data-type="region-pick"]').focus();
    }

    const form = document.getElementById("new-distributor");
    apiForm(form, (d) => {
      form.reset();
      form.querySelectorAll("[data-region-names]").forEach(showRegionNames);
      say(fill(T.distributor_created, { code: d.code }));
      load();
    });
    apiForm(editForm, (d) => {
      editCard.hidden = true;
      editing = null;
      say(fill(T.distributor_saved, { code: d.code }));
      load();
    }, (path) => path.replace("{id}", editing.id));
    if (editForm) {
      editForm.querySelector("[data-cancel]").addEventListener("click", () => { editCard.hidden = true; editing = null; });
    }
    load();
  };

  // --- campaigns ----------------------------------------------------------------------------

  function windowText(c) {
    return when(c.starts_at) + " – " + when(c.ends_at);
  }

  const yuanInput = (fen) => (fen === null || fen === undefined ? "" : (fen / 100).toFixed(2));
  const textOf = (n) => (n === null || n === undefined ? "" : String(n));

  // The campaign form: creates a draft (existing null) or edits a campaign (its API answer).
  // An edit sends the stored configuration with what the form shows laid over it, so that what
  // the form does not show (priority, boosts, fraud policy, a prize's image) stays as it is and a
  // running campaign's untouched odds and window compare equal to the published ones.
  function campaignForm(form, existing, onSaved) {
    let base = existing ? JSON.parse(JSON.stringify(existing.config)) : {};
    const f = form.elements;
    const zoneInput = document.getElementById("c-timezone");
    const startsInput = document.getElementById("c-starts");
    const endsInput = document.getElementById("c-ends");
    const skuSelect = document.getElementById("c-skus");
    const regionPick = document.getElementById("c-region-pick");
    const regionText = document.getElementById("c-regions");
    const prizeRows = form.querySelector("#prize-table tbody");
    const template = document.getElementById("prize-row");
    const fallback = document.getElementById("c-fallback");
    const withDraw = document.getElementById("c-with-draw");
    const drawBox = document.getElementById("c-draw");
    let targeting = base.targeting || {};
    let earn = base.earn || {};
    let draw = base.draw || null;

    zoneInput.value = base.timezone || config.timezone || "Asia/Shanghai";
    const now = Date.now();
    startsInput.value = localInput(existing ? Date.parse(base.starts_at) : now, zoneInput.value);
    endsInput.value = localInput(existing ? Date.parse(base.ends_at) : now + 30 * 86400000, zoneInput.value);
    let shown = { starts: startsInput.value, ends: endsInput.value, zone: zoneInput.value };

    api("GET", "/products?limit=200").then((answer) => {
      if (answer.status === 200) fillOptions(skuSelect, answer.data.items, (p) => p.sku, (p) => p.name + " (" + p.sku + ")");
      (targeting.skus || []).forEach((sku) => {
        let option = Array.prototype.find.call(skuSelect.options, (o) => o.value === sku);
        if (!option) option = skuSelect.appendChild(el("option", { value: sku, text: sku }));
        option.selected = true;
      });
    });
    setRegions(form, targeting.regions || [], regionPick, regionText);

    function renumber() {
      const keep = fallback.value;
      Array.prototype.forEach.call(prizeRows.rows, (row, i) => {
        row.querySelectorAll("[data-prize]").forEach((field) => {
          field.setAttribute("data-field", "draw.prizes." + i + "." + field.getAttribute("data-prize"));
        });
        row.setAttribute("data-field", "draw.prizes." + i);
      });
      fallback.querySelectorAll("option:not([value=''])").forEach((o) => o.remove());
      Array.prototype.forEach.call(prizeRows.rows, (row) => {
        const key = row.querySelector('[data-prize="key"]').value.trim();
        const name = row.querySelector('[data-prize="name"]').value.trim();
        if (key) fallback.appendChild(el("option", { value: key, text: name ? name + " (" + key + ")" : key }));
      });
      fallback.value = Array.prototype.some.call(fallback.options, (o) => o.value === keep) ? keep : "";
    }

    function addPrize(values) {
      const row = template.content.firstElementChild.cloneNode(true);
      Object.entries(values || {}).forEach(([name, value]) => { row.querySelector(`[data-prize="${name}"]`).value = value; });
      if (!row.querySelector('[data-prize="key"]').value) row.querySelector('[data-prize="key"]').value = "p" + (prizeRows.rows.length + 1);
      row.querySelector("[data-remove-prize]").addEventListener("click", () => { row.remove(); renumber(); });
      row.querySelectorAll('[data-prize="key"], [data-prize="name"]').forEach((field) => field.addEventListener("input", renumber));
      prizeRows.appendChild(row);
      renumber();
      return row;
    }

    if (existing) {
      f.name.value = base.name || "";
      f.description.value = base.description || "";
      f.points_per_scan.value = textOf(earn.points_per_scan);
      f.first_scan_bonus.value = earn.first_scan_bonus ? String(earn.first_scan_bonus) : "";
      withDraw.checked = !!draw;
      (draw ? draw.prizes : []).forEach((p) => addPrize({
        key: p.key, name: p.name, kind: p.kind, probability: p.probability, stock: textOf(p.stock),
        value: p.kind === "points" ? textOf(p.points) : p.kind === "cash" ? yuanInput(p.amount_fen) : yuanInput(p.value_fen),
        coupon_item_id: textOf(p.coupon_item_id),
      }));
      if (draw) {
        f.budget.value = yuanInput(draw.budget_fen);
        fallback.value = draw.fallback || "";
        f.draws_per_member_per_day.value = textOf(draw.draws_per_member_per_day);
        f.wins_per_member.value = textOf(draw.wins_per_member);
      }
    } else {
      addPrize({ key: "points10", name: config.lang === "en" ? "10 points" : "10 积分", kind: "points", probability: "0.1", value: "10" });
      addPrize({ key: "thanks", name: config.lang === "en" ? "Thanks" : "谢谢参与", kind: "thanks", probability: "0.9" });
      fallback.value = "thanks";
    }
    drawBox.hidden = !withDraw.checked;
    document.getElementById("add-prize").addEventListener("click", () => {
      addPrize().querySelector('[data-prize="name"]').focus();
    });
    withDraw.addEventListener("change", () => { drawBox.hidden = !withDraw.checked; });

    // A prize row over the stored prize of its key: the value fields the kind does not use are
    // cleared, the rest come from the row.
    function prizeOf(row) {
      const v = (name) => row.querySelector(`[data-prize="${name}"]`).value.trim();
      const kind = v("kind");
      const before = (draw && draw.prizes.find((p) => p.key === v("key"))) || {};
      const prize = Object.assign({}, before, { key: v("key"), name: v("name"), kind: kind, probability: v("probability") });
      ["points", "amount_fen", "value_fen", "coupon_item_id"].forEach((name) => { if (name in prize) prize[name] = null; });
      if (v("stock") !== "") prize.stock = toInt(v("stock"));
      else if ("stock" in prize) prize.stock = null;
      const value = v("value");
      if (kind === "points" && value !== "") prize.points = toInt(value);
      if (kind === "cash" && value !== "") prize.amount_fen = toFen(value);
      if ((kind === "goods" || kind === "coupon") && value !== "") prize.value_fen = toFen(value);
      if (kind === "coupon" && v("coupon_item_id") !== "") prize.coupon_item_id = toInt(v("coupon_item_id"));
      return prize;
    }

    function optional(target, name, value) {
      if (value !== "") target[name] = value;
      else if (existing) target[name] = null;
    }

    function spec() {
      const zone = f.timezone.value.trim() || "Asia/Shanghai";
      const body = Object.assign({}, base, {
        name: f.name.value.trim(),
        description: f.description.value.trim(),
        timezone: zone,
        targeting: Object.assign({}, targeting, {
          skus: Array.prototype.filter.call(skuSelect.options, (o) => o.selected).map((o) => o.value),
          regions: Array.from(new Set(pickedRegions(regionPick).concat(splitList(regionText.value)))),
        }),
        earn: Object.assign({}, earn),
      });
      // An untouched window is sent as stored (the form shows minutes only).
      const moved = !existing || zone !== shown.zone;
      if (moved || startsInput.value !== shown.starts) body.starts_at = zonedISO(startsInput.value, zone);
      if (moved || endsInput.value !== shown.ends) body.ends_at = zonedISO(endsInput.value, zone);
      optional(body.earn, "points_per_scan", f.points_per_scan.value.trim() === "" ? "" : toInt(f.points_per_scan.value));
      if (f.first_scan_bonus.value.trim() !== "") body.earn.first_scan_bonus = toInt(f.first_scan_bonus.value);
      else if (existing) body.earn.first_scan_bonus = 0;
      if (withDraw.checked) {
        const next = Object.assign({}, draw || {}, { prizes: Array.prototype.map.call(prizeRows.rows, prizeOf) });
        optional(next, "budget_fen", f.budget.value.trim() === "" ? "" : toFen(f.budget.value));
        optional(next, "fallback", f.fallback.value);
        optional(next, "draws_per_member_per_day", f.draws_per_member_per_day.value.trim() === "" ? "" : toInt(f.draws_per_member_per_day.value));
        optional(next, "wins_per_member", f.wins_per_member.value.trim() === "" ? "" : toInt(f.wins_per_member.value));
        body.draw = next;
      } else if (existing) {
        body.draw = null;
      }
      return body;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      busy(form, true);
      const [method, path] = existing ? ["PUT", "/campaigns/" + existing.id] : ["POST", "/campaigns"];
      api(method, path, spec()).then((answer) => {
        busy(form, false);
        if (answer.status !== 200 && answer.status !== 201) { showProblem(form, answer); return; }
        if (existing) {
          // What was saved is what the next edit starts from.
          existing = answer.data;
          base = JSON.parse(JSON.stringify(existing.config));
          targeting = base.targeting || {};
          earn = base.earn || {};
          draw = base.draw || null;
          shown = { starts: startsInput.value, ends: endsInput.value, zone: zoneInput.value };
        }
        onSaved(answer.data);
      });
    });
  }

  pages.campaigns = function () {
    loadInto("campaigns", "/campaigns?limit=200", (c) => el("tr", { id: "campaign-" + c.id }, [
      el("td", { text: c.id }),
      el("td", {}, [link("/campaigns/" + c.id, c.name, { class: "campaign-link" })]),
      el("td", {}, [badge(c.status)]),
      el("td", { text: windowText(c) }),
      el("td", { text: c.has_draw ? T.yes : T.no }),
      el("td", { text: when(c.created_at) }),
    ]));
    const form = document.getElementById("new-campaign");
    if (!form) return;
    campaignForm(form, null, (c) => {
      say(fill(T.campaign_created, { name: c.name }));
      window.location.assign(PAGES + "/campaigns/" + c.id);
    });
  };

  pages.campaign = function () {
    const id = config.campaign_id;
    const actions = {
      draft: ["schedule"],
      scheduled: ["pause", "end"],
      running: ["pause", "end"],
      paused: ["resume", "end"],
      ended: [],
    };
    const editForm = document.getElementById("edit-campaign");
    let editing = false;

    function show(c) {
      const status = document.getElementById("campaign-status");
      status.replaceWith(Object.assign(badge(c.status), { id: "campaign-status" }));
      document.getElementById("campaign-window").textContent = windowText(c) + " (" + (c.config.timezone || "") + ")";
      const t = c.config.targeting || {};
      const parts = [];
      if (t.skus && t.skus.length) parts.push(T.target_skus + ": " + t.skus.join(", "));
      if (t.regions && t.regions.length) parts.push(T.target_regions + ": " + regionList(t.regions));
      document.getElementById("campaign-targeting").textContent = parts.join(" · ") || T.none;
      const earn = c.config.earn || {};
      document.getElementById("campaign-points").textContent = num(earn.points_per_scan);
      document.getElementById("campaign-seed").textContent = c.seed_hash || T.none;
      document.getElementById("page-title").textContent = c.name;
      ["schedule", "pause", "resume", "end"].forEach((action) => {
        const button = document.getElementById("campaign-" + action);
        if (button) button.hidden = (actions[c.status] || []).indexOf(action) < 0;
      });
      const card = document.getElementById("edit-campaign-card");
      if (card && c.status === "ended") card.hidden = true;
      const hint = document.getElementById("edit-campaign-hint");
      if (hint) hint.textContent = c.status === "draft" ? T.edit_campaign_draft_hint : T.edit_campaign_live_hint;
      if (editForm && !editing) {
        editing = true;
        campaignForm(editForm, c, (saved) => {
          show(saved);
          say(fill(T.campaign_saved, { name: saved.name }));
          figures();
        });
      }
    }

    function figures() {
      loadInto("prize-pools", "/campaigns/" + id + "/prizes", (p) => el("tr", { id: "pool-" + p.key }, [
        el("td", {}, [el("code", { text: p.key })]), el("td", { text: p.name }), el("td", { text: T["kind_" + p.kind] || p.kind }),
        el("td", { text: p.stock === null ? T.unlimited : num(p.stock) }), el("td", { text: num(p.issued) }),
        el("td", { class: "left", text: p.left === null ? T.unlimited : num(p.left) }), el("td", { text: num(p.won) }),
        el("td", { text: yuan(p.unit_value_fen) }),
      ]), T.no_draw);
      api("GET", "/campaigns/" + id + "/budget").then((answer) => {
        const text = document.getElementById("budget-text");
        const bar = document.getElementById("budget-bar");
        if (answer.status !== 200) { text.textContent = T.no_draw; return; }
        const b = answer.data;
        if (b.budget_fen) {
          text.textContent = fill(T.budget_text, { spent: yuan(b.spent_fen), budget: yuan(b.budget_fen), left: yuan(b.left_fen) });
          bar.max = b.budget_fen;
          bar.value = b.spent_fen;
          bar.hidden = false;
        } else {
          text.textContent = fill(T.budget_none, { spent: yuan(b.spent_fen) });
        }
      });
    }

    api("GET", "/campaigns/" + id).then((answer) => {
      if (answer.status === 200) show(answer.data);
      else say(problemText(answer), "error");
    });
    figures();
    document.querySelectorAll("#campaign-actions [data-action]").forEach((button) => {
      button.addEventListener("click", () => {
        const action = button.getAttribute("data-action");
        if (action === "end" && !window.confirm(T.confirm_end)) return;
        button.disabled = true;
        api("POST", "/campaigns/" + id + "/" + action, {}).then((answer) => {
          button.disabled = false;
          if (answer.status === 200) {
            show(answer.data);
            say(fill(T.campaign_now, { status: T["st_" + answer.data.status] || answer.data.status }));
            figures();
          } else {
            say(problemText(answer), "error");
          }
        });
      });
    });
  };

  pages.reviews = function () {
    function decide(r, decision, row) {
      const note = row.querySelector("input[name=note]");
      row.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      api("POST", "/reviews/" + r.id, { decision: decision, note: note ? note.value.trim() : "" }).then((answer) => {
        row.querySelectorAll("button").forEach((b) => { b.disabled = false; });
        if (answer.status === 200) {
          const table = document.getElementById("reviews");
          row.remove();
          if (!table.tBodies[0].rows.length) rows(table, [], null, T.queue_empty);
          say(fill(T.decided, { id: r.id, decision: T[decision] }));
        } else {
          say(problemText(answer), "error");
        }
      });
    }
    loadInto("reviews", "/reviews?limit=200", (r) => {
      const row = el("tr", { id: "review-" + r.id });
      const draw = r.draw ? (r.draw.prize_key || r.draw.outcome) + " · #" + r.draw.campaign_id : T.none;
      [
        el("td", { text: r.id }),
        el("td", {}, [can("members") ? link("/members/" + r.member_id, "#" + r.member_id) : "#" + r.member_id]),
        el("td", { text: r.batch_id + " / " + r.serial }),
        el("td", { text: num(r.points) }),
        el("td", { text: r.reasons.join(", ") }),
        el("td", { text: regionName(r.region) }),
        el("td", { text: draw }),
        el("td", { text: when(r.created_at) }),
      ].forEach((cell) => row.appendChild(cell));
      if (can("campaigns_write")) {
        row.appendChild(el("td", { class: "actions" }, [
          el("input", { name: "note", class: "short", maxlength: 500, placeholder: T.note, "aria-label": T.note }),
          el("button", { type: "button", class: "small", onclick: () => decide(r, "release", row) }, [T.release]),
          el("button", { type: "button", class: "small secondary", onclick: () => decide(r, "deny", row) }, [T.deny]),
          el("button", { type: "button", class: "small danger", onclick: () => decide(r, "claw_back", row) }, [T.claw_back]),
        ]));
      }
      return row;
    }, T.queue_empty);
  };

  // --- members ------------------------------------------------------------------------------

  pages.members = function () {
    const tiers = {};
    const form = document.getElementById("member-search");
    function render(mb) {
      return el("tr", { id: "member-" + mb.id }, [
        el("td", { text: mb.id }), el("td", { class: "phone", text: mb.phone || T.none }),
        el("td", { text: mb.nickname || T.none }), el("td", { text: tiers[mb.tier_id] || T.none }),
        el("td", { text: num(mb.growth) }), el("td", { text: regionName(mb.region) }),
        el("td", { text: when(mb.created_at) }), el("td", { text: when(mb.last_active_at) }),
        el("td", {}, [link("/members/" + mb.id, T.open_360, { class: "open-member", id: "open-member-" + mb.id })]),
      ]);
    }
    function search(phone) {
      clearErrors(form);
      const path = "/members?limit=50" + (phone ? "&phone=" + encodeURIComponent(phone) : "");
      return api("GET", path).then((answer) => {
        if (answer.status !== 200) { showProblem(form, answer); return; }
        const table = document.getElementById("members");
        rows(table, answer.data.items, render, phone ? T.no_member : T.empty);
        table.setAttribute("data-loaded", String(answer.data.items.length));
      });
    }
    api("GET", "/tiers").then((answer) => {
      if (answer.status === 200) answer.data.items.forEach((t) => { tiers[t.id] = config.lang === "en" && t.name_en ? t.name_en : t.name; });
      search("");
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      search(form.elements.phone.value.trim());
    });
    document.getElementById("latest-members").addEventListener("click", () => {
      form.elements.phone.value = "";
      search("");
    });
  };

  pages.member = function () {
    const id = config.member_id;
    const set = (elId, text) => { document.getElementById(elId).textContent = text === null || text === undefined || text === "" ? T.none : text; };
    api("GET", "/members/" + id).then((answer) => {
      if (answer.status !== 200) { say(problemText(answer), "error"); return; }
      const mb = answer.data;
      set("member-phone", mb.phone);
      set("member-nickname", mb.nickname);
      set("member-status", mb.status === "erased" ? T.erased : T["member_" + mb.status] || mb.status);
      set("member-tier", mb.tier ? mb.tier.name : null);
      set("member-growth", num(mb.growth));
      set("member-region", mb.region ? regionName(mb.region) : null);
      set("member-source", [mb.source, mb.channel].filter(Boolean).join(" · "));
      set("member-referral", mb.referral_code ? mb.referral_code + " · " + T.invited + " " + mb.invited : null);
      set("member-rfm", mb.rfm ? (mb.rfm[config.lang === "en" ? "label_en" : "label_zh"] || mb.rfm.segment || "") : null);
      set("member-tags", (mb.tags || []).map((t) => t.name).join(", "));
      set("member-created", when(mb.created_at));
      set("member-active", when(mb.last_active_at));
      set("points-active", num(mb.points.active));
      set("points-pending", num(mb.points.pending));
      set("points-expiring", num(mb.points.expiring));
      set("points-next-expiry", mb.points.next_expiry ? String(mb.points.next_expiry).slice(0, 10) : null);
      const history = document.getElementById("member-history");
      rows(history, mb.recent_entries || [], (e) => el("tr", { id: "entry-" + e.id }, [
        el("td", { text: when(e.at) }), el("td", { text: T["entry_" + e.kind] || e.kind }),
        el("td", { class: e.points < 0 ? "neg" : "pos", text: (e.points > 0 ? "+" : "") + num(e.points) }),
        el("td", { text: e.reason || T.none }),
      ]));
      history.setAttribute("data-loaded", String((mb.recent_entries || []).length));
      rows(document.getElementById("member-scans"), mb.recent_scans || [], (s) => el("tr", {}, [
        el("td", { text: when(s.at) }), el("td", { text: s.batch_id }), el("td", { text: s.serial }), el("td", { text: num(s.points) }),
      ]));
      rows(document.getElementById("member-tier-changes"), mb.tier_changes || [], (c) => el("tr", {}, [
        el("td", { text: when(c.at) }),
        el("td", { text: [c.from_tier, c.to_tier].filter((x) => x !== undefined).map((x) => (x && x.name) || x || T.none).join(" → ") || T.none }),
        el("td", { text: c.reason || T.none }),
      ]));
      rows(document.getElementById("member-orders"), mb.recent_orders || [], (o) => el("tr", {}, [
        el("td", { text: o.id }), el("td", { text: o.status }), el("td", { text: num(o.points) }), el("td", { text: when(o.created_at) }),
      ]));
      const reveal = document.getElementById("reveal-phone");
      if (reveal && mb.phone) reveal.hidden = false;
      const note = document.getElementById("reveal-note");
      if (note && mb.phone) note.hidden = false;
    });
    const reveal = document.getElementById("reveal-phone");
    if (reveal) {
      reveal.addEventListener("click", () => {
        api("GET", "/members/" + id + "/phone").then((answer) => {
          if (answer.status === 200) {
            set("member-phone", answer.data.phone);
            reveal.hidden = true;
          } else {
            say(problemText(answer), "error");
          }
        });
      });
    }
  };

  pages.loyalty = function () {
    function tiers() {
      loadInto("tiers", "/tiers", (t) => el("tr", { id: "tier-" + t.id }, [
        el("td", { text: t.rank }), el("td", { text: config.lang === "en" && t.name_en ? t.name_en : t.name }),
        el("td", { text: num(t.min_growth) }), el("td", { text: num(t.min_scans) }), el("td", { text: num(t.min_spend) }),
        el("td", { text: T["qualify_" + t.qualify] || t.qualify }), el("td", { text: num(t.upgrade_gift_points) }),
        el("td", { text: num(t.members) }),
      ]));
    }
    // Stock is added (or, negative, taken away) atomically by the API; unlimited stock has none.
    function restockForm(i) {
      const form = el("form", { class: "restock", id: "restock-" + i.id, novalidate: true }, [
        el("div", {}, [el("input", { name: "add", type: "number", class: "short", required: true, "aria-label": fill(T.add_stock_of, { name: i.name }) })]),
        el("button", { type: "submit", class: "small" }, [T.add_stock]),
      ]);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        clearErrors(form);
        busy(form, true);
        api("POST", "/catalogue/items/" + i.id + "/stock", { add: toInt(form.elements.add.value) }).then((answer) => {
          busy(form, false);
          if (answer.status !== 200) { showProblem(form, answer); return; }
          say(fill(T.stock_added, { name: answer.data.name, stock: num(answer.data.stock) }));
          items();
        });
      });
      return form;
    }

    function items() {
      loadInto("catalogue", "/catalogue/items?limit=200", (i) => {
        const toggle = can("members_write")
          ? el("td", { class: "actions" }, [el("button", {
            type: "button", class: "small secondary", id: "toggle-item-" + i.id,
            onclick: () => api("PATCH", "/catalogue/items/" + i.id, { active: !i.active }).then((answer) => {
              if (answer.status === 200) items(); else say(problemText(answer), "error");
            }),
          }, [i.active ? T.take_off : T.put_on]), i.stock === null ? null : restockForm(i)])
          : null;
        return el("tr", { id: "item-" + i.id }, [
          el("td", { text: i.id }), el("td", { text: config.lang === "en" && i.name_en ? i.name_en : i.name }),
          el("td", { text: T["item_" + i.kind] || i.kind }), el("td", { text: num(i.points_cost) }),
          el("td", { text: i.stock === null ? T.unlimited : num(i.stock) }), el("td", { text: yuan(i.face_value_fen) }),
          el("td", { text: i.active ? T.on_sale : T.off_sale }), toggle,
        ]);
      });
    }
    tiers();
    items();
    const tierForm = document.getElementById("new-tier");
    apiForm(tierForm, (t) => { tierForm.reset(); say(fill(T.tier_created, { name: t.name })); tiers(); });
    const itemForm = document.getElementById("new-item");
    apiForm(itemForm, (i) => { itemForm.reset(); say(fill(T.item_created, { name: i.name })); items(); });
  };

  // --- alert rules --------------------------------------------------------------------------

  pages.alert_rules = function () {
    const form = document.getElementById("rule-form");
    const secretBox = document.getElementById("rule-secret");
    let editing = null;
    const ruleNames = {};

    function showSecret(secret) {
      if (!secret) return;
      secretBox.textContent = T.secret_once + "\n" + secret;
      secretBox.hidden = false;
    }

    function reset() {
      editing = null;
      form.reset();
      clearErrors(form);
      document.getElementById("rule-form-title").textContent = document.getElementById("rule-form-title").getAttribute("data-new");
      const save = document.getElementById("save-rule");
      save.textContent = save.getAttribute("data-create");
      document.getElementById("rule-cancel").hidden = true;
      document.getElementById("rotate-wrap").hidden = true;
    }

    function edit(r) {
      editing = r;
      clearErrors(form);
      form.elements.name.value = r.name;
      form.querySelectorAll('input[name="kinds"]').forEach((box) => { box.checked = r.kinds.indexOf(box.value) >= 0; });
      form.elements.min_count.value = r.min_count;
      form.elements.min_score.value = r.min_score;
      form.elements.channel.value = r.channel;
      form.elements.target.value = r.target;
      form.elements.enabled.checked = r.enabled;
      document.getElementById("rule-form-title").textContent = fill(T.edit_rule, { name: r.name });
      const save = document.getElementById("save-rule");
      save.textContent = save.getAttribute("data-save");
      document.getElementById("rule-cancel").hidden = false;
      document.getElementById("rotate-wrap").hidden = r.channel !== "webhook";
      document.getElementById("rule-rotate").checked = false;
      form.elements.name.focus();
    }

    function test(r, button) {
      button.disabled = true;
      api("POST", "/alert-rules/" + r.id + "/test", {}).then((answer) => {
        button.disabled = false;
        if (answer.status !== 200) { say(problemText(answer), "error"); return; }
        const n = answer.data;
        const status = T["n_" + n.status] || n.status;
        if (n.status === "sent") say(fill(T.test_sent, { status: status }));
        else say(fill(T.test_failed, { status: status, error: n.last_error || T.none }), "error");
        notifications();
      });
    }

    function remove(r) {
      if (!window.confirm(T.confirm_delete)) return;
      api("DELETE", "/alert-rules/" + r.id).then((answer) => {
        if (answer.status === 204 || answer.status === 200) {
          say(fill(T.rule_deleted, { name: r.name }));
          if (editing && editing.id === r.id) reset();
          load();
        } else {
          say(problemText(answer), "error");
        }
      });
    }

    function render(r) {
      ruleNames[r.id] = r.name;
      const cells = [
        el("td", { class: "rule-name", text: r.name }),
        el("td", { text: r.kinds.map((k) => T["kind_" + k] || k).join("、") }),
        el("td", { text: "≥ " + r.min_count + " · ≥ " + r.min_score }),
        el("td", { text: T["channel_" + r.channel] || r.channel }),
        el("td", { class: "target", text: r.target }),
        el("td", {}, [el("span", { class: "badge " + (r.enabled ? "st-running" : "st-ended"), text: r.enabled ? T.enabled : T.disabled })]),
      ];
      if (can("alert_rules")) {
        const testButton = el("button", { type: "button", class: "small", id: "test-rule-" + r.id }, [T.send_test]);
        testButton.addEventListener("click", () => test(r, testButton));
        cells.push(el("td", { class: "actions" }, [
          el("button", { type: "button", class: "small secondary", id: "edit-rule-" + r.id, onclick: () => edit(r) }, [T.edit]),
          testButton,
          el("button", { type: "button", class: "small danger", id: "delete-rule-" + r.id, onclick: () => remove(r) }, [T.delete]),
        ]));
      }
      return el("tr", { id: "rule-" + r.id }, cells);
    }

    function notifications() {
      loadInto("notifications", "/alert-notifications?limit=50", (n) => el("tr", { id: "notification-" + n.id }, [
        el("td", { text: n.id }), el("td", { text: ruleNames[n.rule_id] || "#" + n.rule_id }),
        el("td", {}, [el("span", { class: "badge n-" + n.status, text: T["n_" + n.status] || n.status })]),
        el("td", { text: n.attempts }), el("td", { class: "error-text", text: n.last_error || T.none }),
        el("td", { text: when(n.created_at) }), el("td", { text: when(n.sent_at) }),
      ]));
    }

    function load() {
      return loadInto("alert-rules", "/alert-rules", render).then(notifications);
    }

    if (form) {
      form.elements.channel.addEventListener("change", () => {
        document.getElementById("rotate-wrap").hidden = !editing || form.elements.channel.value !== "webhook";
      });
      document.getElementById("rule-cancel").addEventListener("click", reset);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const f = form.elements;
        const body = {
          name: f.name.value.trim(),
          kinds: Array.prototype.filter.call(form.querySelectorAll('input[name="kinds"]'), (b) => b.checked).map((b) => b.value),
          min_count: toInt(f.min_count.value || "1"),
          min_score: f.min_score.value.trim() === "" ? 1 : Number(f.min_score.value),
          channel: f.channel.value,
          target: f.target.value.trim(),
          enabled: f.enabled.checked,
        };
        const rotate = editing && document.getElementById("rule-rotate").checked;
        const method = editing ? "PUT" : "POST";
        const path = editing ? "/alert-rules/" + editing.id + (rotate ? "?rotate_secret=true" : "") : "/alert-rules";
        busy(form, true);
        secretBox.hidden = true;
        api(method, path, body).then((answer) => {
          busy(form, false);
          if (answer.status === 200 || answer.status === 201) {
            const created = !editing;
            reset();
            say(fill(created ? T.rule_created : T.rule_saved, { name: answer.data.name }));
            showSecret(answer.data.secret);
            load();
          } else {
            showProblem(form, answer);
          }
        });
      });
    }
    load();
  };

  pages.api_keys = function () {
    localTimes();
  };

  const start = pages[config.page];
  if (start) start();
})();

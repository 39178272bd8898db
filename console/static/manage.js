/* Yima console management pages: read and write /api/v1 with the session cookie and the
   session's CSRF token (X-CSRF-Token), show the API's 422 field errors next to the fields in the
   reader's language, poll print-file jobs for their progress. The page hands over its settings
   and texts as JSON in #manage[data-config]: no inline script. No framework, no build. */
(function () {
  "use strict";
  const root = document.getElementById("manage");
  if (!root) return;
  const config = JSON.parse(root.getAttribute("data-config"));
  const T = config.texts;
  const API = document.body.getAttribute("data-api");
  const meta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = meta ? meta.getAttribute("content") : "";
  const LOCALE = config.lang === "en" ? "en-US" : "zh-CN";
  const PAGES = config.pages || "";
  const can = (permission) => config.can.indexOf(permission) >= 0;
  const statusBox = document.getElementById("page-status");

  // --- small helpers ------------------------------------------------------------------------

  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, (m, key) => (key in values ? values[key] : m));
  }

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

  function say(text, kind) {
    if (!statusBox) return;
    statusBox.textContent = text;
    statusBox.className = "msg " + (kind || "ok");
    statusBox.hidden = !text;
  }

  /* Resolves {status, data}; status 0 when the network failed. */
  function api(method, path, payload) {
    const init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = CSRF;
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(API + path, init).then(
      (response) => response.json().then(
        (data) => ({ status: response.status, data: data }),
        () => ({ status: response.status, data: {} })
      ),
      () => ({ status: 0, data: {} })
    );
  }

  // The API's words for a field error, in the reader's language when we know them.
  const PATTERNS = [
    [/^Input should be greater than or equal to (-?[\d.]+)$/, "ge"],
    [/^Input should be less than or equal to (-?[\d.]+)$/, "le"],
    [/^Input should be greater than (-?[\d.]+)$/, "gt"],
    [/^String should have at least (\d+) characters?$/, "min_len"],
    [/^String should have at most (\d+) characters?$/, "max_len"],
    [/^String should match pattern/, "pattern"],
    [/^Input should be '[^']*'(, '[^']*')* or '[^']*'$/, "choice"],
    [/^Input should be a valid date\b/, "date"],
    [/^Input should be a valid datetime\b/, "datetime"],
  ];

  function errorText(message) {
    const known = T["apierr_" + message];
    if (known) return known;
    if (config.lang !== "en") {
      for (const [pattern, key] of PATTERNS) {
        const found = pattern.exec(message);
        if (found && T["apipat_" + key]) return fill(T["apipat_" + key], { n: found[1] });
      }
      return fill(T.field_error, { detail: message });
    }
    return message;
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
    const errors = (answer.status === 422 && answer.data && answer.data.errors) || {};
    const unplaced = [];
    Object.entries(errors).forEach(([key, message]) => {
      const slot = form.querySelector(`[data-error-for="${fieldKey(key).replace(/"/g, "")}"]`);
      const field = slot ? null : fieldOf(form, key);
      const text = errorText(message);
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
    const summary = Object.keys(errors).length && !unplaced.length ? T.form_invalid :
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
      const raw = field.value.trim();
      if (type === "list") { out[name] = splitList(raw); return; }
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
        el("td", { class: "regions", text: d.regions.join(", ") || T.none }),
        el("td", { class: "regions", text: d.authorised_regions.join(", ") || T.none }),
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
      editForm.elements.regions.value = d.regions.join("\n");
      editForm.elements.contact.value = d.contact || "";
      editForm.elements.active.checked = d.active;
      clearErrors(editForm);
      editForm.elements.regions.focus();
    }

    const form = document.getElementById("new-distributor");
    apiForm(form, (d) => {
      form.reset();
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
    const zoneInput = document.getElementById("c-timezone");
    zoneInput.value = config.timezone || "Asia/Shanghai";
    const now = Date.now();
    document.getElementById("c-starts").value = localInput(now, zoneInput.value);
    document.getElementById("c-ends").value = localInput(now + 30 * 86400000, zoneInput.value);

    api("GET", "/products?limit=200").then((answer) => {
      const select = document.getElementById("c-skus");
      if (answer.status === 200) fillOptions(select, answer.data.items, (p) => p.sku, (p) => p.name + " (" + p.sku + ")");
    });

    const prizeRows = document.querySelector("#prize-table tbody");
    const template = document.getElementById("prize-row");
    const fallback = document.getElementById("c-fallback");
    const withDraw = document.getElementById("c-with-draw");
    const drawBox = document.getElementById("c-draw");

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
      row.querySelectorAll('[data-prize="key"], [data-prize="name"]').forEach((f) => f.addEventListener("input", renumber));
      prizeRows.appendChild(row);
      renumber();
      return row;
    }

    addPrize({ key: "points10", name: config.lang === "en" ? "10 points" : "10 积分", kind: "points", probability: "0.1", value: "10" });
    addPrize({ key: "thanks", name: config.lang === "en" ? "Thanks" : "谢谢参与", kind: "thanks", probability: "0.9" });
    fallback.value = "thanks";
    document.getElementById("add-prize").addEventListener("click", () => {
      addPrize().querySelector('[data-prize="name"]').focus();
    });
    withDraw.addEventListener("change", () => { drawBox.hidden = !withDraw.checked; });

    function prizeOf(row) {
      const v = (name) => row.querySelector(`[data-prize="${name}"]`).value.trim();
      const kind = v("kind");
      const prize = { key: v("key"), name: v("name"), kind: kind, probability: v("probability") };
      if (v("stock") !== "") prize.stock = toInt(v("stock"));
      const value = v("value");
      if (kind === "points" && value !== "") prize.points = toInt(value);
      if (kind === "cash" && value !== "") prize.amount_fen = toFen(value);
      if ((kind === "goods" || kind === "coupon") && value !== "") prize.value_fen = toFen(value);
      if (kind === "coupon" && v("coupon_item_id") !== "") prize.coupon_item_id = toInt(v("coupon_item_id"));
      return prize;
    }

    function spec() {
      const f = form.elements;
      const zone = f.timezone.value.trim() || "Asia/Shanghai";
      const body = {
        name: f.name.value.trim(),
        description: f.description.value.trim(),
        starts_at: zonedISO(f.starts_at.value, zone),
        ends_at: zonedISO(f.ends_at.value, zone),
        timezone: zone,
        targeting: {
          skus: Array.prototype.filter.call(f.skus.options, (o) => o.selected).map((o) => o.value),
          regions: splitList(f.regions.value),
        },
        earn: {},
      };
      if (f.points_per_scan.value.trim() !== "") body.earn.points_per_scan = toInt(f.points_per_scan.value);
      if (f.first_scan_bonus.value.trim() !== "") body.earn.first_scan_bonus = toInt(f.first_scan_bonus.value);
      if (withDraw.checked) {
        const draw = { prizes: Array.prototype.map.call(prizeRows.rows, prizeOf) };
        if (f.budget.value.trim() !== "") draw.budget_fen = toFen(f.budget.value);
        if (f.fallback.value) draw.fallback = f.fallback.value;
        if (f.draws_per_member_per_day.value.trim() !== "") draw.draws_per_member_per_day = toInt(f.draws_per_member_per_day.value);
        if (f.wins_per_member.value.trim() !== "") draw.wins_per_member = toInt(f.wins_per_member.value);
        body.draw = draw;
      }
      return body;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, true);
      api("POST", "/campaigns", spec()).then((answer) => {
        busy(form, false);
        if (answer.status === 201) {
          clearErrors(form);
          say(fill(T.campaign_created, { name: answer.data.name }));
          window.location.assign(PAGES + "/campaigns/" + answer.data.id);
        } else {
          showProblem(form, answer);
        }
      });
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

    function show(c) {
      const status = document.getElementById("campaign-status");
      status.replaceWith(Object.assign(badge(c.status), { id: "campaign-status" }));
      document.getElementById("campaign-window").textContent = windowText(c) + " (" + (c.config.timezone || "") + ")";
      const t = c.config.targeting || {};
      const parts = [];
      if (t.skus && t.skus.length) parts.push(T.target_skus + ": " + t.skus.join(", "));
      if (t.regions && t.regions.length) parts.push(T.target_regions + ": " + t.regions.join(", "));
      document.getElementById("campaign-targeting").textContent = parts.join(" · ") || T.none;
      const earn = c.config.earn || {};
      document.getElementById("campaign-points").textContent = num(earn.points_per_scan);
      document.getElementById("campaign-seed").textContent = c.seed_hash || T.none;
      ["schedule", "pause", "resume", "end"].forEach((action) => {
        const button = document.getElementById("campaign-" + action);
        if (button) button.hidden = (actions[c.status] || []).indexOf(action) < 0;
      });
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
        el("td", { text: r.region || T.none }),
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
        el("td", { text: num(mb.growth) }), el("td", { text: mb.region || T.none }),
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
      set("member-region", mb.region);
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
    function items() {
      loadInto("catalogue", "/catalogue/items?limit=200", (i) => {
        const toggle = can("members_write")
          ? el("td", {}, [el("button", {
            type: "button", class: "small secondary", id: "toggle-item-" + i.id,
            onclick: () => api("PATCH", "/catalogue/items/" + i.id, { active: !i.active }).then((answer) => {
              if (answer.status === 200) items(); else say(problemText(answer), "error");
            }),
          }, [i.active ? T.take_off : T.put_on])])
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

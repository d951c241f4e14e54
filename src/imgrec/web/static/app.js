// imgrec's page: send images (files or folders, any number), watch them get labelled,
// download the results; a dashboard of the last minutes. Everything it shows from the
// service or from file names is set as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const IN_FLIGHT = 3; // requests uploading at once
const state = { limits: null, items: [], batches: [], started: 0, keyRefused: false };

// --- talking to the service: retried while it restarts, never a prompt -----------------

class KeyRefused extends Error {}

function apiKey() { return localStorage.getItem("imgrec-key") || ""; }

function say(text) { $("message").textContent = text; }

// One call; `options.body` may be a function that makes a fresh body for each attempt.
async function api(path, options = {}) {
  let pause = 500;
  for (;;) {
    let resp;
    try {
      const body = typeof options.body === "function" ? options.body() : options.body;
      const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
      resp = await fetch(path, { ...options, body, headers });
    } catch (err) { // the service is restarting or out of reach: keep trying
      say("The service is not answering; retrying…");
      await sleep(pause); pause = Math.min(8000, pause * 2); continue;
    }
    if (resp.status === 401) { keyRefused(); throw new KeyRefused(); }
    if ([429, 502, 503, 504].includes(resp.status)) {
      const after = Number(resp.headers.get("Retry-After")) || pause / 1000;
      say(resp.status === 429 ? "The service is busy; retrying shortly…" : "The service is unavailable; retrying…");
      await sleep(Math.min(60, after) * 1000); pause = Math.min(8000, pause * 2); continue;
    }
    if ($("message").textContent.endsWith("retrying…") || $("message").textContent.endsWith("retrying shortly…")) say("");
    return resp;
  }
}

// --- the API key: a field, never a prompt ------------------------------------------------

function keyRefused() {
  state.keyRefused = true;
  const note = $("key-note");
  note.textContent = apiKey() ? "This key was refused: enter the right one." : "This service needs an API key.";
  note.className = "bad";
  $("key-panel").classList.add("needed");
  say("The service needs a valid API key: enter it above, then try again.");
}

function showKey() {
  const note = $("key-note");
  note.className = "";
  note.textContent = apiKey() ? "A key is set (kept in this browser)." : (state.limits && state.limits.api_key_required
    ? "This service needs an API key." : "No key set.");
  $("key-panel").classList.toggle("needed", Boolean(state.limits && state.limits.api_key_required && !apiKey()));
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("key").value.trim();
  if (value) localStorage.setItem("imgrec-key", value);
  $("key").value = ""; state.keyRefused = false; say(""); showKey(); refreshStatus();
});
$("key-forget").addEventListener("click", () => { localStorage.removeItem("imgrec-key"); showKey(); });

// --- items: one card per file, in upload order --------------------------------------------

function newItem(name, file) {
  const li = document.createElement("li");
  li.className = "card pending";
  const pic = file ? document.createElement("img") : document.createElement("div");
  if (file) { pic.src = URL.createObjectURL(file); pic.alt = name; } else { pic.className = "noimg"; pic.textContent = "no preview"; }
  const t = document.createElement("div"); t.className = "t";
  const label = document.createElement("div"); label.className = "label"; label.textContent = "waiting…";
  const nameEl = document.createElement("div"); nameEl.className = "name"; nameEl.textContent = name; nameEl.title = name;
  const detail = document.createElement("div");
  t.append(label, nameEl, detail); li.append(pic, t);
  const item = { name, file, li, pic, label, detail, result: null, error: null, order: state.items.length };
  state.items.push(item); $("grid").append(li); $("tools").hidden = false;
  return item;
}

function settle(item, result) {
  if (item.result || item.error) return;
  if (result.error) { item.error = result.error; } else { item.result = result; }
  item.li.classList.remove("pending");
  item.li.classList.toggle("failed", Boolean(item.error));
  item.detail.replaceChildren();
  if (item.error) {
    item.label.textContent = "error";
    const e = document.createElement("div"); e.className = "err"; e.textContent = item.error; item.detail.append(e);
  } else {
    item.label.textContent = result.label;
    if (item.file) item.pic.alt = `${item.name}: ${result.label}`;
    const top = document.createElement("ol"); top.className = "top"; top.setAttribute("aria-label", "top five");
    for (const g of result.top || []) {
      const row = document.createElement("li");
      const name = document.createElement("span"); name.textContent = g.label;
      const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = (100 * g.score).toFixed(1) + "%";
      const bar = document.createElement("span"); bar.className = "bar";
      const fill = document.createElement("span"); fill.style.width = (100 * g.score).toFixed(1) + "%"; bar.append(fill);
      row.append(name, pct, bar); top.append(row);
    }
    item.detail.append(top);
  }
  progress(); arrange();
}

function waitingFor(item, status) {
  if (!item.result && !item.error) item.label.textContent = status === "running" ? "classifying…" : "queued…";
}

// --- progress, in words for everyone and for screen readers -------------------------------

let lastAnnounced = 0;
function progress() {
  const total = state.items.length, done = state.items.filter((i) => i.result || i.error).length;
  const failed = state.items.filter((i) => i.error).length;
  const secs = (Date.now() - state.started) / 1000, rate = secs > 0 ? done / secs : 0;
  const eta = rate > 0 && done < total ? ` · about ${Math.ceil((total - done) / rate)} s left` : "";
  const text = `${done} of ${total} done · ${rate.toFixed(1)} images/s${eta}${failed ? ` · ${failed} failed` : ""}`;
  $("progress-box").hidden = false;
  $("progress").max = total || 1; $("progress").value = done; $("progress-text").textContent = text;
  if (done === total || Date.now() - lastAnnounced > 5000) {
    lastAnnounced = Date.now();
    $("announce").textContent = done === total ? `All ${total} done: ${total - failed} labelled, ${failed} failed.` : text;
  }
}

// --- sending: split to the service's limits, a few requests at a time ---------------------

async function limits() {
  if (!state.limits) {
    state.limits = await (await api("/api/v1/limits")).json();
    const l = state.limits;
    $("limits-note").textContent = `Any number of images: they go ${l.max_files_per_request} at a time, up to ` +
      `${(l.max_upload_bytes / 1048576).toFixed(0)} MB a request. ${l.formats.join(", ")}.`;
    showKey();
  }
  return state.limits;
}

function split(items, l) {
  const groups = []; let group = [], size = 0;
  for (const it of items) {
    const own = it.file.size + 300 + it.name.length;
    if (own > l.max_upload_bytes) { settle(it, { error: `${it.name}: over the upload limit of ${l.max_upload_bytes} bytes` }); continue; }
    if (group.length && (group.length >= l.max_files_per_request || size + own > l.max_upload_bytes)) { groups.push(group); group = []; size = 0; }
    group.push(it); size += own;
  }
  if (group.length) groups.push(group);
  return groups;
}

async function send(files) {
  if (!files.length) return;
  const l = await limits();
  if (!state.items.length || state.items.every((i) => i.result || i.error)) state.started = Date.now();
  const session = { ids: [], count: files.length, at: Date.now() };
  const items = files.map((f) => newItem(f.webkitRelativePath || f.relPath || f.name, f));
  items.filter((it) => it.file.size === 0).forEach((it) => settle(it, { error: `${it.name}: the file is empty` }));
  progress();
  const queue = split(items.filter((it) => it.file.size > 0), l);
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (queue.length) await sendGroup(queue.shift(), session);
  }));
}

async function sendGroup(group, session) {
  const form = () => { const f = new FormData(); group.forEach((it) => f.append("file", it.file, it.name)); return f; };
  let resp, body;
  try { resp = await api("/api/v1/jobs", { method: "POST", body: form }); body = await resp.json(); }
  catch (err) { if (err instanceof KeyRefused) return group.forEach((it) => settle(it, { error: "the API key was refused" })); throw err; }
  if (!resp.ok) { // the whole request refused: each file still gets its own reason
    const each = body.files || [];
    return group.forEach((it, i) => settle(it, { error: (each[i] && each[i].error) || body.detail }));
  }
  remember(body.batch_id, session);
  body.jobs.forEach((job, i) => (job.status === "rejected" ? settle(group[i], { error: job.error }) : waitingFor(group[i], "queued")));
  await watch(body.batch_id, group);
}

async function watch(batchId, items) {
  let pause = 300;
  for (;;) {
    let view;
    try {
      const resp = await api(`/api/v1/batches/${batchId}`);
      if (resp.status === 404 || resp.status === 410) {
        const why = (await resp.json()).detail;
        return items.forEach((it) => settle(it, { error: why }));
      }
      view = await resp.json();
    } catch (err) { if (err instanceof KeyRefused) return; throw err; }
    view.results.forEach((r, i) => (r.label || r.error ? settle(items[i], r) : waitingFor(items[i], r.status)));
    if (view.status === "done") return;
    await sleep(pause); pause = Math.min(2000, pause * 1.3);
  }
}

// --- surviving reloads: batch ids in the URL, and a list of recent uploads ---------------

function remember(batchId, session) {
  state.batches.push(batchId); session.ids.push(batchId);
  const url = new URL(location.href); url.searchParams.set("batches", state.batches.join(","));
  history.replaceState(null, "", url);
  const recent = JSON.parse(localStorage.getItem("imgrec-recent") || "[]").filter((r) => r.at !== session.at);
  recent.unshift({ ...session }); localStorage.setItem("imgrec-recent", JSON.stringify(recent.slice(0, 20)));
  showRecent();
}

function showRecent() {
  const list = $("recent"); list.replaceChildren();
  for (const r of JSON.parse(localStorage.getItem("imgrec-recent") || "[]")) {
    const li = document.createElement("li"), a = document.createElement("a");
    a.href = `?batches=${r.ids.join(",")}#classify`;
    a.textContent = `${new Date(r.at).toLocaleString()}: ${r.count} images`;
    li.append(a); list.append(li);
  }
}

async function restore(ids) {
  state.started = Date.now();
  await Promise.all(ids.map(async (id) => {
    let view;
    try {
      const resp = await api(`/api/v1/batches/${id}`);
      if (!resp.ok) { say(`Batch ${id}: ${(await resp.json()).detail}`); return; }
      view = await resp.json();
    } catch (err) { if (err instanceof KeyRefused) return; throw err; }
    state.batches.push(id);
    const items = view.results.map((r) => newItem(r.filename || "upload", null));
    view.results.forEach((r, i) => (r.label || r.error ? settle(items[i], r) : waitingFor(items[i], r.status)));
    progress();
    if (view.status !== "done") await watch(id, items);
  }));
}

// --- arranging: filter and sort the cards ---------------------------------------------------

function arrange() {
  const words = $("filter").value.trim().toLowerCase(), errorsOnly = $("errors-only").checked, how = $("sort").value;
  const score = (i) => (i.result ? i.result.score : -1);
  const items = [...state.items].sort((a, b) => (
    how === "label" ? ((a.result && a.result.label) || "~").localeCompare((b.result && b.result.label) || "~") || a.order - b.order
      : how === "score-desc" ? score(b) - score(a) : how === "score-asc" ? score(a) - score(b) : a.order - b.order));
  for (const it of items) {
    const text = `${it.name} ${it.result ? it.result.label : ""} ${it.error || ""}`.toLowerCase();
    it.li.hidden = (errorsOnly && !it.error) || (words && !text.includes(words));
    $("grid").append(it.li);
  }
}
["filter", "sort", "errors-only"].forEach((id) => $(id).addEventListener("input", arrange));

// --- downloads: the service's own CSV and JSON, batch after batch --------------------------

async function download(format) {
  const parts = [];
  for (const id of state.batches) parts.push(await (await api(`/api/v1/batches/${id}?format=${format}`)).text());
  let text, type;
  if (format === "csv") {
    text = parts.map((p, i) => (i ? p.slice(p.indexOf("\n") + 1) : p)).join(""); type = "text/csv";
  } else {
    text = JSON.stringify({ batch_ids: state.batches, results: parts.flatMap((p) => JSON.parse(p).results) }, null, 1);
    type = "application/json";
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type })); a.download = `imgrec-results.${format}`;
  document.body.append(a); a.click(); a.remove();
}
$("download-csv").addEventListener("click", () => download("csv"));
$("download-json").addEventListener("click", () => download("json"));

// --- choosing: buttons, the keyboard, and drops of files or folders -----------------------

$("pick-files").addEventListener("click", () => $("files").click());
$("pick-folder").addEventListener("click", () => $("folder").click());
$("drop").addEventListener("keydown", (e) => {
  if (e.target === $("drop") && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("files").click(); }
});
for (const id of ["files", "folder"]) {
  $(id).addEventListener("change", () => { const files = [...$(id).files]; $(id).value = ""; send(files); });
}

async function entries(entry, path) {
  if (entry.isFile) {
    return [await new Promise((ok, fail) => entry.file((f) => { f.relPath = path + f.name; ok(f); }, fail))];
  }
  const reader = entry.createReader(), found = [];
  for (;;) { // readEntries gives a folder's entries a hundred or so at a time
    const some = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!some.length) break;
    for (const e of some) found.push(...(await entries(e, `${path}${entry.name}/`)));
  }
  return found;
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  send(items.length ? (await Promise.all(items.map((en) => entries(en, "")))).flat() : [...e.dataTransfer.files]);
});

// --- status, the dashboard, and which section shows ---------------------------------------

async function refreshStatus() {
  try {
    const resp = await fetch("/api/v1/status", { headers: apiKey() ? { "X-API-Key": apiKey() } : {} });
    if (resp.status === 401) { $("status").textContent = "status needs the API key"; return; }
    const s = await resp.json();
    $("status").textContent = `workers ${s.workers} · waiting ${s.queue_depth} · in flight ${s.in_flight} · done ${s.completed}` +
      (s.problems && s.problems.length ? ` · problem: ${s.problems[0]}` : "");
  } catch (err) { $("status").textContent = "the service is not answering"; }
}

function chart(svg, series, events, t0, t1) {
  const w = 320, h = 160, pad = 28;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`); svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg", add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text; svg.append(el); return el;
  };
  const top = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1] || 0)));
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad - 6), y = (v) => h - 18 - (v / top) * (h - 30);
  add("line", { class: "axis", x1: pad, y1: h - 18, x2: w - 6, y2: h - 18 });
  add("text", { x: 2, y: 14 }, top.toFixed(top < 10 ? 1 : 0));
  add("text", { x: pad, y: h - 4 }, `${Math.round((t1 - t0) / 60)} min ago`); add("text", { x: w - 30, y: h - 4 }, "now");
  for (const e of events) add("line", { class: "event", x1: x(e.t), y1: 8, x2: x(e.t), y2: h - 18 });
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[1] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    if (pts.length) add("polyline", { class: `line l${i}`, points: pts.join(" ") });
    add("text", { x: pad + 4 + i * 90, y: 12 }, s.name);
  });
}

async function refreshDashboard() {
  if ($("dashboard").hidden) return;
  let view;
  try { view = await (await api("/api/v1/status/history")).json(); } catch (err) { return; }
  const s = view.samples; if (!s.length) return;
  const t1 = s[s.length - 1].t, t0 = Math.min(s[0].t, t1 - 60), ev = view.scale_events;
  const pts = (k) => s.map((p) => [p.t, p[k]]);
  chart($("chart-queue"), [{ name: "waiting", points: pts("queue_depth") }, { name: "in flight", points: pts("in_flight") }], ev, t0, t1);
  chart($("chart-workers"), [{ name: "workers", points: pts("workers") }], ev, t0, t1);
  chart($("chart-rate"), [{ name: "images/s", points: pts("images_per_second") }], ev, t0, t1);
  chart($("chart-wait"), [{ name: "waiting", points: pts("queue_wait_ms") }, { name: "working", points: pts("work_ms") }], ev, t0, t1);
}

function showSection() {
  const dash = location.hash === "#dashboard";
  $("dashboard").hidden = !dash; $("classify").hidden = dash;
  $("tab-dashboard").toggleAttribute("aria-current", dash); $("tab-classify").toggleAttribute("aria-current", !dash);
  if (dash) { $("tab-dashboard").setAttribute("aria-current", "page"); refreshDashboard(); }
  else $("tab-classify").setAttribute("aria-current", "page");
}
window.addEventListener("hashchange", showSection);

showSection(); showKey(); showRecent(); refreshStatus();
setInterval(refreshStatus, 2000); setInterval(refreshDashboard, 2000);
limits().catch(() => {});
const saved = new URL(location.href).searchParams.get("batches");
if (saved) restore(saved.split(",").filter((id) => /^[0-9a-f]{32}$/.test(id)));

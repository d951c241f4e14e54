// imgrec's page: send images (files or folders, any number), watch them get labelled,
// download the results; a dashboard of the last minutes. Everything it shows from the
// service or from file names is set as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const IN_FLIGHT = 3; // requests uploading (then watched) at once
const THUMB_W = 200, THUMB_H = 120; // thumbnails are drawn this small, never the originals
const CARD_H = 330, GAP = 12, OVERSCAN = 4; // the grid's fixed card height (app.css), rows drawn beyond the screen
const IMAGE_EXT = /\.(jpe?g|jfif|png|webp|bmp|gif|tiff?)$/i;
const CSV_COLUMNS = ["filename", "label", "score", "class_index", "wnid", "error", "job_id", "model"]; // the service's

const state = {
  limits: null, items: [], batches: [], uploads: [], gen: 0,
  pending: [], // items to send, in upload order
  unacked: 0, admitted: 0, cap: Infinity, workers: 0, xhrs: new Set(), uploading: new Set(),
  counts: { done: 0, failed: 0, answered: 0 }, bytes: { total: 0, sent: 0 }, rate: { t: 0, answered: 0 },
  keyChecked: null, waitingForKey: false, leftover: [], view: null, viewVersion: 0, seq: 0,
};

// --- talking to the service: retried while it restarts, never a prompt -----------------

class KeyRefused extends Error {}

function apiKey() { return localStorage.getItem("imgrec-key") || ""; }
function keyHeaders() { return apiKey() ? { "X-API-Key": apiKey() } : {}; }

function say(text) { $("message").textContent = text; }
function retrying() { return $("message").textContent.endsWith("…"); } // a passing state, said while it lasts

async function api(path, options = {}) {
  let pause = 500;
  for (;;) {
    let resp;
    try {
      resp = await fetch(path, { ...options, headers: keyHeaders() });
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
    if (retrying()) say("");
    return resp;
  }
}

// --- the API key: a field, never a prompt; checked before any image is sent --------------

let keyGiven = null, keyGivenNow = () => {};
function nextKey() { if (!keyGiven) keyGiven = new Promise((ok) => { keyGivenNow = () => { keyGiven = null; ok(); }; }); return keyGiven; }

function keyRefused() {
  state.keyChecked = null;
  const note = $("key-note");
  note.textContent = apiKey() ? "This key was refused: enter the right one." : "This service needs an API key.";
  note.className = "bad";
  $("key-panel").classList.add("needed");
  say(apiKey() ? "The API key was refused: enter the right one above; nothing more is sent until then."
    : "This service needs an API key: enter it above; nothing is sent until then.");
}

function showKey() {
  const note = $("key-note"), needed = Boolean(state.limits && state.limits.api_key_required);
  note.className = "";
  note.textContent = state.keyChecked && state.keyChecked === apiKey() ? "The key works (kept in this browser)."
    : apiKey() ? "A key is set (kept in this browser)." : needed ? "This service needs an API key." : "No key set.";
  $("key-panel").classList.toggle("needed", needed && !apiKey());
}

// True when images may be sent: no key needed, or this key answered a cheap request.
async function keyWorks() {
  const l = await limits();
  if (!l.api_key_required || (state.keyChecked && state.keyChecked === apiKey())) return true;
  if (!apiKey()) { keyRefused(); return false; }
  try { await api("/api/v1/status/history"); } catch (err) { if (err instanceof KeyRefused) return false; throw err; }
  state.keyChecked = apiKey(); showKey();
  return true;
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = $("key").value.trim();
  if (value) localStorage.setItem("imgrec-key", value);
  $("key").value = ""; state.keyChecked = null; say(""); showKey(); refreshStatus();
  if (await keyWorks()) {
    keyGivenNow(); loadModels();
    if (state.waitingForKey) { state.waitingForKey = false; say(""); pump(); }
  }
});
$("key-forget").addEventListener("click", () => { localStorage.removeItem("imgrec-key"); state.keyChecked = null; showKey(); });

// --- the model: a picker where the service serves more than one (IMGREC_MODELS) ----------

async function loadModels() {
  let served;  // a plain look, never a retry or a word: without the key it is tried again once one is given
  try {
    const resp = await fetch("/api/v1/models", { headers: keyHeaders() });
    if (!resp.ok) return;
    served = await resp.json();
  } catch (err) { return; }
  const pick = $("model"), models = served.models || [];
  if (models.length < 2 || pick.options.length) return;
  models.forEach((name) => pick.add(new Option(name === served.default ? `${name} (default)` : name, name)));
  pick.value = served.default;
  state.defaultModel = served.default;
  $("model-pick").hidden = false;
}

// Where an upload's requests go: the classic jobs route for the default model, the
// model's own route for another.
function jobsPath() {
  const m = $("model").value;
  return !m || m === state.defaultModel ? "/api/v1/jobs" : `/api/v1/models/${encodeURIComponent(m)}/jobs`;
}

// --- items: one per file, in upload order; the grid draws only those on screen -----------

function newItem(name, file, upload) {
  const item = {
    name, file, size: file ? file.size : 0, lastModified: file ? file.lastModified : 0, upload,
    order: state.items.length, result: null, error: null, entry: null, sent: false, li: null, thumb: null,
  };
  state.items.push(item);
  return item;
}

// An item's answer: a result, or an error (from the service, or the page's own reason).
function settle(item, entry, answered = false) {
  if (item.result || item.error) return;
  item.entry = entry;
  if (entry.error) { item.error = entry.error; state.counts.failed++; } else { item.result = entry; }
  state.counts.done++;
  if (answered) state.counts.answered++;
  if (item.li) fill(item);
  if (state.view) arrangeSoon();
  if (state.counts.done === state.items.length) progress(); else progressSoon();
}

function waitingFor(item, status) {
  if (item.result || item.error || item.status === status) return;
  item.status = status;
  if (item.li) fill(item);
}

function labelOf(it) {
  return it.error ? "error" : it.result ? it.result.label : it.status === "running" ? "classifying…"
    : it.status === "queued" ? "queued…" : it.status === "sending" ? "sending…"
      : it.status === "key" ? "waiting for the API key…" : "waiting…";
}

function card(it) {
  const li = document.createElement("li");
  const pic = it.file ? document.createElement("img") : document.createElement("div");
  if (it.file) { pic.alt = it.name; pic.width = THUMB_W; pic.height = THUMB_H; } else { pic.className = "noimg"; pic.textContent = "no preview"; }
  const t = document.createElement("div"); t.className = "t";
  const label = document.createElement("div"); label.className = "label";
  const nameEl = document.createElement("div"); nameEl.className = "name"; nameEl.textContent = it.name; nameEl.title = it.name;
  const detail = document.createElement("div");
  t.append(label, nameEl, detail); li.append(pic, t);
  it.li = li; li.pic = pic; li.label = label; li.detail = detail;
  fill(it);
  if (it.file) thumbnail(it);
  return li;
}

function fill(it) {
  const li = it.li;
  li.className = `card${it.error ? " failed" : it.result ? "" : " pending"}`;
  li.label.textContent = labelOf(it);
  if (it.file) li.pic.alt = it.result ? `${it.name}: ${it.result.label}` : it.name;
  li.detail.replaceChildren();
  if (it.error) {
    const e = document.createElement("div"); e.className = "err"; e.textContent = it.error; li.detail.append(e);
  } else if (it.result) {
    const top = document.createElement("ol"); top.className = "top"; top.setAttribute("aria-label", "top five");
    for (const g of it.result.top || []) {
      const row = document.createElement("li");
      const name = document.createElement("span"); name.textContent = g.label;
      const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = (100 * g.score).toFixed(1) + "%";
      const bar = document.createElement("span"); bar.className = "bar";
      const fillEl = document.createElement("span"); fillEl.style.width = (100 * g.score).toFixed(1) + "%"; bar.append(fillEl);
      row.append(name, pct, bar); top.append(row);
    }
    li.detail.append(top);
  }
}

// Thumbnails: decoded at a small size and kept as a small JPEG, two at a time, only for
// cards on screen; their object URLs are revoked when the results are cleared.
const thumbQueue = []; let thumbsRunning = 0;
function thumbnail(it) {
  if (it.thumb) { if (it.thumb !== "none") it.li.pic.src = it.thumb; return; }
  if (!it.thumbQueued) { it.thumbQueued = true; thumbQueue.push(it); }
  drawThumbs();
}
function drawThumbs() {
  while (thumbsRunning < 2 && thumbQueue.length) {
    const next = thumbQueue.shift();
    next.thumbQueued = false;
    if (!next.li || next.thumb) continue; // scrolled away: drawn when it comes back
    thumbsRunning++;
    drawThumb(next).finally(() => { thumbsRunning--; drawThumbs(); });
  }
}

async function drawThumb(it) {
  let bmp;
  try {
    bmp = await createImageBitmap(it.file, { resizeWidth: THUMB_W, resizeQuality: "medium" });
    const canvas = document.createElement("canvas"); canvas.width = THUMB_W; canvas.height = THUMB_H;
    const scale = Math.max(THUMB_W / bmp.width, THUMB_H / bmp.height), w = bmp.width * scale, h = bmp.height * scale;
    canvas.getContext("2d").drawImage(bmp, (THUMB_W - w) / 2, (THUMB_H - h) / 2, w, h);
    const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.8));
    if (it.thumb === null && blob && state.items[it.order] === it) it.thumb = URL.createObjectURL(blob);
  } catch (err) { it.thumb = "none"; } finally { if (bmp) bmp.close(); }
  if (it.li && it.thumb && it.thumb !== "none") it.li.pic.src = it.thumb;
}

// The grid: a fixed height per row, so that which cards are on screen is arithmetic; only
// those (and a few rows around them) are in the page, however many results there are.
const grid = $("grid");
let drawn = new Map(), drawnKey = "", drawSoonAsked = false;
function list() { return state.view || state.items; }

function draw() {
  drawSoonAsked = false;
  const items = list(), width = grid.clientWidth || 1, minW = width < 480 ? 140 : 165;
  const cols = Math.max(1, Math.floor((width + GAP) / (minW + GAP))), rowH = CARD_H + GAP;
  const rows = Math.ceil(items.length / cols), top = grid.getBoundingClientRect().top;
  const first = Math.max(0, Math.floor(-top / rowH) - OVERSCAN);
  const last = Math.min(rows, Math.max(first, Math.ceil((innerHeight - top) / rowH) + OVERSCAN));
  grid.style.height = rows ? `${rows * rowH - GAP}px` : "0";
  const key = `${cols} ${first} ${last} ${items.length} ${state.viewVersion}`;
  if (key === drawnKey) return;
  drawnKey = key;
  grid.style.paddingTop = `${first * rowH}px`;
  grid.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
  const next = new Map();
  items.slice(first * cols, last * cols).forEach((it, i) => {
    const li = drawn.get(it) || card(it);
    li.setAttribute("aria-posinset", first * cols + i + 1); li.setAttribute("aria-setsize", items.length);
    next.set(it, li);
  });
  for (const it of drawn.keys()) if (!next.has(it)) it.li = null;
  drawn = next;
  grid.replaceChildren(...next.values());
}
function drawSoon() { if (!drawSoonAsked) { drawSoonAsked = true; requestAnimationFrame(draw); } }
window.addEventListener("scroll", drawSoon, { passive: true });
window.addEventListener("resize", () => { drawnKey = ""; drawSoon(); });

// --- progress, in words for everyone and for screen readers -------------------------------

let lastAnnounced = 0, progressAsked = false;
function progressSoon() { if (!progressAsked) { progressAsked = true; setTimeout(progress, 100); } }

function size(bytes) { return bytes < 1048576 ? `${Math.round(bytes / 1024)} KB` : `${(bytes / 1048576).toFixed(1)} MB`; }

function progress() {
  progressAsked = false;
  const total = state.items.length, { done, failed, answered } = state.counts;
  $("progress-box").hidden = total === 0; $("tools").hidden = total === 0;
  if (!total) return;
  const secs = (Date.now() - state.rate.t) / 1000, rate = secs > 0 ? (answered - state.rate.answered) / secs : 0;
  const eta = rate > 0 && done < total ? ` · about ${Math.ceil((total - done) / rate)} s left` : "";
  let sent = state.bytes.sent;
  for (const u of state.uploading) sent += u.loaded;
  const bytes = state.bytes.total ? ` · ${size(Math.min(sent, state.bytes.total))} of ${size(state.bytes.total)} sent` : "";
  const text = `${done} of ${total} done${bytes} · ${rate.toFixed(1)} images/s${eta}${failed ? ` · ${failed} failed` : ""}`;
  $("progress").max = total; $("progress").value = done; $("progress-text").textContent = text;
  $("cancel").hidden = !state.pending.length && !state.unacked;
  if (done === total || Date.now() - lastAnnounced > 5000) {
    lastAnnounced = Date.now();
    $("announce").textContent = done === total ? `All ${total} done: ${total - failed} labelled, ${failed} failed.` : text;
  }
}

// --- sending: sized to what the service admits now, a few requests at a time -------------

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

// The backlog's room changes with every upload: looked at again before each request (a
// cheap call), at most twice a second for all the requests being made.
let freshAt = 0, fresh = null;
function freshLimits() {
  if (!fresh || Date.now() - freshAt > 500) {
    freshAt = Date.now();
    const before = state.admitted;
    fresh = api("/api/v1/limits").then((r) => r.json()).then((l) => { state.limits = { ...state.limits, ...l }; return [l, before]; });
  }
  return fresh;
}

// The room left for this page now: what the service took since the look began is not in
// its answer, or may not be, and what is on its way is not yet. Called and acted on with
// no wait between, so that requests made at once share the room rather than each taking it.
function room([l, before]) {
  return l.backlog_room === undefined ? Infinity : l.backlog_room - (state.admitted - before) - state.unacked;
}

function refusedHere(f, name, l) {
  if (f.size === 0) return `${name}: the file is empty`;
  if (f.size + 300 + name.length > l.max_upload_bytes) return `${name}: over the upload limit of ${l.max_upload_bytes} bytes`;
  if (!(f.type || "").startsWith("image/") && !IMAGE_EXT.test(name)) return `${name}: not an image (${l.formats.join(", ")})`;
  return null;
}

async function send(files) {
  if (!files.length) return;
  const l = await limits();
  if (!state.pending.length && !state.unacked) { state.rate = { t: Date.now(), answered: state.counts.answered }; }
  // The model picked when the files were chosen serves all of them, whatever is picked later.
  const upload = { at: Date.now(), count: files.length, batches: [], refused: [], path: jobsPath() }, gen = state.gen;
  state.uploads.push(upload);
  // A slice at a time: reading a file's size can ask the disk, and thousands of files at
  // once would hold the page still for a second or more.
  for (let start = 0; start < files.length && gen === state.gen; start += 100) {
    if (start) await sleep(0);
    files.slice(start, start + 100).forEach((f, i) => {
      const it = newItem(f.webkitRelativePath || f.relPath || f.name, f, upload), index = start + i;
      it.index = index;
      const why = refusedHere(f, it.name, l);
      if (why) { settle(it, { job_id: null, filename: it.name, error: why }); upload.refused.push([index, it.name, why]); }
      else { it.seq = state.seq++; state.pending.push(it); state.bytes.total += it.size; }
    });
    saveUnsent(); drawSoon(); progressSoon(); pump();
  }
  remember(upload); progress();
  if (upload.refused.length) showInUrl();
}

async function pump() {
  if (!state.pending.length) return;
  if (!(await keyWorks())) {
    state.waitingForKey = true;
    state.pending.forEach((it) => waitingFor(it, "key"));
    return;
  }
  const gen = state.gen;
  while (state.workers < IN_FLIGHT && state.pending.length) {
    state.workers++;
    (async () => {
      try { while (state.pending.length && gen === state.gen && !state.waitingForKey) await sendNext(gen); }
      finally { state.workers--; }
    })();
  }
}

// Takes the next request's files: within the limits and the backlog's room, and one run
// of consecutive files of one upload (so that each batch is a stretch of its upload).
async function takeGroup(gen) {
  let left = room(await freshLimits());
  while (left <= 0) {
    if (gen !== state.gen || !state.pending.length) return null;
    if (!state.unacked) say("The service's backlog is full; waiting for room…");
    await sleep(1000); left = room(await freshLimits());
  }
  if (gen !== state.gen || !state.pending.length) return null;
  if (/waiting for room…$/.test($("message").textContent)) say("");
  const l = state.limits, most = Math.min(l.max_files_per_request, left, state.cap);
  const group = [state.pending[0]];
  let bytes = group[0].size + 300 + group[0].name.length;
  for (let i = 1; i < state.pending.length && group.length < most; i++) {
    const it = state.pending[i], prev = group[group.length - 1], own = it.size + 300 + it.name.length;
    if (it.upload !== prev.upload || it.seq !== prev.seq + 1 || bytes + own > l.max_upload_bytes) break;
    group.push(it); bytes += own;
  }
  state.pending.splice(0, group.length);
  state.unacked += group.length;
  return group;
}

function putBack(group) { // in upload order, before everything after it
  group.forEach((it) => waitingFor(it, "waiting"));
  let i = 0;
  while (i < state.pending.length && state.pending[i].order < group[0].order) i++;
  state.pending.splice(i, 0, ...group);
}

async function sendNext(gen) {
  const group = await takeGroup(gen);
  if (!group) return;
  const bytes = group.reduce((s, it) => s + it.size, 0);
  let pause = 500, r;
  group.forEach((it) => waitingFor(it, "sending"));
  try {
    for (;;) {
      const up = { loaded: 0 };
      state.uploading.add(up);
      r = await post(group, (loaded, total) => { up.loaded = total ? (bytes * loaded) / total : 0; progressSoon(); });
      state.uploading.delete(up); progressSoon();
      if (r.status === -1) return; // cancelled: `cancel` has said so on each card
      if (r.status !== 0 && ![502, 503, 504].includes(r.status)) break;
      say(r.status ? "The service is unavailable; retrying…" : "The service is not answering; retrying…");
      await sleep(Math.min(60, r.retryAfter || pause / 1000) * 1000); pause = Math.min(8000, pause * 2);
      if (gen !== state.gen) return;
    }
  } finally { state.unacked -= group.length; }
  if (retrying()) say("");
  const half = Math.max(1, Math.floor(group.length / 2));
  if (r.status === 401) { putBack(group); state.waitingForKey = true; group.forEach((it) => waitingFor(it, "key")); keyRefused(); return; }
  if (r.status === 429 || (r.status === 413 && group.length > 1)) { // split, and try again when told
    state.cap = half; putBack(group);
    if (r.status === 429) { say("The service is busy: sending smaller requests shortly…"); await sleep(Math.min(60, r.retryAfter || 2) * 1000); }
    return;
  }
  const body = r.body || {};
  if (r.status !== 202) { // the whole request refused: each file still gets its own reason
    const each = body.files || [];
    group.forEach((it, i) => settle(it, { job_id: null, filename: it.name, error: (each[i] && each[i].error) || body.detail || `HTTP ${r.status}` }));
    saveUnsent(); return;
  }
  state.cap = Math.min(state.limits.max_files_per_request, state.cap * 2);
  state.bytes.sent += bytes; state.admitted += group.length;
  group.forEach((it) => { it.sent = true; it.batch = body.batch_id; });
  saveUnsent();
  const upload = group[0].upload;
  upload.batches.push([body.batch_id, group[0].index]);
  addBatch(body.batch_id, upload); remember(upload);
  body.jobs.forEach((job, i) => (job.status === "rejected" ? settle(group[i], job) : waitingFor(group[i], "queued")));
  await watch(body.batch_id, group, gen);
}

// XMLHttpRequest, not fetch: it tells how many bytes of the body are sent.
function post(group, onProgress) {
  return new Promise((ok) => {
    const xhr = new XMLHttpRequest();
    state.xhrs.add(xhr);
    xhr.open("POST", group[0].upload.path || "/api/v1/jobs");
    for (const [k, v] of Object.entries(keyHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
    const end = (status) => {
      state.xhrs.delete(xhr);
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      ok({ status, body, retryAfter: Number(xhr.getResponseHeader("Retry-After")) || 0 });
    };
    xhr.onload = () => end(xhr.status); xhr.onerror = () => end(0); xhr.onabort = () => end(-1);
    const form = new FormData();
    group.forEach((it) => form.append("file", it.file, it.name));
    xhr.send(form);
  });
}

async function watch(batchId, items, gen) {
  let pause = 300;
  while (gen === state.gen) {
    let view;
    try {
      const resp = await api(`/api/v1/batches/${batchId}`);
      if (resp.status === 404 || resp.status === 410) {
        const why = (await resp.json()).detail;
        return items.forEach((it) => settle(it, { job_id: null, filename: it.name, error: why }));
      }
      view = await resp.json();
    } catch (err) { if (err instanceof KeyRefused) { await nextKey(); continue; } throw err; }
    if (gen !== state.gen) return;
    view.results.forEach((r, i) => (r.label || r.error ? settle(items[i], r, Boolean(r.job_id)) : waitingFor(items[i], r.status)));
    if (view.status === "done") return;
    await sleep(pause); pause = Math.min(2000, pause * 1.3);
  }
}

// --- cancel and clear -----------------------------------------------------------------------

function cancel() {
  const gen = ++state.gen, left = state.pending.splice(0);
  for (const xhr of [...state.xhrs]) xhr.abort();
  const unsent = state.items.filter((it) => it.file && !it.sent && !it.result && !it.error);
  unsent.forEach((it) => settle(it, { job_id: null, filename: it.name, error: `${it.name}: not sent (cancelled)` }));
  state.waitingForKey = false; state.uploading.clear(); writeUnsent(); progress(); $("cancel").hidden = true;
  say(`Cancelled: ${unsent.length} file${unsent.length === 1 ? "" : "s"} not sent.`);
  // What the service took is still watched: it will be answered.
  const taken = new Map();
  for (const it of state.items) if (it.sent && !it.result && !it.error && it.batch) (taken.get(it.batch) || taken.set(it.batch, []).get(it.batch)).push(it);
  for (const [id, items] of taken) watch(id, items, gen);
  return left;
}

function clear() {
  cancel();
  state.gen++;
  for (const it of state.items) if (it.thumb && it.thumb !== "none") URL.revokeObjectURL(it.thumb);
  Object.assign(state, {
    items: [], batches: [], uploads: [], pending: [], view: null, unacked: 0, seq: 0,
    counts: { done: 0, failed: 0, answered: 0 }, bytes: { total: 0, sent: 0 },
  });
  thumbQueue.length = 0; drawn = new Map(); drawnKey = ""; grid.replaceChildren();
  const url = new URL(location.href); url.searchParams.delete("batches"); url.searchParams.delete("uploads");
  history.replaceState(null, "", url);
  say(""); $("announce").textContent = "Results cleared."; progress(); draw();
}
$("cancel").addEventListener("click", cancel);
$("clear").addEventListener("click", clear);

// --- surviving reloads: batch ids in the URL, a list of recent uploads, and what was not sent

function addBatch(id, upload) {
  state.batches.push({ id, upload });
  showInUrl();
}

function showInUrl() {
  const url = new URL(location.href);
  url.searchParams.set("batches", orderedBatches().join(","));
  url.searchParams.set("uploads", state.uploads.filter((u) => u.batches.length || u.refused.length).map((u) => u.at).join(","));
  history.replaceState(null, "", url);
}

// Every batch of this page in upload order: by upload, then by where it starts in it.
function orderedBatches() {
  return state.uploads.flatMap((u) => [...u.batches].sort((a, b) => a[1] - b[1]).map(([id]) => id));
}

function recent() { try { return JSON.parse(localStorage.getItem("imgrec-recent") || "[]"); } catch (err) { return []; } }

function remember(upload) {
  const record = { at: upload.at, count: upload.count, batches: upload.batches, refused: upload.refused,
    ids: [...upload.batches].sort((a, b) => a[1] - b[1]).map(([id]) => id) };
  const all = recent().filter((r) => r.at !== upload.at);
  all.unshift(record);
  try { localStorage.setItem("imgrec-recent", JSON.stringify(all.slice(0, 20))); } catch (err) { /* full: the URL still has the batches */ }
  showRecent();
}

function showRecent() {
  const box = $("recent"); box.replaceChildren();
  for (const r of recent()) {
    const li = document.createElement("li"), a = document.createElement("a");
    a.href = `?batches=${(r.ids || []).join(",")}&uploads=${r.at}#classify`;
    const refused = (r.refused || []).length;
    a.textContent = `${new Date(r.at).toLocaleString()}: ${r.count} images${refused ? ` (${refused} refused by the page)` : ""}`;
    li.append(a); box.append(li);
  }
}

let unsentAsked = false;
function saveUnsent() {
  if (unsentAsked) return;
  unsentAsked = true;
  setTimeout(() => { unsentAsked = false; writeUnsent(); }, 200);
}
function unsentNow() { return state.items.filter((it) => it.file && !it.sent && !it.result && !it.error); }
function writeUnsent() {
  const files = [...state.leftover, ...unsentNow().map((it) => ({ name: it.name, size: it.size, lastModified: it.lastModified }))];
  try { // names, sizes and dates only; a list past the browser's quota is not kept (the page goes on)
    if (files.length) localStorage.setItem("imgrec-unsent", JSON.stringify(files)); else localStorage.removeItem("imgrec-unsent");
  } catch (err) { localStorage.removeItem("imgrec-unsent"); }
}

window.addEventListener("beforeunload", (e) => {
  writeUnsent();
  if (unsentNow().length) { e.preventDefault(); e.returnValue = ""; } // the browser asks whether to leave
});

function showLeftover() {
  const box = $("unsent-box"), files = state.leftover;
  box.hidden = !files.length;
  if (!files.length) return;
  const names = files.slice(0, 5).map((f) => f.name).join(", ") + (files.length > 5 ? `, and ${files.length - 5} more` : "");
  $("unsent-text").textContent = `${files.length} file${files.length === 1 ? " was" : "s were"} chosen but not sent before ` +
    `the page was left: ${names}. The browser cannot keep files across a reload: choose them again to send them.`;
}

function resend(files) { // only the files that were left unsent; the rest stay as they are
  const key = (f) => `${f.name.split("/").pop()}\n${f.size}\n${f.lastModified}`;
  const wanted = new Map(state.leftover.map((f) => [key(f), f]));
  const again = files.filter((f) => wanted.delete(key(f)));
  state.leftover = [...wanted.values()];
  showLeftover(); writeUnsent();
  say(again.length ? (state.leftover.length ? `Sending ${again.length}; ${state.leftover.length} still not chosen.` : "")
    : "None of the chosen files is among those not sent.");
  send(again);
}
$("unsent-pick").addEventListener("click", () => { $("files").resending = true; $("files").click(); });
$("unsent-forget").addEventListener("click", () => { state.leftover = []; showLeftover(); writeUnsent(); });

async function restore(ids, ats) {
  state.rate = { t: Date.now(), answered: 0 };
  const fetched = new Map();
  const records = recent().filter((r) => ats.includes(r.at)).sort((a, b) => ats.indexOf(a.at) - ats.indexOf(b.at));
  const all = [...new Set([...records.flatMap((r) => (r.batches || []).map(([id]) => id)), ...ids])];
  await Promise.all(all.map(async (id) => {
    for (;;) {
      try {
        const resp = await api(`/api/v1/batches/${id}`);
        if (!resp.ok) { say(`Batch ${id}: ${(await resp.json()).detail}`); return; }
        fetched.set(id, await resp.json()); return;
      } catch (err) { if (!(err instanceof KeyRefused)) throw err; await nextKey(); } // shown once the key is given
    }
  }));
  // Each upload in its order: its batches where they started, its refused files where they were.
  const watches = [], seen = new Set();
  const place = (upload, rows) => {
    state.uploads.push(upload);
    const byBatch = new Map();
    rows.sort((a, b) => a.index - b.index).forEach((row) => {
      const it = newItem(row.entry.filename || "upload", null, upload);
      if (row.batch) (byBatch.get(row.batch) || byBatch.set(row.batch, []).get(row.batch)).push(it);
      if (row.entry.label || row.entry.error) settle(it, row.entry); else waitingFor(it, row.entry.status);
    });
    for (const [id, items] of byBatch) { addBatch(id, upload); if (fetched.get(id).status !== "done") watches.push([id, items]); }
  };
  for (const r of records) {
    const upload = { at: r.at, count: r.count, batches: [], refused: r.refused || [] }, rows = [];
    const refusedAt = new Set(upload.refused.map(([i]) => i));
    upload.refused.forEach(([index, filename, error]) => rows.push({ index, entry: { job_id: null, filename, error } }));
    for (const [id, start] of r.batches || []) {
      seen.add(id);
      const view = fetched.get(id);
      if (!view) continue;
      upload.batches.push([id, start]);
      let index = start;
      for (const entry of view.results) { while (refusedAt.has(index)) index++; rows.push({ index: index++, entry, batch: id }); }
    }
    place(upload, rows);
  }
  for (const id of ids.filter((i) => !seen.has(i) && fetched.has(i))) { // a link from elsewhere: no record of its upload
    const upload = { at: 0, count: 0, batches: [[id, 0]], refused: [] };
    place(upload, fetched.get(id).results.map((entry, index) => ({ index, entry, batch: id })));
  }
  drawSoon(); progress();
  await Promise.all(watches.map(([id, items]) => watch(id, items, state.gen)));
}

// --- arranging: filter and sort, recomputed at most a few times a second -------------------

let arrangeAsked = false;
function arrangeSoon() { if (!arrangeAsked) { arrangeAsked = true; setTimeout(arrange, 300); } }
function arrange() {
  arrangeAsked = false;
  const words = $("filter").value.trim().toLowerCase(), errorsOnly = $("errors-only").checked, how = $("sort").value;
  if (!words && !errorsOnly && how === "order") state.view = null;
  else {
    const score = (i) => (i.result ? i.result.score : -1);
    state.view = state.items.filter((it) => {
      const text = `${it.name} ${it.result ? it.result.label : ""} ${it.error || ""}`.toLowerCase();
      return !(errorsOnly && !it.error) && !(words && !text.includes(words));
    });
    if (how !== "order") state.view.sort((a, b) => (
      how === "label" ? ((a.result && a.result.label) || "~").localeCompare((b.result && b.result.label) || "~") || a.order - b.order
        : how === "score-desc" ? score(b) - score(a) || a.order - b.order : score(a) - score(b) || a.order - b.order));
  }
  state.viewVersion++; drawnKey = ""; draw();
}
["filter", "sort", "errors-only"].forEach((id) => $(id).addEventListener("input", arrange));

// --- downloads: every file in upload order, the service's columns, the page's refusals too --

function csvCell(v) {
  if (v === null || v === undefined) return "";
  let s = String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s; // as the service's: never a formula
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function entries() {
  return state.items.map((it) => it.entry || { job_id: null, filename: it.name, error: "not answered yet" });
}

function download(format) {
  let text, type;
  if (format === "csv") {
    const row = (e) => CSV_COLUMNS.map((k) => csvCell(k === "score" && Number.isInteger(e[k]) ? e[k].toFixed(1) : e[k])).join(",");
    text = [CSV_COLUMNS.join(","), ...entries().map(row)].join("\r\n") + "\r\n"; type = "text/csv";
  } else {
    text = JSON.stringify({ batch_ids: orderedBatches(), results: entries() }, null, 1); type = "application/json";
  }
  const a = document.createElement("a"), url = URL.createObjectURL(new Blob([text], { type }));
  a.href = url; a.download = `imgrec-results.${format}`;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
$("download-csv").addEventListener("click", () => download("csv"));
$("download-json").addEventListener("click", () => download("json"));

// --- choosing: buttons, the keyboard, and drops of files or folders -----------------------

$("pick-files").addEventListener("click", () => { $("files").resending = false; $("files").click(); });
$("pick-folder").addEventListener("click", () => $("folder").click());
$("drop").addEventListener("keydown", (e) => {
  if (e.target === $("drop") && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("files").resending = false; $("files").click(); }
});
for (const id of ["files", "folder"]) {
  $(id).addEventListener("change", () => {
    const files = [...$(id).files], again = $(id).resending && state.leftover.length;
    $(id).value = ""; $(id).resending = false;
    if (again) resend(files); else send(files);
  });
}

async function folderEntries(entry, path) {
  if (entry.isFile) {
    return [await new Promise((ok, fail) => entry.file((f) => { f.relPath = path + f.name; ok(f); }, fail))];
  }
  const reader = entry.createReader(), found = [];
  for (;;) { // readEntries gives a folder's entries a hundred or so at a time
    const some = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!some.length) break;
    for (const e of some) found.push(...(await folderEntries(e, `${path}${entry.name}/`)));
  }
  return found;
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  send(items.length ? (await Promise.all(items.map((en) => folderEntries(en, "")))).flat() : [...e.dataTransfer.files]);
});

// --- status, the dashboard, and which section shows ---------------------------------------

async function refreshStatus() {
  try {
    const resp = await fetch("/api/v1/status", { headers: keyHeaders() });
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
    const at = pad + 4 + i * 90; // the legend: a stroke in the line's colour, then its name
    add("line", { class: `key l${i}`, x1: at, y1: 8, x2: at + 14, y2: 8 });
    add("text", { x: at + 18, y: 12 }, s.name);
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
  else { $("tab-classify").setAttribute("aria-current", "page"); drawnKey = ""; drawSoon(); }
}
window.addEventListener("hashchange", showSection);

// What the page holds, in the order shown: for people who script it, and for its tests
// (the grid itself holds only the cards on screen).
window.imgrec = {
  done: () => state.counts.done,
  rows: () => list().map((it) => [it.name, labelOf(it)]),
};

try { state.leftover = JSON.parse(localStorage.getItem("imgrec-unsent") || "[]"); } catch (err) { state.leftover = []; }
showSection(); showKey(); showRecent(); showLeftover(); refreshStatus();
setInterval(refreshStatus, 2000); setInterval(refreshDashboard, 2000);
limits().catch(() => {}); loadModels();
const params = new URL(location.href).searchParams;
const savedIds = (params.get("batches") || "").split(",").filter((id) => /^[0-9a-f]{32}$/.test(id));
const savedAts = (params.get("uploads") || "").split(",").map(Number).filter((n) => n > 0);
if (savedIds.length || savedAts.length) restore(savedIds, savedAts);

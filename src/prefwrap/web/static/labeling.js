// prefwrap labeling page. Plain JS, no build step, no network but the server it came from.
// Protocol: see prefwrap/web/app.py. The page holds at most three leases: the query on screen, the
// next one (already loaded, so it plays the moment an answer is given) and the previous one while its
// answer can still be undone. An answer is sent when its undo window ends or at the next answer, and
// "saved" is shown only once the server says it is committed.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const ANSWER_TEXT = { left: "LEFT is better", right: "RIGHT is better", equal: "EQUAL", skip: "SKIP (can't tell)" };
const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "equal", " ": "equal", ArrowDown: "skip" };

const state = {
  session: null, annotator: null, fps: 20, undoSeconds: 4, leaseSeconds: 60,
  current: null, shownAt: 0, startedAt: 0, queue: [], filling: false, pending: null, paused: false,
  noMore: false, answered: new Set(),
};
// read by tests and benchmarks/web_labeling.py
window.prefwrap = { state, latencies: [], saved: [], answerAt: null };

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "X-Prefwrap-Token": token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error((data && data.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// -- session -----------------------------------------------------------------------------------------

async function startSession(name) {
  const data = await api("POST", "/api/session", { name });
  state.session = data.session;
  state.annotator = data.annotator;
  localStorage.setItem("prefwrap-name", data.annotator);
  $("who").textContent = `labeling as ${data.annotator}`;
  $("login").hidden = true;
  await refreshStatus();
  fill();
}

// A server restart forgets sessions (410): open a new one under the same name and go on.
async function withSession(call) {
  try {
    return await call();
  } catch (error) {
    if (error.status !== 410 || !state.annotator) throw error;
    const data = await api("POST", "/api/session", { name: state.annotator });
    state.session = data.session;
    return await call();
  }
}

// -- queries and clips -----------------------------------------------------------------------------------

async function loadClip(queryId, side) {
  const response = await fetch(`/api/clip/${queryId}/${side}?token=${encodeURIComponent(token)}`);
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new Error(data.detail || `clip ${side} of query ${queryId}: ${response.status}`);
  }
  const header = (name) => Number(response.headers.get(name));
  const bitmap = await createImageBitmap(await response.blob());
  return { bitmap, n: header("X-Frames"), columns: header("X-Columns"), w: header("X-Frame-Width"), h: header("X-Frame-Height") };
}

// Keep one query loaded beyond the one on screen.
async function fill() {
  if (state.filling || state.paused || !state.session) return;
  state.filling = true;
  try {
    while (state.queue.length + (state.current ? 1 : 0) < 2) {
      const data = await withSession(() => api("POST", "/api/next", { session: state.session }));
      if (!data.query) { state.noMore = true; break; }
      state.noMore = false;
      const id = data.query.query_id;
      if (state.answered.has(id)) {  // our answer is still on its way (a retry after a server restart)
        api("POST", "/api/release", { session: state.session, query_id: id }).catch(() => {});
        break;
      }
      try {
        const [left, right] = await Promise.all([loadClip(id, "left"), loadClip(id, "right")]);
        state.queue.push({ id, left, right });
      } catch (error) {
        showMessage(`Query ${id} cannot be shown: ${error.message}`);
        api("POST", "/api/release", { session: state.session, query_id: id }).catch(() => {});
        break;
      }
      if (!state.current) advance();
    }
  } catch (error) {
    setProgress(`connection problem: ${error.message} (retrying)`);
  } finally {
    state.filling = false;
  }
  if (!state.current) showWaiting();
}

function advance() {
  state.current = state.queue.shift() || null;
  if (!state.current) { showWaiting(); return; }
  for (const side of ["left", "right"]) {
    const clip = state.current[side];
    const canvas = $(side);
    if (canvas.width !== clip.w || canvas.height !== clip.h) { canvas.width = clip.w; canvas.height = clip.h; }
  }
  fitCanvases();
  $("message").hidden = true;
  document.body.dataset.queryId = String(state.current.id);
  state.startedAt = performance.now();
  state.shownAt = state.startedAt;
  state.firstFrameDrawn = false;
  fill();
}

// Scale both clips by one factor so that they fill the room left by the header and the buttons.
function fitCanvases() {
  const query = state.current;
  if (!query) return;
  const room = $("left").parentElement.clientWidth;
  const roomHeight = Math.max(120, window.innerHeight - 256);
  const w = Math.max(query.left.w, query.right.w), h = Math.max(query.left.h, query.right.h);
  const scale = Math.min(room / w, roomHeight / h);
  for (const side of ["left", "right"]) {
    $(side).style.width = `${Math.floor(query[side].w * scale)}px`;
    $(side).style.height = `${Math.floor(query[side].h * scale)}px`;
    $(side).style.imageRendering = scale >= 1 ? "pixelated" : "auto";  // crisp when enlarged, smooth when shrunk
    $(`${side}-bar`).parentElement.style.width = $(side).style.width;
  }
}
window.addEventListener("resize", fitCanvases);

// One clock for both canvases: they show the same frame index, and a shorter clip holds its last frame.
function draw(now) {
  const query = state.current;
  if (query && !state.paused) {
    const period = Math.max(query.left.n, query.right.n);
    const index = Math.floor(((now - state.startedAt) * state.fps) / 1000) % period;
    for (const side of ["left", "right"]) {
      const clip = query[side];
      const frame = Math.min(index, clip.n - 1);
      const sx = (frame % clip.columns) * clip.w;
      const sy = Math.floor(frame / clip.columns) * clip.h;
      $(side).getContext("2d").drawImage(clip.bitmap, sx, sy, clip.w, clip.h, 0, 0, clip.w, clip.h);
      $(`${side}-bar`).style.width = `${(100 * (index + 1)) / period}%`;
    }
    if (!state.firstFrameDrawn) {
      state.firstFrameDrawn = true;
      document.body.dataset.playing = String(query.id);
      if (window.prefwrap.answerAt !== null) {
        window.prefwrap.latencies.push(now - window.prefwrap.answerAt);
        window.prefwrap.answerAt = null;
      }
    }
  }
  requestAnimationFrame(draw);
}

// -- answers, undo ----------------------------------------------------------------------------------------

function answer(preference) {
  const query = state.current;
  if (!query || state.paused) return;
  window.prefwrap.answerAt = performance.now();
  flushPending();  // only the latest answer can be undone
  const held = { query, preference, seconds: (performance.now() - state.shownAt) / 1000 };
  state.answered.add(query.id);
  state.pending = held;
  if (state.undoSeconds > 0) {
    held.timer = setTimeout(flushPending, state.undoSeconds * 1000);
    showLast(`last answer: ${ANSWER_TEXT[preference]} (query ${query.id}), saving...`, "held");
    $("undo").hidden = false;
  }
  advance();
  if (state.undoSeconds <= 0) flushPending();
}

async function flushPending() {
  const held = state.pending;
  if (!held) return;
  state.pending = null;
  clearTimeout(held.timer);
  $("undo").hidden = true;
  const body = () => ({ session: state.session, query_id: held.query.id, preference: held.preference, seconds: held.seconds });
  for (let attempt = 0; ; attempt++) {
    try {
      const data = await withSession(() => api("POST", "/api/answer", body()));
      window.prefwrap.saved.push(held.query.id);
      if (!state.pending) {  // else a newer answer, still undoable, is what "last answer" shows
        showLast(`last answer: ${ANSWER_TEXT[held.preference]} (query ${held.query.id}) - saved`, "saved");
      }
      showStatus(data);
      return;
    } catch (error) {
      if (error.status && error.status < 500) {  // refused for good (answered by someone else, ...)
        showLast(`query ${held.query.id} not saved: ${error.message}`, "");
        return;
      }
      setProgress(`saving query ${held.query.id} failed (${error.message}); retrying...`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 500 * 2 ** attempt)));
    }
  }
}

function undo() {
  const held = state.pending;
  if (!held) {
    if (window.prefwrap.saved.length) showLast("The last answer is saved: saved labels are never changed.", "");
    return;
  }
  state.pending = null;
  clearTimeout(held.timer);
  $("undo").hidden = true;
  if (state.current) state.queue.unshift(state.current);
  state.queue.unshift(held.query);
  state.answered.delete(held.query.id);
  showLast(`answer to query ${held.query.id} undone: answer it again`, "");
  advance();
}

// -- pause, status, messages ------------------------------------------------------------------------------

function pause() {
  flushPending();
  state.paused = true;
  const ids = [state.current, ...state.queue].filter(Boolean).map((q) => q.id);
  state.current = null;
  state.queue = [];
  for (const id of ids) api("POST", "/api/release", { session: state.session, query_id: id }).catch(() => {});
  $("paused").hidden = false;
}

function resume() {
  state.paused = false;
  $("paused").hidden = true;
  fill();
}

function showStatus(data) {
  state.fps = data.fps || state.fps;
  state.undoSeconds = data.undo_seconds ?? state.undoSeconds;
  state.leaseSeconds = data.lease_seconds || state.leaseSeconds;
  let text = `${data.n_labels} labelled, ${data.n_waiting} waiting - you: ${data.mine}`;
  if (data.message) text += ` - ${data.message}`;
  setProgress(text);
  state.message = data.message;
}

async function refreshStatus() {
  const suffix = state.session ? `?session=${encodeURIComponent(state.session)}` : "";
  showStatus(await api("GET", `/api/status${suffix}`));
}

function showWaiting() {
  if (state.paused) return;
  document.body.dataset.queryId = "";
  showMessage(state.message || "No queries waiting: more come as the agent trains...");
}

function showMessage(text) { $("message").textContent = text; $("message").hidden = false; }
function setProgress(text) { $("progress").textContent = text; }
function showLast(text, kind) { $("last").textContent = text; $("last").className = kind; }

// -- wiring -------------------------------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  if (!$("login").hidden || event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
  if (state.paused) { event.preventDefault(); resume(); return; }
  if (KEYS[event.key]) { event.preventDefault(); answer(KEYS[event.key]); }
  else if (event.key === "r" || event.key === "R") state.startedAt = performance.now();
  else if (event.key === "Escape") pause();
  else if (event.key === "u" || event.key === "U" || event.key === "Backspace") { event.preventDefault(); undo(); }
});
for (const button of document.querySelectorAll("[data-answer]")) {
  button.addEventListener("click", () => answer(button.dataset.answer));
}
$("replay").addEventListener("click", () => { state.startedAt = performance.now(); });
$("pause").addEventListener("click", pause);
$("paused").addEventListener("click", resume);
$("undo").addEventListener("click", undo);
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startSession($("name").value).catch((error) => { $("login-error").textContent = error.message; });
});

// The tab closes: send a held answer now (a beacon outlives the page) and give the queries back.
window.addEventListener("pagehide", () => {
  const held = state.pending;
  const url = (path) => `${path}?token=${encodeURIComponent(token)}`;
  const blob = (body) => new Blob([JSON.stringify(body)], { type: "application/json" });
  if (held) {
    navigator.sendBeacon(url("/api/answer"), blob({ session: state.session, query_id: held.query.id, preference: held.preference, seconds: held.seconds }));
  }
  if (state.session) navigator.sendBeacon(url("/api/leave"), blob({ session: state.session }));
});

// Heartbeat three times per lease lifetime, so one lost request does not cost the page its queries.
function heartbeat() {
  if (state.session) withSession(() => api("POST", "/api/heartbeat", { session: state.session })).catch(() => {});
  setTimeout(heartbeat, (1000 * state.leaseSeconds) / 3);
}
setTimeout(heartbeat, 5000);
setInterval(() => {
  refreshStatus().then(() => { if (!state.current) { fill(); showWaiting(); } }).catch((error) => setProgress(`server unreachable: ${error.message}`));
}, 1500);

requestAnimationFrame(draw);
const known = params.get("name") || localStorage.getItem("prefwrap-name");
refreshStatus().catch((error) => setProgress(`server unreachable: ${error.message}`));
if (known) {
  $("name").value = known;
  startSession(known).catch(() => { $("login").hidden = false; });
} else {
  $("login").hidden = false;
}

// prefwrap labeling page. Plain JS, no build step, no network but the server it came from.
// Protocol: see prefwrap/web/app.py. A query shows its K clips (2 to 6) in a grid; a pair is answered
// with the arrow keys, a larger query ranked by number keys (ranking.js). The page holds at most three leases: the query on screen, the
// next one (already loaded, so it plays the moment an answer is given) and the previous one while its
// answer can still be undone. An answer is sent when its undo window ends or at the next answer, and
// "saved" is shown only once the server says it is committed.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const KEYS = { ArrowUp: "rest", " ": "rest", ArrowDown: "skip", "=": "tie", u: "undo", U: "undo", Backspace: "undo" };
const PAIR_ARROWS = { ArrowLeft: 0, ArrowRight: 1 };

const state = {
  session: null, annotator: null, fps: 20, undoSeconds: 4, leaseSeconds: 60,
  current: null, entry: null, latest: null, shownAt: 0, startedAt: 0, queue: [], filling: false, pending: null,
  paused: false, noMore: false, answered: new Set(),
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

async function loadClip(queryId, position) {
  const response = await fetch(`/api/clip/${queryId}/${position}?token=${encodeURIComponent(token)}`);
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new Error(data.detail || `clip ${position + 1} of query ${queryId}: ${response.status}`);
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
        const positions = [...Array(data.query.size || 2).keys()];
        const clips = await Promise.all(positions.map((position) => loadClip(id, position)));
        state.queue.push({ id, clips });
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

function advance(entry = null) {
  state.current = state.queue.shift() || null;
  state.entry = null;
  if (!state.current) { showEntry(); showWaiting(); return; }
  state.entry = entry || new RankingEntry(state.current.clips.length);
  buildClips(state.current);
  fitCanvases();
  showEntry();
  $("message").hidden = true;
  document.body.dataset.queryId = String(state.current.id);
  state.startedAt = performance.now();
  state.shownAt = state.startedAt;
  state.firstFrameDrawn = false;
  fill();
}

// One section per clip: its number (a pair's: LEFT, RIGHT), the rank it got so far, the canvas, a bar.
function buildClips(query) {
  const pair = query.clips.length === 2;
  const sections = query.clips.map((clip, position) => {
    const section = document.createElement("section");
    section.className = `clip c${position}`;
    section.dataset.position = String(position);
    section.innerHTML = `<div class="tags"><span class="tag"></span><span class="rank" hidden></span></div>
      <canvas></canvas><div class="bar"><div></div></div>`;
    section.querySelector(".tag").textContent = pair ? ["LEFT", "RIGHT"][position] : String(position + 1);
    section.querySelector("canvas").width = clip.w;
    section.querySelector("canvas").height = clip.h;
    section.addEventListener("click", () => act("place", position));
    return section;
  });
  $("clips").replaceChildren(...sections);
  document.body.classList.toggle("ranking", !pair);
  $("last-key").textContent = String(query.clips.length);
  $("title").textContent = pair ? "Which clip is better?" : "Rank the clips: the best one's number first";
}

// Scale all clips by one factor, as large as the room left by the header and the buttons allows; a
// pair side by side, more clips in the grid (rows x columns) that shows them largest.
function fitCanvases() {
  const query = state.current;
  if (!query) return;
  const k = query.clips.length;
  const w = Math.max(...query.clips.map((clip) => clip.w)), h = Math.max(...query.clips.map((clip) => clip.h));
  const gap = 16, chrome = 56;  // per clip: its tag row above, its bar below
  const roomW = $("clips").parentElement.clientWidth - 40;
  const roomH = Math.max(160, window.innerHeight - $("header").offsetHeight - $("footer").offsetHeight - 24);
  let best = { scale: 0, columns: k };
  for (const columns of k === 2 ? [2] : [k <= 3 ? k : Math.ceil(k / 2), ...Array.from({ length: k - 1 }, (_, i) => i + 2)]) {
    const rows = Math.ceil(k / columns);
    const scale = Math.min((roomW - (columns - 1) * gap) / columns / w, (roomH - rows * chrome - (rows - 1) * gap) / rows / h);
    if (scale > best.scale) best = { scale, columns };
  }
  const width = Math.max(40, Math.floor(w * best.scale));
  $("clips").style.maxWidth = `${best.columns * width + (best.columns - 1) * gap}px`;
  for (const [position, section] of [...$("clips").children].entries()) {
    const canvas = section.querySelector("canvas");
    const clip = query.clips[position];
    canvas.style.width = `${Math.floor((clip.w * width) / w)}px`;
    canvas.style.height = `${Math.floor((clip.h * width) / w)}px`;
    canvas.style.imageRendering = best.scale >= 1 ? "pixelated" : "auto";  // crisp when enlarged, smooth when shrunk
    section.style.width = `${width}px`;
  }
}
window.addEventListener("resize", fitCanvases);

// One clock for all canvases: they show the same frame index, and a shorter clip holds its last frame.
function draw(now) {
  const query = state.current;
  if (query && !state.paused) {
    const period = Math.max(...query.clips.map((clip) => clip.n));
    const index = Math.floor(((now - state.startedAt) * state.fps) / 1000) % period;
    for (const [position, section] of [...$("clips").children].entries()) {
      const clip = query.clips[position];
      const frame = Math.min(index, clip.n - 1);
      const sx = (frame % clip.columns) * clip.w;
      const sy = Math.floor(frame / clip.columns) * clip.h;
      section.querySelector("canvas").getContext("2d").drawImage(clip.bitmap, sx, sy, clip.w, clip.h, 0, 0, clip.w, clip.h);
      section.querySelector(".bar div").style.width = `${(100 * (index + 1)) / period}%`;
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

// The ranks given so far, above each clip, and the ranking (or why the last key did nothing) below.
function showEntry() {
  const entry = state.entry;
  $("undo").hidden = !(state.pending || (entry && entry.steps));
  if (!entry) return;
  for (const [position, section] of [...$("clips").children].entries()) {
    const rank = entry.rankOf(position);
    const badge = section.querySelector(".rank");
    badge.hidden = rank === null;
    badge.textContent = rank === null ? "" : ordinal(rank + 1) + (entry.isTied(position) ? " (tie)" : "");
    section.classList.toggle("ranked", rank !== null);
  }
  $("ranking").textContent = entry.notice || (entry.groups.length ? `so far: ${entry.text()}` : "\u00a0");
  $("ranking").className = entry.notice ? "notice" : "";
}

// -- answers, undo ----------------------------------------------------------------------------------------

// One key press or click: a step of the ranking on screen, or the answer once it is complete.
function act(action, position = -1) {
  if (action === "undo") { undo(); return; }
  const entry = state.entry;
  if (!state.current || !entry || state.paused) return;
  const before = entry.copy();  // what undo gives back if this step completes the answer
  let done = null;
  if (action === "skip") done = { preference: "skip" };
  else if (action === "rest") done = entry.restEqual();
  else if (action === "tie") entry.tie();
  else done = entry.place(position);
  if (done) submit(done, before);
  else showEntry();
}

function submit(answer, before) {
  const query = state.current;
  window.prefwrap.answerAt = performance.now();
  flushPending();  // only the latest answer can be undone
  const held = { query, answer, before, seconds: (performance.now() - state.shownAt) / 1000 };
  state.answered.add(query.id);
  state.pending = held;
  state.latest = held;
  if (state.undoSeconds > 0) {
    held.timer = setTimeout(flushPending, state.undoSeconds * 1000);
    showLast(`last answer: ${answerText(answer)} (query ${query.id}), saving...`, "held");
  }
  advance();
  if (state.undoSeconds <= 0) flushPending();
}

function answerBody(held) {
  return { session: state.session, query_id: held.query.id, seconds: held.seconds, ...held.answer };
}

async function flushPending() {
  const held = state.pending;
  if (!held) return;
  state.pending = null;
  clearTimeout(held.timer);
  showEntry();
  for (let attempt = 0; ; attempt++) {
    try {
      const data = await withSession(() => api("POST", "/api/answer", answerBody(held)));
      window.prefwrap.saved.push(held.query.id);
      if (state.latest === held) {  // else a newer answer, or an undo, is what the line shows
        showLast(`last answer: ${answerText(held.answer)} (query ${held.query.id}) - saved`, "saved");
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

// Takes back the last key press: a step of the ranking on screen, else the answer held back (its
// query comes back as it was before the step that completed it), else says that saved is saved.
function undo() {
  if (state.entry && state.entry.steps && !state.paused) {
    state.entry.undo();
    showEntry();
    return;
  }
  const held = state.pending;
  if (!held) {
    if (window.prefwrap.saved.length) showLast("The last answer is saved: saved labels are never changed.", "");
    return;
  }
  state.pending = null;
  state.latest = null;
  clearTimeout(held.timer);
  if (state.current) state.queue.unshift(state.current);
  state.queue.unshift(held.query);
  state.answered.delete(held.query.id);
  showLast(`answer to query ${held.query.id} undone: answer it again`, "");
  advance(held.before);
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
  const arrow = state.current && state.current.clips.length === 2 ? PAIR_ARROWS[event.key] : undefined;
  if (/^[1-9]$/.test(event.key)) { event.preventDefault(); act("place", Number(event.key) - 1); }
  else if (arrow !== undefined) { event.preventDefault(); act("place", arrow); }
  else if (KEYS[event.key]) { event.preventDefault(); act(KEYS[event.key]); }
  else if (event.key === "r" || event.key === "R") state.startedAt = performance.now();
  else if (event.key === "Escape") pause();
});
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => act(button.dataset.action, Number(button.dataset.position ?? -1)));
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
  if (held) navigator.sendBeacon(url("/api/answer"), blob(answerBody(held)));
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

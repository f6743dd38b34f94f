// Shared by the three pages: the token, HTTP with it, a WebSocket that reconnects by itself,
// and a small SVG map that draws from positions (optional tile layer, works offline).
"use strict";

// The link's token comes in the address (?token=...), as links are handed out. Once read it is
// kept for this tab only (sessionStorage) and taken out of the address, so the address bar, the
// history and an address copied to share ("look at this order": /ops?order=o1) never carry it;
// the other parameters stay. A load without ?token= (a reload, back, forward) reads it back.
// Where the browser keeps no storage the token stays in the address, so that a reload still works.
//
// One kept token per page path and subject: a customer's token is not tried on another order's
// page (/track/<id>), nor a kitchen's on the board an operator opened for another kitchen
// (/merchant?merchant_id=m1; the ops page's ?order= only picks the order it shows, any operator
// token shows any). A new link opened in a tab that kept one for the same page keeps the earlier
// one aside until the new one has worked once (the page's order, snapshot or socket); should the server
// refuse the new one first (revoked, another order's), the earlier one is kept again: the refused
// link says why, and back (or a reload) shows the page that worked, not the refusal for good.
const SUBJECT_PARAMS = ["merchant_id"];
const TOKEN_KEY = (() => {
  const params = new URLSearchParams(location.search);
  const subject = new URLSearchParams(SUBJECT_PARAMS.filter((p) => params.has(p)).map((p) => [p, params.get(p)])).toString();
  return `tracker.token:${location.pathname}${subject ? `?${subject}` : ""}`;
})();
const EARLIER_KEY = `${TOKEN_KEY}#earlier`;  // the token kept before this one, until this one has worked
function takeToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  try {
    const kept = sessionStorage.getItem(TOKEN_KEY);
    if (given === null) return kept || "";
    if (kept && kept !== given) sessionStorage.setItem(EARLIER_KEY, kept);
    sessionStorage.setItem(TOKEN_KEY, given);
  } catch { return given || ""; }
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return given;
}
export const token = takeToken();
let tokenWorked = false;
// The server took the token for what the page is for (its order read, its snapshot, its socket
// online; not any one request: a kitchen's token reads the kitchen's order on the ops page, whose
// snapshot it may not read): the one kept aside before it is not needed any more.
export function tokenTaken() {
  if (tokenWorked) return;
  tokenWorked = true;
  try { sessionStorage.removeItem(EARLIER_KEY); } catch { /* (no storage: nothing kept) */ }
}
// The server refused the token before it ever worked: the one kept before it comes back.
function tokenRefused() {
  if (tokenWorked) return;
  try {
    const earlier = sessionStorage.getItem(EARLIER_KEY);
    if (earlier === null) return;
    if (sessionStorage.getItem(TOKEN_KEY) === token) sessionStorage.setItem(TOKEN_KEY, earlier);
    sessionStorage.removeItem(EARLIER_KEY);
  } catch { /* (no storage: nothing kept) */ }
}

// The token's `sub` (the kitchen, order or operator it is for), read without checking it, for
// display only: the server checks the token on every request.
export function tokenSubject() {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).sub || "";
  } catch { return ""; }
}

// An HTTP failure. `refused` when asking again cannot help (the link's token is missing, bad,
// expired or outside its scope, or the thing it names does not exist): the page stops and says
// so. Only the service itself refuses: its answer is its JSON error (`{"error": {"code", ...}}`).
// A 4xx without one comes from something in front of it (a proxy asking for its own HTTP Basic
// login, a gateway's error page): the service was not reached, which, like network errors, 5xx
// (503 redis_unavailable) and 408/429, is worth retrying, and says nothing about the link.
export class ApiError extends Error {
  constructor(status, code, message, detail = {}, fromService = true) {
    super(`${code}: ${message}`);
    this.status = status; this.code = code;
    this.detail = detail;  // the error's other fields (an invalid_transition's `already`, `order_status`)
    this.refused = fromService && status >= 400 && status < 500 && status !== 408 && status !== 429;
  }
}

// The token goes in a header of the service's own, X-Tracker-Token, not in Authorization: a page
// that sets Authorization replaces what the browser would send there by itself, the HTTP Basic
// login of a proxy in front of the service (which then turns every request down). Never from the
// browser's cache: an answer is the state now, for this token (a page opened by Back reused the
// 403 another link's token had been given at the same address).
export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers["X-Tracker-Token"] = token;
  const response = await fetch(path, { cache: "no-store", ...options, headers });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok || body === null) {
    const fromService = typeof body?.error?.code === "string";
    throw new ApiError(response.status, fromService ? body.error.code : `http_${response.status}`,
      body?.error?.message || response.statusText || "no readable answer", body?.error || {}, fromService);
  }
  return body;
}

// A step answered `redis_unavailable` is "not known to be done": Redis may still run it when it
// wakes. Read the order until the server answers, and once more after that (the first answer may
// come from a read Redis took before the step that waited with it), every `everyMs`, for at most
// `withinMs`: resolves to the order as it then stands, or null if the server never answered.
export function settle(id, options = {}) {
  return settleRead((signal) => api(`/v1/orders/${encodeURIComponent(id)}`, { signal }), options);
}

// settle() for any read: `read(signal)` (an api() call given an abort signal; each read is given
// up after 8 s, as on a stalled path it could hang for minutes) until the server answers, then
// once more; resolves to that second answer, or null if the server never answered (or refused).
export async function settleRead(read, { everyMs = 2000, withinMs = 120_000 } = {}) {
  const until = performance.now() + withinMs;
  let answered = false;
  while (performance.now() < until) {
    try {
      const body = await read(AbortSignal.timeout(8000));
      if (answered) return body;
      answered = true;
      continue;
    } catch (err) {
      if (err.refused) return null;  // (the order is gone, or the link: nothing more to learn)
    }
    await new Promise((done) => setTimeout(done, everyMs));
  }
  return null;
}

// Why a link was refused, for people, from the server's reason (`code: message`): plain words
// only. The reason itself is kept for whoever has to look into it: in the banner's
// `data-reason` and the console, and after the words on the ops page (`detail`).
const PLAIN = [
  [/^unauthorized: token expired/, "it has expired"],
  [/^unauthorized: token revoked/, "it has been revoked"],
  [/^unauthorized: missing token/, "it is incomplete: the address has no token"],
  [/^unauthorized/, "it is damaged or not from this service"],
  [/^forbidden/, "it is for another order, kitchen or role"],
  [/^not_found/, "there is no such order"],
];
function plainReason(raw) {
  const plain = PLAIN.find(([pattern]) => pattern.test(raw));
  return plain ? plain[1] : "the server turned it down";
}

// Stop for good and say why, in the page's #fatal banner (the offline banner goes away).
// `detail`: the server's own reason follows the words (the ops page: its users look into it).
export function showRefusal(reason, { detail = false } = {}) {
  let el = document.getElementById("fatal");
  if (!el) {
    el = document.createElement("div");
    el.id = "fatal"; el.className = "banner fatal"; el.setAttribute("role", "alert");
    document.body.insertBefore(el, document.querySelector("main"));
  }
  const raw = String(reason || "refused by the server").trim().replace(/[.\s]+$/, "");
  el.dataset.reason = raw;
  console.info(`link refused: ${raw}`);
  tokenRefused();
  el.textContent = `Your link is not valid: ${plainReason(raw)}. Ask for a new link.${detail ? ` (Server: ${raw}.)` : ""}`;
  el.hidden = false;
  const offline = document.getElementById("offline");
  if (offline) offline.hidden = true;
  document.body.dataset.online = "refused";
}

// A close that reconnecting cannot cure: 1008 is an authentication or scope failure (or a
// policy violation) whose reason names it, except `too_slow`, which asks to reconnect.
function isRefusal(event) {
  return event.code === 1008 && !String(event.reason || "").startsWith("too_slow");
}

// A socket that reconnects with backoff; url() is called again on each attempt (resume ids).
// Only connectivity losses (1006, 1001, 1011, 1013, ...) are retried: a refusal (1008) stops it
// and goes to onRefused(reason), by default a banner saying what is wrong with the link.
// The page counts as online once the socket proves itself (its first message, or a second
// open): a full server accepts and closes at once (1013), and must not flash it online.
//
// A path that stops moving bytes with the socket still open (a frozen network, a NAT or proxy
// that forgot the connection) closes nothing the page can see, so the socket checks itself:
// after PROBE_IDLE_MS without a frame it sends a `ping` (the server answers `pong`), and when
// nothing at all comes back within its patience it drops the socket and connects again (the
// page goes offline meanwhile, and the new socket resumes where the old one got to). probe()
// asks at once: a page waiting for the answer to a press need not wait for the idle time.
//
// The patience is PROBE_WAIT_MS, or twice the link's round trip where that is longer (a
// link with seconds of latency is slow, not dead), at most PROBE_WAIT_MAX_MS. The round trip
// is measured by a ping sent on opening, with every check, and
// every REMEASURE_MS however busy the socket: the slowest lately, its weight halving every
// ROUND_TRIP_HALF_LIFE_MS (one slow moment, a handover while the page loads, does not keep a
// fast link's checks slow). A socket dropped for no answer doubles the patience of the next,
// so a link slower than any measure yet still settles.
const ONLINE_AFTER_MS = 1000;
export const PROBE_IDLE_MS = 15_000;
export const PROBE_WAIT_MS = 4_000;
export const PROBE_WAIT_MAX_MS = 30_000;
const REMEASURE_MS = 10_000;
const ROUND_TRIP_HALF_LIFE_MS = 15_000;
const CONNECT_WAIT_MS = 10_000;
export function liveSocket(url, { onMessage, onOnline, onOffline, onRefused = showRefusal }) {
  let ws = null, delay = 500, closedByUs = false, timer = null, openedAt = 0, settling = null, online = false;
  let heardAt = 0, askedAt = 0;  // (performance.now()) the last frame, and the unanswered ping
  let timedAt = 0;  // (performance.now()) when the ping being timed was sent
  let roundTrip = 0, measuredAt = 0;  // (ms) the link's, as measured at measuredAt: see the patience above
  let sockets = 0;  // sockets opened so far: the generation of the current one
  const roundTripNow = () => roundTrip * 0.5 ** ((performance.now() - measuredAt) / ROUND_TRIP_HALF_LIFE_MS);
  const patience = () => Math.min(PROBE_WAIT_MAX_MS, Math.max(PROBE_WAIT_MS, 2 * roundTripNow()));
  const measured = (ms) => { roundTrip = Math.max(ms, roundTripNow()); measuredAt = performance.now(); };
  const confirm = () => {
    clearTimeout(settling);
    if (!online) { online = true; tokenTaken(); onOnline && onOnline(); }
  };
  // Every ping has an `id` (`ping:N`), so its answer says which it answers: the `pong` of the
  // one being timed measures the link, and a refused ping (`rate_limited`) is no press's answer.
  let pings = 0, timedRef = "";
  const sendPing = () => {
    const ref = `ping:${++pings}`;
    ws.send(JSON.stringify({ type: "ping", id: ref }));
    if (timedAt && performance.now() - timedAt < PROBE_WAIT_MAX_MS) return;  // (one timed at a time)
    timedAt = performance.now(); timedRef = ref;
  };
  const ping = () => {
    if (!ws || ws.readyState !== 1 || askedAt) return;
    sendPing();
    askedAt = performance.now();
  };
  const detach = (sock) => { sock.onopen = null; sock.onmessage = null; sock.onclose = null; };
  const closed = (e) => {
    clearTimeout(settling);
    if (closedByUs) return;
    if (isRefusal(e)) { closedByUs = true; onRefused(e.reason || `closed with ${e.code}`); return; }
    onOffline && onOffline();
    // The pauses start again only after a connection that lasted: a full server accepts and
    // closes at once (1013), and must not hear from every page twice a second. Jittered, so
    // pages cut off together do not come back together.
    if (openedAt && Date.now() - openedAt > 10000) delay = 500;
    openedAt = 0;
    timer = setTimeout(connect, delay * (0.5 + Math.random()));
    delay = Math.min(delay * 2, 8000);
  };
  const connect = () => {
    timer = null;
    online = false; askedAt = 0; timedAt = 0; heardAt = performance.now(); sockets += 1;
    const sock = ws = new WebSocket(url());
    sock.onopen = () => {
      openedAt = Date.now(); heardAt = performance.now(); settling = setTimeout(confirm, ONLINE_AFTER_MS);
      sendPing();  // (timed, not a check: its answer measures the link)
    };
    sock.onmessage = (e) => {
      heardAt = performance.now(); askedAt = 0;
      confirm();
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }  // (not the server's: nothing to act on)
      if (msg.type === "pong" && timedAt && msg.ref === timedRef) { measured(heardAt - timedAt); timedAt = 0; }
      if (typeof msg.ref === "string" && msg.ref.startsWith("ping:")) return;  // (the socket's own)
      onMessage(msg);
    };
    sock.onclose = closed;
  };
  // Once a second: a socket open but silent too long is asked, and one that does not answer is
  // dropped; so is one whose opening hangs (a handshake over a dead path never ends by itself).
  setInterval(() => {
    if (closedByUs || !ws || ws.readyState > 1) return;
    const now = performance.now();
    if (ws.readyState === 0 ? now - heardAt > CONNECT_WAIT_MS : askedAt && now - askedAt > patience()) {
      const dead = ws;
      if (askedAt) { roundTrip = patience(); measuredAt = now; }  // (the next socket waits twice as long)
      detach(dead); dead.close();  // (its close may never come back over a dead path: not waited for)
      closed({ code: 1006, reason: "no answer" });
    } else if (now - heardAt > PROBE_IDLE_MS) ping();
    else if (ws.readyState === 1 && now - measuredAt > REMEASURE_MS && (!timedAt || now - timedAt > PROBE_WAIT_MAX_MS)) {
      sendPing();  // (timed, not a check)
    }
  }, 1000);
  connect();
  return {
    // False when the socket is not open (offline): nothing is queued.
    send: (msg) => { if (!ws || ws.readyState !== 1) return false; ws.send(JSON.stringify(msg)); return true; },
    // Check the socket now (a press waits for its answer): dropped if nothing comes back within its patience.
    probe: ping,
    // (ms) How long a check waits for an answer on this link (see the patience above).
    get patience() { return patience(); },
    // When the last frame came (performance.now()): the socket was alive then.
    get heardAt() { return heardAt; },
    // Which socket this is (1, 2, ...: each reconnect opens the next): what was sent on an
    // earlier one may never have reached the server, whatever the current one hears.
    get generation() { return sockets; },
    // Drop this socket and open a fresh one at once (url() is asked again).
    restart: () => {
      if (ws) { detach(ws); ws.close(); }
      clearTimeout(timer);
      clearTimeout(settling);
      connect();
    },
    close: () => { closedByUs = true; clearTimeout(timer); ws && ws.close(); },
    get raw() { return ws; },
  };
}

// The server's clock (which a replay may run faster than real time), from /healthz:
// now() is the server's time in ms. Falls back to this machine's clock if /healthz does not answer.
export async function serverClock() {
  let base = Date.now(), at = base, scale = 1;
  const sync = async () => {
    try {
      const sent = Date.now();
      const response = await fetch("/healthz", { cache: "no-store", signal: AbortSignal.timeout(3000) });
      const body = await response.json();
      const received = Date.now();
      if (Number.isFinite(body.ts)) { base = body.ts; at = (sent + received) / 2; scale = body.time_scale > 0 ? body.time_scale : 1; }
    } catch { /* keep the last estimate */ }
  };
  await sync();
  return { now: () => base + (Date.now() - at) * scale, get scale() { return scale; }, sync };
}

// Write text only when it changes: a live region that is rewritten with the same words (an ETA
// on every fix) is read out again by a screen reader.
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// Show or hide the #offline banner. It sits in a polite live region that is always in the page
// (a region that appears already filled is not reliably read), beside #back-online, which says
// so when the connection is back (for those who cannot see the banner go).
export function setOffline(offline) {
  const banner = document.getElementById("offline");
  if (!banner) return;
  const back = document.getElementById("back-online");
  if (back) setText(back, !offline && !banner.hidden ? "Back online." : "");
  banner.hidden = !offline;
}

export function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

const REDUCED_MOTION = matchMedia("(prefers-reduced-motion: reduce)");
const GLIDE_MAX_MARKERS = 40;  // markers on one map beyond which they jump rather than glide

const SVG = "http://www.w3.org/2000/svg";
// A dot is drawn at least this share of its size in CSS pixels (a 360 px phone shows the 800-unit
// map at under half size), and a clickable one catches a press within HIT_PX of its centre: a
// 44 px target, whatever the screen and the zoom.
const MIN_DOT_SCALE = 0.75;
export const HIT_PX = 22;

// SVG map: an equirectangular view fitted to the points it is given. Layers from the bottom:
// tile images, areas, the invisible hit areas of clickable dots (riders' above points'), points,
// then markers (riders), so a rider is never hidden under a point.
export class VectorMap {
  constructor(svg, tileUrl = "") {
    this.svg = svg; this.tileUrl = tileUrl; this.markers = new Map(); this.bounds = null;
    this.layers = {};
    for (const name of ["tiles", "areas", "hits", "marker-hits", "points", "markers"]) {
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("data-layer", name); svg.appendChild(g); this.layers[name] = g;
    }
    this.layers.hits.setAttribute("aria-hidden", "true"); this.layers["marker-hits"].setAttribute("aria-hidden", "true");
    this.view = { x: 0, y: 0, w: 800, h: 600 };
    this.userView = false;  // zoomed or moved by the user: fit() leaves the view alone until reset
    svg.setAttribute("viewBox", "0 0 800 600");
    // A phone turned, a window resized: the dots and hit areas keep their size on screen.
    this.widthPx = 0;  // the map's width on screen (CSS px), measured once and on each resize
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(([entry]) => { this.widthPx = entry.contentRect.width; this.resize(); }).observe(svg);
    }
  }
  // Map units per CSS pixel now (the map's own units when it is not laid out).
  unitsPerPx() {
    if (!this.widthPx) this.widthPx = this.svg.getBoundingClientRect().width;
    return this.widthPx > 0 ? this.view.w / this.widthPx : this.view.w / 800;
  }
  // How much larger than its radius a dot is drawn in the current view: the same size on screen
  // whatever the zoom, and never under MIN_DOT_SCALE CSS pixels per unit of radius.
  dotScale() { return Math.max(this.view.w / 800, MIN_DOT_SCALE * this.unitsPerPx()); }
  // Every dot and hit area sized again for the view and the screen.
  resize() {
    const k = this.dotScale(), hit = HIT_PX * this.unitsPerPx();
    for (const el of this.svg.querySelectorAll("[data-r]")) this.shape(el, k);
    for (const el of this.svg.querySelectorAll("[data-hit]")) el.setAttribute("r", hit);
  }
  // Draws `el` (a dot from point() or moveMarker()) at its size now (`k`: dotScale()): a circle's
  // radius, or a square's, diamond's or triangle's corners around its centre (data-x, data-y).
  shape(el, k = this.dotScale()) {
    const r = Number(el.dataset.r) * k, shape = el.dataset.shape || "circle";
    if (shape === "circle") { el.setAttribute("r", r); return; }
    const x = Number(el.dataset.x), y = Number(el.dataset.y);
    if (shape === "square") {
      const a = r * 0.85;
      el.setAttribute("x", x - a); el.setAttribute("y", y - a); el.setAttribute("width", 2 * a); el.setAttribute("height", 2 * a);
    } else if (shape === "diamond") {
      const a = r * 1.2;
      el.setAttribute("points", `${x},${y - a} ${x + a},${y} ${x},${y + a} ${x - a},${y}`);
    } else {  // triangle, point up
      const a = r * 1.2;
      el.setAttribute("points", `${x},${y - a} ${x + a},${y + 0.8 * a} ${x - a},${y + 0.8 * a}`);
    }
  }
  // An invisible circle of HIT_PX around (x, y) in `layer` carrying `data` (data-* attributes),
  // so a finger need not land on the dot itself.
  hitArea(layer, x, y, data) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", HIT_PX * this.unitsPerPx());
    c.setAttribute("fill", "transparent"); c.setAttribute("pointer-events", "all");
    c.dataset.hit = "";
    for (const [k, v] of Object.entries(data)) c.dataset[k] = v;
    this.layers[layer].appendChild(c);
    return c;
  }
  // Zoom by `factor` (above 1: in) around the map point (cx, cy), or move by (dx, dy) in map units.
  zoom(factor, cx = this.view.x + this.view.w / 2, cy = this.view.y + this.view.h / 2) {
    const w = Math.min(3200, Math.max(25, this.view.w / factor)), h = w * 0.75;  // (out to 4 times the fit)
    this.setView({ x: cx - (cx - this.view.x) * (w / this.view.w), y: cy - (cy - this.view.y) * (h / this.view.h), w, h });
  }
  pan(dx, dy) { this.setView({ ...this.view, x: this.view.x + dx, y: this.view.y + dy }); }
  // Whether a position is inside the part of the map on screen.
  shows(lat, lng) {
    if (!this.px) return false;
    const [x, y] = this.px(lat, lng), v = this.view;
    return x >= v.x && x <= v.x + v.w && y >= v.y && y <= v.y + v.h;
  }
  resetView() { this.userView = false; this.bounds = null; this.setView({ x: 0, y: 0, w: 800, h: 600 }, false); }
  // Whether the current fit still suits ``points``: all inside it, spanning at least ``share`` of
  // it along one axis (so a map is not fitted again, and does not jump, at every refresh).
  suits(points, share = 0.5) {
    const b = this.bounds;
    if (!b || !this.px || !points.length) return false;
    const lats = points.map((p) => p[0]), lngs = points.map((p) => p[1]);
    const [s, n, w, e] = [Math.min(...lats), Math.max(...lats), Math.min(...lngs), Math.max(...lngs)];
    if (s < b.s || n > b.n || w < b.w || e > b.e) return false;
    return n - s >= share * (b.n - b.s) || e - w >= share * (b.e - b.w);
  }
  setView(view, byUser = true) {
    this.view = view; this.userView = byUser || this.userView;
    this.svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    this.svg.style.touchAction = this.userView ? "none" : "";  // zoomed in, a finger moves the map, not the page
    this.resize();  // dots keep their size on screen whatever the zoom
  }
  // Wheel zooms around the pointer, a mouse drag moves the map; a finger does too once the map
  // is zoomed or moved (before that it scrolls the page, as it always did).
  enableZoom() {
    const toMap = (ev) => {
      const box = this.svg.getBoundingClientRect();
      return [this.view.x + (ev.clientX - box.left) / box.width * this.view.w,
        this.view.y + (ev.clientY - box.top) / box.height * this.view.h];
    };
    this.svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      this.zoom(ev.deltaY < 0 ? 1.25 : 0.8, ...toMap(ev));
    }, { passive: false });
    // The pointer is captured only once it has moved a few pixels: a press that stays put is a
    // click on the dot under it (capturing at once would send the click to the map instead).
    let drag = null;
    this.svg.addEventListener("pointerdown", (ev) => {
      if (ev.pointerType === "mouse" ? ev.button !== 0 : !this.userView) return;
      drag = { x: ev.clientX, y: ev.clientY, moving: false };
    });
    this.svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      if (!drag.moving) {
        if (Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y) < 4) return;
        drag.moving = true; this.svg.setPointerCapture(ev.pointerId);
      }
      const box = this.svg.getBoundingClientRect();
      this.pan(-(ev.clientX - drag.x) / box.width * this.view.w, -(ev.clientY - drag.y) / box.height * this.view.h);
      drag = { x: ev.clientX, y: ev.clientY, moving: true };
    });
    const stop = () => { drag = null; };
    this.svg.addEventListener("pointerup", stop); this.svg.addEventListener("pointercancel", stop);
  }
  fit(points, padding = 0.15) {
    const lats = points.map((p) => p[0]), lngs = points.map((p) => p[1]);
    let [s, n, w, e] = [Math.min(...lats), Math.max(...lats), Math.min(...lngs), Math.max(...lngs)];
    const dl = Math.max(n - s, 0.004) * padding, dg = Math.max(e - w, 0.004) * padding;
    this.bounds = { s: s - dl, n: n + dl, w: w - dg, e: e + dg };
    const k = Math.cos(((s + n) / 2) * Math.PI / 180);
    const width = (this.bounds.e - this.bounds.w) * k, height = this.bounds.n - this.bounds.s;
    const scale = Math.min(800 / width, 600 / height);
    this.px = (lat, lng) => [400 + (lng - (this.bounds.w + this.bounds.e) / 2) * k * scale, 300 - (lat - (this.bounds.s + this.bounds.n) / 2) * scale];
    this.drawTiles();
  }
  drawTiles() {
    if (!this.tileUrl || !this.bounds) return;
    this.layers.tiles.replaceChildren();
    const z = 14, n = 2 ** z;
    const tx = (lng) => Math.floor((lng + 180) / 360 * n);
    const ty = (lat) => { const r = lat * Math.PI / 180; return Math.floor((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2 * n); };
    const lngOf = (x) => x / n * 360 - 180;
    const latOf = (y) => Math.atan(Math.sinh(Math.PI * (1 - 2 * y / n))) * 180 / Math.PI;
    for (let x = tx(this.bounds.w); x <= tx(this.bounds.e); x++) {
      for (let y = ty(this.bounds.n); y <= ty(this.bounds.s); y++) {
        const [x0, y0] = this.px(latOf(y), lngOf(x)), [x1, y1] = this.px(latOf(y + 1), lngOf(x + 1));
        const img = document.createElementNS("http://www.w3.org/2000/svg", "image");
        // (every {z}, {x} and {y}, wherever they stand: a host "{z}.tiles.example", a query "?v={z}")
        img.setAttribute("href", this.tileUrl.replaceAll("{z}", z).replaceAll("{x}", x).replaceAll("{y}", y));
        img.setAttribute("x", x0); img.setAttribute("y", y0); img.setAttribute("width", x1 - x0); img.setAttribute("height", y1 - y0);
        this.layers.tiles.appendChild(img);
      }
    }
  }
  // A dot; `shape` "square", "diamond" or "triangle" tells it from others by more than its
  // colour. With `hit` (data-* attributes, e.g. { openOrder: "o7" }) it is clickable: the dot and
  // a HIT_PX hit area under the points carry them. `layer` "points" (the default) is under the riders.
  point(id, lat, lng, { color = "#2b6cb0", r = 8, label = "", layer = "points", shape = "circle", hit = null } = {}) {
    const [x, y] = this.px(lat, lng);
    const c = document.createElementNS(SVG, shape === "circle" ? "circle" : shape === "square" ? "rect" : "polygon");
    c.dataset.shape = shape; c.dataset.r = r; c.dataset.x = x; c.dataset.y = y;
    if (shape === "circle") { c.setAttribute("cx", x); c.setAttribute("cy", y); }
    this.shape(c);
    c.setAttribute("fill", color);
    c.setAttribute("data-id", id);
    if (label) { const t = document.createElementNS(SVG, "title"); t.textContent = label; c.appendChild(t); }
    if (hit) {
      for (const [k, v] of Object.entries(hit)) c.dataset[k] = v;
      this.hitArea("hits", x, y, { ...hit, of: layer, hitFor: id });
    }
    this.layers[layer].appendChild(c);
    return c;
  }
  polygon(id, boundary, fill, label) {
    const p = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    p.setAttribute("points", boundary.map(([la, ln]) => this.px(la, ln).join(",")).join(" "));
    p.setAttribute("fill", fill); p.setAttribute("stroke", "#2d3748"); p.setAttribute("stroke-width", "1");
    p.setAttribute("vector-effect", "non-scaling-stroke");
    p.setAttribute("data-cell", id);
    const t = document.createElementNS("http://www.w3.org/2000/svg", "title"); t.textContent = label; p.appendChild(t);
    this.layers.areas.appendChild(p);
  }
  // A marker that glides to each new position (animation over ~1 s), or jumps there when the
  // user asks for reduced motion, when the tab is hidden, or when the map holds more than
  // GLIDE_MAX_MARKERS markers (the ops page's fleet: hundreds of glides every poll kept a third of
  // a core busy at 300 riders and made the page janky at thousands); one that has not moved is
  // left still (no animation to run).
  // With `hit` (data-* attributes) the marker is clickable, as point()'s dots are; its hit area
  // moves with it, above every point's.
  moveMarker(id, lat, lng, { color = "#c53030", label = "", r = 11, hit = null } = {}) {
    let m = this.markers.get(id);
    const target = this.px(lat, lng);
    if (!m) {
      const c = document.createElementNS(SVG, "circle");
      c.dataset.r = r; this.shape(c);
      c.setAttribute("fill", color); c.setAttribute("stroke", "#fff"); c.setAttribute("stroke-width", "3");
      c.setAttribute("vector-effect", "non-scaling-stroke");
      c.setAttribute("data-marker", id);
      if (label) { const t = document.createElementNS(SVG, "title"); t.textContent = label; c.appendChild(t); }
      this.layers.markers.appendChild(c);
      m = { el: c, pos: target, from: target, to: target, start: 0, hit: null };
      if (hit) {
        for (const [k, v] of Object.entries(hit)) c.dataset[k] = v;
        m.hit = this.hitArea("marker-hits", target[0], target[1], { ...hit, hitFor: id });
      }
      this.markers.set(id, m);
      c.setAttribute("cx", target[0]); c.setAttribute("cy", target[1]);
    }
    m.el.dataset.lat = lat; m.el.dataset.lng = lng;
    const title = m.el.querySelector("title");
    if (title && label && title.textContent !== label) title.textContent = label;  // a state that changed (e.g. busy -> silent) shows on hover
    if (Math.abs(target[0] - m.to[0]) < 0.1 && Math.abs(target[1] - m.to[1]) < 0.1) return;  // not moved
    m.from = m.pos; m.to = target; m.start = performance.now();
    const still = REDUCED_MOTION.matches || document.hidden || this.markers.size > GLIDE_MAX_MARKERS;
    const step = (now) => {
      const t = still ? 1 : Math.min(1, (now - m.start) / 900);
      m.pos = [m.from[0] + (m.to[0] - m.from[0]) * t, m.from[1] + (m.to[1] - m.from[1]) * t];
      m.el.setAttribute("cx", m.pos[0]); m.el.setAttribute("cy", m.pos[1]);
      if (m.hit) { m.hit.setAttribute("cx", m.pos[0]); m.hit.setAttribute("cy", m.pos[1]); }
      if (t < 1) requestAnimationFrame(step);
    };
    if (still) step(m.start); else requestAnimationFrame(step);
  }
  removeMarker(id) { const m = this.markers.get(id); if (m) { m.el.remove(); m.hit?.remove(); this.markers.delete(id); } }
  // Empties a layer, and the hit areas of its dots.
  clear(layer) {
    this.layers[layer].replaceChildren();
    for (const h of this.layers.hits.querySelectorAll(`[data-of="${layer}"]`)) h.remove();
  }
}

// Words a client wrote (a reason: a cancel's, a pause's, a take-back's, a failed delivery's) shown
// within the page's own: in a <bdi>, which the browser isolates (unicode-bidi: isolate), so
// direction controls in them (U+202E) or a right-to-left script cannot reorder the words around
// them. New reasons with bidi controls are refused by the server; older stored ones still come.
export function isolated(text) {
  const el = document.createElement("bdi");
  el.textContent = text;
  return el;
}
// The same for text that takes no markup (window.confirm): between U+2068 FSI and U+2069 PDI.
export const isolatedText = (text) => `\u2068${text}\u2069`;

// The longest reason the server takes (a cancel's, a take-back's, a failed delivery's), in
// characters as it counts them: code points, so an emoji is one, not the two UTF-16 units of
// its `.length`.
export const MAX_REASON = 200;
export const reasonLength = (text) => [...text].length;

// Asks (and asks again, with the words kept, when too long or when one is required and none was
// given) for a reason; the reason trimmed, or null when dismissed.
export function askReason(question, required) {
  let reason = "", asking = question;
  for (;;) {
    reason = window.prompt(asking, reason);
    if (reason === null) return null;
    reason = reason.trim();
    const length = reasonLength(reason);
    if (length > MAX_REASON) asking = `At most ${MAX_REASON} characters, please (${length} now). ${question}`;
    else if (required && !reason) asking = `A reason is required. ${question}`;
    else return reason;
  }
}

// A server time as the clock on the wall shows it ("12:05").
export const clockTime = (ts) => new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

export function minutesFrom(ts, nowTs) {
  return Math.max(0, Math.round((ts - nowTs) / 60000));
}

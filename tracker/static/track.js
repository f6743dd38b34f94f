// The customer's page: the order's timeline, the rider on the map, a live ETA; resumes gaplessly.
import { api, clockTime, isolated, liveSocket, minutesFrom, serverClock, setOffline, setText, showRefusal, token, tokenTaken, VectorMap, wsUrl } from "/static/common.js";

const STEPS = [
  ["placed", "Order placed"], ["confirmed", "Restaurant confirmed"], ["food_ready", "Food ready"],
  ["assigned", "Rider assigned"], ["at_pickup", "Rider at the restaurant"], ["picked_up", "On the way"],
  ["at_dropoff", "Rider at your door"], ["delivered", "Delivered"],
];
// Final statuses that end the order without a delivery: the timeline stops there.
const ENDED_EARLY = [["cancelled", "Cancelled"], ["failed", "Delivery failed"]];
const FINAL = ["delivered", ...ENDED_EARLY.map(([kind]) => kind)];
const COLLECTED = ["picked_up", "at_dropoff", "delivered"];
const CARRYING = ["assigned", "at_pickup", "picked_up", "at_dropoff"];
// The rider's position is called old after the server's TRACKER_STALE_AFTER_S (as on the ops page).
const SILENT_AFTER_MS = Number(document.body.dataset.staleAfterMs) || 30_000;
// The order's id, from the address; null when it cannot be decoded (a link cut short inside a
// %-escape, as an SMS client may: "/track/%E0%A4"), which the page refuses as a link to no order
// instead of stopping here with an exception and "Loading…" for good.
const orderId = (() => {
  try { return decodeURIComponent(location.pathname.split("/").pop()); } catch { return null; }
})();
const $ = (id) => document.getElementById(id);
const map = new VectorMap($("map"), document.body.dataset.tileUrl.startsWith("{{") ? "" : document.body.dataset.tileUrl);
let lastEventId = null;
let lastFixTs = null;  // server time of the rider's last position shown (null: none since the page opened)
let watchedSince = null;  // server time since when a silence counts without any fix: the page's opening, then each assignment
const seen = new Set();
let status = null;
let refusedNow = false;  // the server refused the link: nothing of the order is shown any more
let handedBack = false;  // the order's rider gave it back and no other has it yet
// The kitchen's latest delay while the food is not ready (null: none): `{at}`, its new ready time,
// or, for delays before the confirm (no ready time yet: `ready_at` null), `{minutes, prep}`: the
// minutes they add up to and the preparation they make, counted from the confirm to come (the
// latest event's `prep_minutes`). The confirm turns that into a ready time: `{at}` again.
let kitchenDelay = null;

// The steps the order went through (its events), and those still to come; a step passed over
// without its event (food collected that the kitchen never called ready) is left out, not
// ticked: only what happened shows as done. An order that ended early lists what happened alone.
function renderTimeline() {
  const list = $("timeline");
  const ended = ENDED_EARLY.find(([kind]) => seen.has(kind));
  const chain = STEPS.map(([kind]) => kind).filter((kind) => kind !== "food_ready");
  const passed = (kind) => (kind === "food_ready" ? COLLECTED : chain.slice(chain.indexOf(kind) + 1)).some((k) => seen.has(k));
  const shown = STEPS.filter(([kind]) => seen.has(kind) || (!ended && !passed(kind)));
  list.replaceChildren(...shown.map(([kind, label]) => {
    const li = step(label, seen.has(kind));
    li.dataset.kind = kind;
    if (kind === status) li.setAttribute("aria-current", "step");
    return li;
  }));
  if (ended) {
    const li = step(ended[1], true); li.dataset.kind = ended[0]; li.setAttribute("aria-current", "step"); list.appendChild(li);
  }
}

// A step of the timeline; a screen reader hears "done" where the eye sees a filled dot.
function step(label, done) {
  const li = document.createElement("li");
  li.textContent = label;
  if (done) {
    li.className = "done";
    const said = document.createElement("span"); said.className = "sr-only"; said.textContent = " (done)";
    li.appendChild(said);
  }
  return li;
}

function apply(event) {
  lastEventId = event.id;
  if (event.kind === "rider_unassigned") {  // back to waiting for a rider: no rider, no ETA
    seen.delete("assigned"); seen.delete("at_pickup"); status = "confirmed"; map.removeMarker("rider"); setEta("–");
    etaTs = null; plannedTs = null;  // the dispatcher's next round plans it afresh
  }
  else { seen.add(event.kind); if (!event.kind.startsWith("food_")) status = event.kind; }
  noteDelay(event);
  setText($("eta-label"), status === "delivered" ? "Delivered at" : status === "at_dropoff" ? "Arriving" : "Arriving in");
  $("eta-line").hidden = status !== "delivered" && FINAL.includes(status);  // no ETA for an order that will not come
  if (FINAL.includes(status)) {
    map.removeMarker("rider");
    setEta(status === "delivered" && Number.isFinite(event.ts) ? clockTime(event.ts) : "–");
  }
  if (status === "at_dropoff") setEta("now");  // the rider is at the door: "Arriving now"
  if (event.kind === "assigned") { lastFixTs = null; watchedSince = Math.max(watchedSince ?? 0, Number.isFinite(event.ts) ? event.ts : 0); }  // a new rider: its silence counts from its assignment
  renderEta();
  showSilence();
  if (!onTheWay()) $("stops-note").hidden = true;  // (no rider, ended, or at the door)
  // A rider who gave the order back is said so, until another takes it: not a silent step back.
  if (event.kind === "rider_unassigned") handedBack = true;
  else if (event.kind === "assigned" || FINAL.includes(event.kind)) handedBack = false;
  if (status === "cancelled") showStatus(...cancelledText(event));
  else if (status === "failed") showStatus(...failedText(event));
  else showStatus(handedBack ? "Your rider could not bring this order; finding another rider"
    : (STEPS.find(([k]) => k === status) || [status, status])[1]);
  $("status").dataset.status = status;
  if (!ENDED_EARLY.some(([kind]) => kind === status)) showNextStep(null);
  else if (event.kind === status) showNextStep(event);  // (the order's last event: nothing follows it)
  renderTimeline();
  describeMap();
}

const BY = { merchant: "the restaurant", operator: "the service", customer: "you" };
// A status and the reason of the step that ended the order, as [text, reason] ("" for none).
const withReason = (text, event) => [text, typeof event.reason === "string" ? event.reason : ""];
function cancelledText(event) {
  return withReason(`Cancelled${BY[event.by] ? ` by ${BY[event.by]}` : ""}`, event);
}
// The service ended the order after pickup: the food will not arrive.
const failedText = (event) => withReason("Delivery failed", event);
// The status line (a live region). An ended order's reason is shown after it but not read out
// there: the next-step box, read as it appears, says it ("What happened: ..."), so it is heard once.
function showStatus(text, reason = "") {
  const el = $("status");
  if (el.textContent === (reason ? `${text}: ${reason}` : text)) return;
  if (!reason) { el.textContent = text; return; }
  const seenOnly = document.createElement("span"); seenOnly.setAttribute("aria-hidden", "true"); seenOnly.append(": ", isolated(reason));
  el.replaceChildren(text, seenOnly);
}

// What the customer of an order that ended without a delivery is to do next, in plain words:
// what happened and why (a failed delivery's or a cancel's reason: the ops page and the kitchen
// board ask for it as words the customer is shown), whether anyone will be in touch or anything
// is to be done, and the order's reference to quote. `ended`: the failed or cancelled event, or
// null to hide it. A cancel comes before pickup: where the order had got to says what was lost.
function showNextStep(ended) {
  const box = $("next-step");
  box.hidden = !ended;
  if (!ended) { box.replaceChildren(); delete box.dataset.kind; delete box.dataset.text; return; }
  const reason = typeof ended.reason === "string" ? ended.reason.trim().replace(/[.\s]+$/, "") : "";
  const why = reason ? [" What happened: ", isolated(reason), "."] : [];  // (isolated: "." and the sentences after it stay in place)
  const para = (...parts) => { const p = document.createElement("p"); p.append(...parts); return p; };
  const ref = document.createElement("strong"); ref.className = "reference"; ref.textContent = orderId;
  const text = ended.kind === "failed" ? [
    para("We are sorry: your food will not arrive.", ...(why.length ? why : [" The rider could not complete the delivery."])),
    para("You do not need to do anything now: the restaurant or our support team will contact you about what happens next."),
    para("If you contact them, quote your order reference ", ref, "."),
  ] : cancelledNextStep(ended.by, why, para, ref);
  const key = text.map((p) => p.textContent).join("\n");
  box.dataset.kind = ended.kind;
  if (box.dataset.text !== key) { box.replaceChildren(...text); box.dataset.text = key; }  // (read out once)
}

// Who cancelled (the event's `by`), as the next step says it.
const CANCELLED_WHO = { merchant: "the restaurant cancelled your order", operator: "our service cancelled your order",
  customer: "you cancelled this order" };
// The next step of a cancelled order: who cancelled it and how far it had got (a cancel always
// comes before the food left the restaurant: nothing is on its way), that nothing is to be done,
// and the reference to quote.
function cancelledNextStep(by, why, para, ref) {
  const rider = seen.has("assigned") || seen.has("at_pickup");  // (a rider who gave it back is no longer on it)
  const when = rider ? "before the rider collected it" : seen.has("confirmed") ? "before a rider collected it"
    : by === "merchant" ? "instead of accepting it" : "before the restaurant accepted it";
  const who = CANCELLED_WHO[by] || "your order was cancelled";
  const sorry = by === "customer" ? "Y" + who.slice(1) : `We are sorry: ${who}`;
  return [
    para(`${sorry} ${when}. Nothing will be delivered${rider ? " and the rider is not coming" : ""}.`, ...why),
    para("You do not need to do anything: the order is closed. If you still want food, place a new order."),
    para("If you have a question about it, contact our support team and quote your order reference ", ref, "."),
  ];
}

// The drop-off estimate while a rider has the order (null: none), counted down against the
// server clock rather than from the position it came with, so the ETA of a rider gone silent
// still runs down; a minute past it the page says the rider is late instead of repeating a
// number. At the door it says "now" (set by apply).
let etaTs = null;
// The ETA's text: a figure ("12 min", "now", a time) shows large, words ("finding a rider") smaller.
function setEta(text) {
  setText($("eta"), text);
  $("eta").classList.toggle("words", text.length > 5 && !/^\d/.test(text));
}
// Before that, while the order waits for a rider: the dispatcher's planned drop-off (null: no
// rider can be planned for it now), re-planned every few seconds.
let plannedTs = null;
const LATE_AFTER_MS = 60_000;
function showEta(eta) { etaTs = eta; renderEta(); }
function showPlanned(eta) { plannedTs = Number.isFinite(eta) ? eta : null; renderEta(); }
function renderEta() {
  if (refusedNow) return;
  if (status === "placed") {  // nothing to plan before the kitchen takes the order
    setText($("eta-label"), "Estimated arrival:");
    setEta("once the restaurant confirms");
    return;
  }
  if (status === "confirmed") {  // no rider yet: the plan's estimate, or why there is none
    setText($("eta-label"), plannedTs === null ? "Estimated arrival:" : "Estimated arrival in");
    setEta(plannedTs === null ? "finding a rider" : `${Math.max(1, minutesFrom(plannedTs, clock.now()))} min`);
    return;
  }
  if (!CARRYING.includes(status) || status === "at_dropoff") return;
  if (etaTs === null) {  // a rider has it, but the server has no estimate yet (no position from it so far)
    setText($("eta-label"), "Estimated arrival:");
    setEta("once the rider's position comes in");
    return;
  }
  const late = clock.now() - etaTs > LATE_AFTER_MS;
  setText($("eta-label"), late ? "Arriving" : "Arriving in");
  setEta(late ? "later than estimated" : `${Math.max(1, minutesFrom(etaTs, clock.now()))} min`);
}

// The map's text alternative: what it shows, and how far the rider is from the address.
function describeMap() {
  const rider = map.markers.get("rider"), home = base[1];
  let text = "Map with the restaurant and your address";
  if (rider && home) {
    const lat = Number(rider.el.dataset.lat), lng = Number(rider.el.dataset.lng);
    const k = Math.cos(((lat + home[0]) / 2) * Math.PI / 180);
    const metres = 111_195 * Math.hypot(lat - home[0], (lng - home[1]) * k);
    text += `; your rider is ${metres < 950 ? `${Math.max(50, Math.round(metres / 50) * 50)} m` : `${(metres / 1000).toFixed(1)} km`} from your address`;
  }
  $("map").setAttribute("aria-label", text);
  $("legend-rider").hidden = !rider;  // the legend lists what the map shows: a rider only while one is drawn
}

// The map is fitted to the restaurant and the address; a rider outside that view widens it.
let base = [];
function fitMap(extra = []) {
  map.fit([...base, ...extra], 0.6);
  map.clear("points");
  const [pickup, home] = base;
  map.point("restaurant", pickup[0], pickup[1], { color: "#2b6cb0", r: 16, label: "Restaurant", shape: "square" });
  map.point("home", home[0], home[1], { color: "#2f855a", r: 16, label: "Your address", shape: "diamond" });
  $("legend").hidden = false;  // (listed once drawn: not while the order loads)
}
function showRider(lat, lng) {
  const b = map.bounds;
  if (b && (lat < b.s || lat > b.n || lng < b.w || lng > b.e)) { map.removeMarker("rider"); fitMap([[lat, lng]]); }
  map.moveMarker("rider", lat, lng, { label: "Your rider", r: 16 });
  describeMap();
}

async function load() {
  const order = await api(`/v1/orders/${encodeURIComponent(orderId)}`);
  $("order-id").textContent = order.id;
  base = [[order.pickup.lat, order.pickup.lng], [order.dropoff.lat, order.dropoff.lng]];
  const rider = map.markers.get("rider");  // (a reload after a resync keeps it in view)
  const at = rider ? [Number(rider.el.dataset.lat), Number(rider.el.dataset.lng)] : null;
  map.removeMarker("rider");
  fitMap(at ? [at] : []);
  if (at) showRider(...at);
  // A snapshot older than the newest event shown (read before it) would step the page back: kept out.
  const newest = order.events.length ? order.events[order.events.length - 1].id : null;
  if (lastEventId !== null && newest !== null && !isNewer(newest, lastEventId) && newest !== lastEventId) return;
  seen.clear(); handedBack = false; lastEventId = null; kitchenDelay = null;
  for (const e of order.events) apply(e);
  // A delay's ready time as the server has it now (delays before the confirm included): the rule
  // the kitchen board and dispatch read.
  if (kitchenDelay !== null && status !== "placed" && Number.isFinite(order.expected_ready_at)) {
    kitchenDelay = { at: order.expected_ready_at };
    renderKitchenNote();
  }
  // The order's own ETA (set while a rider has it), so a reload need not wait for the next fix.
  plannedTs = Number.isFinite(order.planned_eta) ? order.planned_eta : null;
  if (Number.isFinite(order.eta)) showEta(order.eta);
  else { etaTs = null; if (status !== "delivered" && status !== "at_dropoff") setEta("–"); renderEta(); }
  describeMap();
}

// Whether stream id `a` ("<ms>-<seq>") comes after `b` (null: before everything).
function isNewer(a, b) {
  if (b === null) return true;
  const [am, as] = String(a).split("-").map(BigInt), [bm, bs] = String(b).split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

const ago = (ms) => (ms < 60_000 ? "under a minute ago" : `${Math.floor(ms / 60_000)} min ago`);

// While a rider has the order, say so when its position has not moved on for a while: the
// ETA then rests on an old position (its phone may be off or out of coverage).
function showSilence() {
  if (refusedNow) return;
  const note = $("rider-note");
  const since = lastFixTs ?? watchedSince;
  const silent = CARRYING.includes(status) && since !== null && clock.now() - since > SILENT_AFTER_MS;
  note.hidden = !silent;
  // The rider's dot fades while its position is old, so an old place does not look like a live one.
  const marker = map.markers.get("rider");
  if (marker) {
    marker.el.dataset.stale = silent ? "yes" : "no";
    const title = marker.el.querySelector("title");
    if (title) title.textContent = silent && lastFixTs !== null ? `Your rider, last seen ${ago(clock.now() - lastFixTs)}` : "Your rider";
  }
  if (!silent) return;
  if (lastFixTs === null) {
    const text = "Waiting for the rider's position; the estimate may be out of date.";
    if (note.textContent !== text) { note.textContent = text; delete note.dataset.since; }
    return;
  }
  // The note is in a live region: it is read out once, as the rider goes silent ("... last
  // updated at 12:05; ..."); how long ago, which changes every minute, is seen, not read out.
  if (note.dataset.since !== String(lastFixTs)) {
    const age = document.createElement("span"); age.setAttribute("aria-hidden", "true");
    note.replaceChildren("The rider's position was last updated ", age, `at ${clockTime(lastFixTs)}; the estimate may be out of date.`);
    note.dataset.since = lastFixTs;
  }
  setText(note.querySelector("[aria-hidden]"), `${ago(clock.now() - lastFixTs)}, `);
}

// The kitchen delayed the food (`food_delayed`): the customer is told, rather than seeing the ETA
// jump for no reason, with the new ready time (or, before the confirm, how much longer than
// planned the preparation takes: the server adds the delays up), until the food is ready or
// collected; an order that ended has no food to wait for. Delays before the confirm have no time
// until the confirm gives them one: the confirm's time plus the preparation they made (the
// server's `expected_ready_at`, which a reload reads), said as any delay's ready time from then
// on. The note sits in a polite live region and is written only when its words change (read out
// once; a reload rebuilds it from the history, as it was). Once that ready time has passed
// without the food ready, it says the food is taking longer than the restaurant said, not
// "should be ready" at a time gone by (as the kitchen board says "was due").
function noteDelay(event) {
  if (event.kind === "food_delayed") {
    const at = Number.isFinite(event.ready_at) ? event.ready_at : null;
    const minutes = Number.isFinite(event.minutes) ? event.minutes : 0;
    const before = kitchenDelay && "minutes" in kitchenDelay ? kitchenDelay.minutes : 0;  // (earlier delays before the confirm)
    kitchenDelay = at !== null ? { at }
      : { minutes: before + minutes, prep: Number.isFinite(event.prep_minutes) ? event.prep_minutes : null };
  } else if (event.kind === "confirmed" && kitchenDelay && "minutes" in kitchenDelay
      && Number.isFinite(kitchenDelay.prep) && Number.isFinite(event.ts)) {
    kitchenDelay = { at: event.ts + Math.trunc(kitchenDelay.prep * 60_000) };  // (as the server counts it: confirmed_at + prep)
  } else if (event.kind === "food_ready" || COLLECTED.includes(event.kind) || FINAL.includes(event.kind)) kitchenDelay = null;
  renderKitchenNote();
}
function renderKitchenNote() {
  const note = $("kitchen-note");
  const shown = kitchenDelay !== null && !refusedNow && !FINAL.includes(status) && !COLLECTED.includes(status);
  note.hidden = !shown;
  if (!shown) return;
  const at = "at" in kitchenDelay ? clockTime(kitchenDelay.at) : null;
  setText(note, at !== null && kitchenDelay.at < clock.now()
    ? `The restaurant said your food would be ready about ${at}; it is taking longer.`
    : at !== null ? `The restaurant needs more time: your food should be ready about ${at}.`
    : `The restaurant needs ${kitchenDelay.minutes} minute${kitchenDelay.minutes === 1 ? "" : "s"} longer than planned to prepare your food.`);
}

// A bundle's later order watches its rider head elsewhere first: say why, while a rider has the
// order and is not at its door yet.
const onTheWay = () => CARRYING.includes(status) && status !== "at_dropoff";
function showStops(before) {
  const note = $("stops-note");
  const others = onTheWay() && !refusedNow && Number.isInteger(before) ? before : 0;
  note.hidden = others <= 0;
  if (others > 0) setText(note, `Your rider is delivering ${others === 1 ? "another order" : `${others} other orders`} first.`);
}

let socket = null;
function refused(reason) {
  if (socket) socket.close();
  refusedNow = true;
  showRefusal(reason);
  setText($("status"), "This order cannot be shown.");
  $("status").dataset.status = "refused";
  // Nothing of the order stays on show under the refusal (a link revoked while open included).
  for (const id of ["eta-line", "kitchen-note", "rider-note", "stops-note", "next-step", "timeline", "map-section"]) $(id).hidden = true;
  map.removeMarker("rider");
}

// load() until it works: a refusal (401/403/404...) stops with a message, a lost connection
// or a 503 shows the offline banner and tries again with backoff. False when refused.
async function loadUntilDone() {
  for (let delay = 500; ; delay = Math.min(delay * 2, 8000)) {
    try { await load(); tokenTaken(); setOffline(false); return true; }
    catch (err) {
      if (err.refused) { refused(err.message); return false; }
      setOffline(true); document.body.dataset.online = "no";
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

const clock = await serverClock();
watchedSince = clock.now();
// Often enough that the minutes shown follow the server's clock (a minute of a replay's is short).
setInterval(() => { renderEta(); showSilence(); renderKitchenNote(); }, Math.max(250, Math.min(10_000, SILENT_AFTER_MS / 4, 60_000 / clock.scale)));
// Frames are handled one at a time, in order; while the order is read again over HTTP (after a
// `resync` that skipped events) those that arrive wait for it, so a live event is never
// overwritten by a snapshot taken before it, and one reload runs at a time. An event already
// shown (as old as the newest one applied) is not applied again.
const waiting = [];
let reloading = false;
function onFrame(msg) {
  if (reloading) { waiting.push(msg); return; }
  if (msg.type === "event") { if (isNewer(msg.id, lastEventId)) apply(msg); }
  else if (msg.type === "rider_location") {
    showRider(msg.lat, msg.lng);
    showStops(msg.stops_before);
    if (msg.eta) showEta(msg.eta);
    lastFixTs = Number.isFinite(msg.ts) ? msg.ts : clock.now();
    showSilence();
  } else if (msg.type === "estimate") showPlanned(msg.eta);
  else if (msg.type === "resync") onResync(msg.reason);
}
// What each `resync` asks for (docs/protocol.md): `live_gap`, nothing (the server goes on from
// the last event it delivered, without a gap); `too_many_missed`, the order over HTTP (the
// channel skipped ahead); otherwise the view rebuilt from the whole history that follows.
function onResync(reason) {
  if (reason === "live_gap") return;
  if (reason === "too_many_missed") { reload(); return; }
  seen.clear(); status = null; lastEventId = null; handedBack = false; kitchenDelay = null;
}
async function reload() {
  reloading = true;
  try { if (!await loadUntilDone()) { waiting.length = 0; return; } }
  finally { reloading = false; }
  while (waiting.length && !reloading) onFrame(waiting.shift());
}

if (orderId === null) refused("not_found: the order id in the link is damaged (cut short?)");
else if (await loadUntilDone()) {
  socket = liveSocket(() => wsUrl(`/v1/ws/customer?order_id=${encodeURIComponent(orderId)}&token=${encodeURIComponent(token)}` +
    (lastEventId ? `&last_event_id=${encodeURIComponent(lastEventId)}` : "")), {
    onOnline: () => { setOffline(false); document.body.dataset.online = "yes"; },
    onOffline: () => { setOffline(true); document.body.dataset.online = "no"; },
    onRefused: refused,
    onMessage: onFrame,
  });
}

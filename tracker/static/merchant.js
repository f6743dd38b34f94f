// The kitchen board: orders to confirm, ready / delay buttons, prompts that stand out.
import { api, askReason, clockTime, isolated, liveSocket, MAX_REASON, minutesFrom, serverClock, setOffline, settle, showRefusal, token, tokenSubject, wsUrl } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const orders = new Map(); // order id -> {status, food, placedTs, finalTs, riderEta, delayedMinutes (before the confirm), reason and by (of a cancel or a failed delivery)}
const rows = new Map(); // order id -> {tr, key}: a row is rebuilt only when what it shows changes
const gone = new Set(); // finished orders that left the board: later frames about them are ignored
const sending = new Map(); // order id -> the press awaiting its answer: the row's buttons wait for it
// Presses of this board's not known to be done ("action id": answered redis_unavailable, or not
// answered at all). Only such a press can be the one an `already` refusal found done: without
// one, someone else (the service, another screen) took that step.
const unsure = new Set();
const checking = new Set();  // order ids whose unsure press is being checked: their buttons wait
let lastEventId = null;
let online = false;
let refusedLink = false;  // the server refused the link: nothing will be sent again
const FINAL = new Set(["delivered", "cancelled", "failed"]);
const COLLECTED = new Set(["picked_up", "at_dropoff", "delivered", "failed"]);  // failed: the rider vanished with it
const PROMPTS_DONE = new Set(["confirmed", "at_pickup", ...COLLECTED, "cancelled"]);  // the rider is there, or no one is coming
// Orders that need the kitchen come first: to confirm, then to cook and hand over, then the rest.
const GROUP = { placed: 0, confirmed: 1, assigned: 1, at_pickup: 1, picked_up: 2, at_dropoff: 2, delivered: 3, cancelled: 3, failed: 3 };
// A delivered, cancelled or failed order stays on the board this long (server time) after its final
// event, then leaves. Judged by the event's server `ts`, so a replayed old one never shows.
const FINAL_VISIBLE_MS = 60_000;
const COLUMNS = ["Order", "Status", "Food", "Placed", "Rider"];
// An action's buttons stay disabled until its answer, at most this long (real time; on a link
// slow enough to need it, a second more than its socket's check waits); a press
// with no answer by then says so (its socket is checked meanwhile, and dropped if it is dead).
// A socket that answered since the press (the server is working on it: Redis slow, say) is
// waited for longer: the server's own answer, an error included, says more.
const SEND_WAIT_MS = 5000;
const BUSY_WAIT_MS = 20_000;
const clock = await serverClock();
let expiryTimer = null;

// An operator opens a kitchen's board with ?merchant_id=... beside its token.
const merchantId = new URLSearchParams(location.search).get("merchant_id");
$("merchant").textContent = merchantId || tokenSubject() || "";

// A button that says what it does; its accessible name also names the order, after the words
// on the button, so that voice control finds it by what it shows ("Delay 5 min o7").
function button(label, name, action, id, extra = {}, secondary = false) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; b.dataset.action = action;
  b.setAttribute("aria-label", name);
  if (secondary) b.className = "secondary";
  b.addEventListener("click", () => {
    if (performance.now() < Number(b.closest("tr")?.dataset.armedAt || 0)) return;  // just slid under the finger
    if ("exhausted" in b.dataset) { note(`Order ${id}: not done: ${WHY.too_many_delays}.`, { code: "too_many_delays", message: "not sent: no delays left" }); return; }
    lastPressAt = performance.now();
    // (the `id` comes back as the `ref` of a refusal: which press on which order it answers)
    if (action === "cancel") cancelOrder(id); else act(id, { type: action, order_id: id, id: `${action} ${id}`, ...extra });
  });
  return b;
}

// Right after a press, a row whose buttons change (Confirm answered: Ready takes its place) or
// that moves (the order confirmed goes down the board) does not act for a moment: the second tap
// of a double tap, or a second Enter, would otherwise land on another button, or another order's.
const ARM_MS = 400;  // longer than a double tap's gap, shorter than seeing a new button and reaching for it
let lastPressAt = -Infinity;
let shownAt = new Map();  // order id -> its row's place on the board at the last render
const actionsOf = (tr) => [...tr.querySelectorAll("button")].map((b) => b.dataset.action).join(",");

// Send a kitchen action. Offline the buttons are greyed and a press says it was not sent (so
// nothing is lost silently); the row's buttons wait for the server's answer (greyed), and the
// same button pressed again within a second is one press, so a double click (or a double tap)
// does not act twice even when the answer came back between the two. A press that gets neither
// its event nor an error within SEND_WAIT_MS says so: it may not have reached the server.
const SAME_PRESS_MS = 1000;
const lastPress = new Map();  // order id -> [action, performance.now()] of its last press sent
function act(id, msg) {
  if (sending.has(id) || checking.has(id)) return;  // the last press on this order is not answered yet
  const [lastAction, lastAt] = lastPress.get(id) || [];
  if (lastAction === msg.type && performance.now() - lastAt < SAME_PRESS_MS) return;
  if (refusedLink) { note("Not sent: this link is no longer valid."); return; }
  if (!online || !socket.send(msg)) { note("Not sent: the board is offline. Try again once it is back."); return; }
  lastPress.set(id, [msg.type, performance.now()]);
  delayedBefore.set(id, orders.get(id)?.delayedTs ?? -Infinity);  // (to tell whether an uncertain delay took)
  const press = Symbol(id);
  sending.set(id, press);
  render();
  socket.probe();  // a dead socket is found (and replaced) before the press is given up on
  const sentAt = performance.now(), sentOn = socket.generation;
  const giveUp = () => {
    if (sending.get(id) !== press) return;
    sending.delete(id); lastPress.delete(id); unsure.add(`${msg.type} ${id}`);
    note(`Order ${id}: no answer from the server to "${PRESSED[msg.type]}". If the order has not moved, press again.`);
    render();
  };
  const wait = Math.max(SEND_WAIT_MS, socket.patience + 1000);  // (a slow link's answer takes longer)
  setTimeout(() => {
    if (sending.get(id) !== press) return;
    // The socket it went on still talking: the server is working on it. One that replaced it
    // (the press's was dropped) says nothing of the press, which may never have got there.
    if (online && socket.generation === sentOn && socket.heardAt > sentAt) setTimeout(giveUp, Math.max(0, BUSY_WAIT_MS - wait));
    else giveUp();
  }, wait);
}
const PRESSED = { confirm: "Confirm", ready: "Ready", delay: "Delay 5 min", cancel: "Cancel order" };
const delayedBefore = new Map();  // order id -> its latest delay's time (ts) when Delay was last pressed

// A press answered `redis_unavailable` is not known to be done: the server's database did not
// answer in time, and may still take the step when it wakes. The board finds out by reading the
// order once the server answers again, and says which; the row follows the feed as always.
const TOOK = {
  confirm: (o) => Number.isFinite(o.confirmed_at),
  ready: (o) => Number.isFinite(o.food_ready_at),
  delay: (o, id) => Number.isFinite(o.food_delayed_at) && o.food_delayed_at > (delayedBefore.get(id) ?? -Infinity),
  cancel: (o) => o.status === "cancelled",
};
// Until it is known, the order's buttons wait (greyed): a second press would only meet the first.
async function uncertain(id, action, from) {
  const pressed = PRESSED[action];
  unsure.add(`${action} ${id}`);
  checking.add(id); render();
  const said = note(`Order ${id}: the server could not save "${pressed}" just now (its database did not answer), `
    + "but it may still go through. Checking…", from, "error", null);
  let order;
  try { order = await settle(id); } finally { checking.delete(id); said.remove(); render(); }
  if (order === null) note(`Order ${id}: could not find out whether "${pressed}" went through. If the order has not moved, press again.`);
  else if (TOOK[action](order, id)) note(`Order ${id}: "${pressed}" went through after all.`, null, "done");
  else { unsure.delete(`${action} ${id}`); note(`Order ${id}: "${pressed}" did not go through. Press again.`); }
}

// A press the order had already taken (the server's `already`). After an unsure press of this
// board's, that press went through: done. Otherwise someone else took the step first: said
// plainly, not as this press's success (a cancel's reason was not recorded: the first one's was).
const ALREADY = { confirm: "already confirmed", ready: "its food is already marked ready",
  cancel: "already cancelled" };
const TAKEN = { confirm: "was already confirmed", ready: "was already marked ready", cancel: "was already cancelled" };
function alreadyDone(id, action, from, reason = "") {
  if (unsure.has(`${action} ${id}`)) {
    note(`Order ${id}: ${ALREADY[action] || "already done"} (an earlier press went through).`, from, "done");
  } else {
    note(`Order ${id} ${TAKEN[action] || "had already taken that step"} (see its row)`
      + (reason ? "; your reason was not sent." : "."), from, "info");
  }
}

// The server refused a press (an `error` frame): the press it answers (its `ref`) stops waiting.
function onRefused(msg) {
  const ref = typeof msg.ref === "string" ? msg.ref : "";
  const [action, id] = ref.includes(" ") ? [ref.slice(0, ref.indexOf(" ")), ref.slice(ref.indexOf(" ") + 1)] : [null, null];
  if (id) sending.delete(id); else sending.clear();
  if (id && msg.code === "redis_unavailable" && action in TOOK) uncertain(id, action, msg);
  else if (id && msg.code === "invalid_transition" && msg.already === true) alreadyDone(id, action, msg);
  else note(refusal(msg.code, msg.message), msg);
  render();
}

// The kitchen cannot make an order (out of an ingredient, closing early): cancel it over HTTP,
// with the reason the customer is shown. Asked first, so a slip of the finger cancels nothing.
const CANCEL_WAIT_MS = 10_000;
async function cancelOrder(id) {
  if (sending.has(id) || checking.has(id)) return;
  if (refusedLink) { note("Not sent: this link is no longer valid."); return; }
  if (!online) { note("Not sent: the board is offline. Try again once it is back."); return; }
  const reason = askReason(`Cancel order ${id}? Say why, in at most ${MAX_REASON} characters (the customer is shown this):`, false);
  if (reason === null) return;  // the kitchen thought better of it
  const press = Symbol(id);
  sending.set(id, press);
  render();
  try {
    await api(`/v1/orders/${encodeURIComponent(id)}/cancel`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reason ? { reason } : {}), signal: AbortSignal.timeout(CANCEL_WAIT_MS),
    });
  } catch (err) {
    if (err.name === "TimeoutError") {
      unsure.add(`cancel ${id}`);
      note(`Order ${id}: no answer from the server to "Cancel order". If the order is not shown cancelled in a moment, press again.`);
    }
    else if (err.code === "redis_unavailable") uncertain(id, "cancel", err);
    else if (err.code === "invalid_transition" && err.detail?.already === true) alreadyDone(id, "cancel", err, reason);
    else note(`Order ${id} was not cancelled: ${WHY[err.code] || WHY.other}.`, err);
  } finally {
    if (sending.get(id) === press) { sending.delete(id); render(); }
  }
}

// Why an action of the board's was not taken, for the kitchen, in plain words: the server's own
// code and message go to the note's `data-code` and the console, for whoever looks into it. A
// server that could not reach its database says so (the step may still have gone through: the
// order shows which).
const WHY = {
  invalid_transition: "the order has moved on (the board shows where it stands)",
  forbidden: "it is not one of this restaurant's orders",
  not_found: "there is no such order",
  conflict: "it changed meanwhile; press again",
  rate_limited: "too many presses at once; wait a moment, then press again",
  too_many_delays: "its food was delayed as many times as an order may be; if it cannot be made, cancel the order",
  other: "the server did not take it; press again, and if that fails too, reload the board",
};
function refusal(code, message) {
  if (code === "redis_unavailable") {
    return "The server could not save that just now (its database did not answer). If the order has not moved in a moment, press again.";
  }
  const id = /order (['"])(.*?)\1/.exec(String(message || ""))?.[2];
  const why = WHY[code] || WHY.other;
  return `${id ? `Order ${id}: not done` : "Not done"}: ${why}.`;
}

// A message about the board's own action (not sent, refused: `kind` "error"; done after all, or
// already by an earlier press: "done"; done already by someone else: "info"): it stands out, then goes after `visibleMs` (null: stays until removed).
// `from`: the server's refusal (`code`, `message`), kept out of the words. Returns it.
const NOTE_VISIBLE_MS = 20_000;
function note(text, from = null, kind = "error", visibleMs = NOTE_VISIBLE_MS) {
  const d = document.createElement("div");
  d.className = "prompt"; d.dataset.kind = kind; d.textContent = text;
  if (from) { d.dataset.code = from.code || ""; console.info(`refused: ${from.code}: ${from.message}`); }
  $("prompts").prepend(d);
  if (visibleMs !== null) setTimeout(() => d.remove(), visibleMs);
  return d;
}

// Drop finished orders whose minute is up; wake up again when the next one's is.
function expireFinished() {
  const now = clock.now();
  let next = Infinity;
  for (const [id, o] of orders) {
    if (!FINAL.has(o.status)) continue;
    const until = o.finalTs + FINAL_VISIBLE_MS;
    if (until <= now) {
      orders.delete(id); gone.add(id); lastPress.delete(id);
      for (const action of Object.keys(PRESSED)) unsure.delete(`${action} ${id}`);
      dropPrompts(id);  // its prompts go too
    }
    else next = Math.min(next, until);
  }
  if (expiryTimer) { clearTimeout(expiryTimer); expiryTimer = null; }
  if (next < Infinity) expiryTimer = setTimeout(render, (next - now) / clock.scale + 50);
}

function foodText(o) {
  if (COLLECTED.has(o.status)) return "collected";  // the food has left the kitchen, so it was ready
  if (o.status === "cancelled") return "not needed";  // (not "preparing": stop cooking)
  if (o.status === "placed" && !o.food) return "–";  // not confirmed yet: nothing is cooking
  // A delay's time gone by without Ready: the food is simply late, as the ops page says it.
  if (o.food && Number.isFinite(o.delayedReadyTs) && o.delayedReadyTs < clock.now()) return `delayed, was due ${clockTime(o.delayedReadyTs)}`;
  if (o.food) return o.food;  // "ready", "delayed to 12:40"
  if (!Number.isFinite(o.readyTs)) return "preparing";
  return o.readyTs < clock.now() ? `preparing, was due ${clockTime(o.readyTs)}` : `preparing, ready ${clockTime(o.readyTs)}`;
}

// An order the kitchen has not confirmed for this long is marked (as on the ops page): it may
// have been missed.
const CONFIRM_LATE_MS = 5 * 60_000;
const waitingLong = (o) => o.status === "placed" && Number.isFinite(o.placedTs) && clock.now() - o.placedTs > CONFIRM_LATE_MS;

// The status as the board says it; a cancel or a failed delivery says who (statusText) and why
// (reasonOf: shown isolated after it).
const CANCELLED_BY = { customer: "the customer", operator: "the service", merchant: "the restaurant" };
const reasonOf = (o) => ((o.status === "failed" || o.status === "cancelled") && o.reason ? o.reason : "");
function statusText(o) {
  if (o.status === "failed") return "delivery failed";
  if (o.status === "cancelled") return "cancelled" + (CANCELLED_BY[o.by] ? ` by ${CANCELLED_BY[o.by]}` : "");
  if (o.status === "placed") {
    return waitingLong(o) ? `to confirm: waiting ${Math.floor((clock.now() - o.placedTs) / 60_000)} min` : "to confirm";
  }
  return o.status.replace("_", " ");
}

// Where the rider is, for the kitchen: minutes until it walks in (counted down on the server's
// clock from its last `rider_eta`), then at the counter. A rider whose arrival slips is told
// again as it moves, so one long past its time has stopped sending (or is stuck): say so.
const RIDER_OVERDUE_MS = 2 * 60_000;
function riderText(o) {
  if (o.status === "at_pickup") return "at the counter";
  if (o.status !== "assigned" || !Number.isFinite(o.riderEta)) return "–";
  if (clock.now() - o.riderEta > RIDER_OVERDUE_MS) return `due ${clockTime(o.riderEta)}, not here yet`;
  const minutes = minutesFrom(o.riderEta, clock.now());
  return minutes < 1 ? "arriving now" : `${minutes} min away`;
}

function buildRow(id, o, busy) {
  const tr = document.createElement("tr");
  tr.dataset.order = id; tr.dataset.status = o.status;
  if (waitingLong(o)) tr.dataset.late = "";
  const cells = [id, statusText(o), foodText(o), o.placedTs ? clockTime(o.placedTs) : "", riderText(o)]
    .map((text, i) => {
      const td = document.createElement("td"); td.textContent = text;
      td.dataset.label = COLUMNS[i];  // shown beside the value when a phone stacks the row as a card
      return td;
    });
  cells[0].className = "id";
  if (reasonOf(o)) cells[1].append(": ", isolated(reasonOf(o)));
  const actions = document.createElement("td");
  actions.className = "actions";
  if (o.status === "placed") actions.appendChild(button("Confirm", `Confirm ${id}`, "confirm", id));
  // Ready and Delay only once confirmed: before that a ready order would wait unseen (no rider is
  // sent for an order the kitchen has not confirmed), so Confirm (or Cancel) is all it offers.
  if (o.status !== "placed" && !COLLECTED.has(o.status) && !FINAL.has(o.status) && o.food !== "ready") {
    actions.appendChild(button("Ready", `Ready ${id}`, "ready", id));
    const delay = button("Delay 5 min", `Delay 5 min ${id}`, "delay", id, { minutes: 5 }, true);
    // A kitchen may delay an order so often (an operator opening the board may go on): then the
    // button stays, greyed, and a press says why instead of asking the server.
    // Why is written beside it, and is its description: a title, shown on hover only, reached
    // neither a finger nor the keyboard.
    let why = null;
    if (o.delaysLeft === 0 && !merchantId) {
      why = document.createElement("span"); why.className = "why-greyed"; why.id = `no-delays-${id}`;
      why.textContent = "Delayed as often as an order may be";
      delay.dataset.exhausted = ""; delay.setAttribute("aria-disabled", "true"); delay.setAttribute("aria-describedby", why.id);
    }
    actions.append(delay, ...(why ? [why] : []));
  }
  if (!COLLECTED.has(o.status) && !FINAL.has(o.status)) {
    actions.appendChild(button("Cancel order", `Cancel order ${id}`, "cancel", id, {}, true));
  }
  // Offline, or waiting for an answer, the buttons are greyed and inactive, but aria-disabled
  // rather than `disabled`: a focused button keeps keyboard focus through a short outage.
  for (const b of actions.querySelectorAll("button")) if (!online || busy) b.setAttribute("aria-disabled", "true");
  tr.append(...cells, actions);
  return tr;
}

function render() {
  expireFinished();
  // Keep keyboard focus on the button it was on, even when its row is rebuilt.
  // (and the orders after its row, for when its buttons all go)
  const focusedRow = document.activeElement?.dataset?.action ? document.activeElement.closest?.("tr[data-order]") : null;
  const focused = focusedRow ? [focusedRow.dataset.order, document.activeElement.dataset.action,
    [...$("orders").children].slice([...$("orders").children].indexOf(focusedRow) + 1).map((tr) => tr.dataset.order)] : null;
  const now = performance.now();
  const arm = now - lastPressAt < SEND_WAIT_MS ? now + ARM_MS : 0;  // (changes long after a press arm nothing)
  const ids = [...orders.keys()].sort((a, b) => {
    const oa = orders.get(a), ob = orders.get(b);
    return (GROUP[oa.status] ?? 2) - (GROUP[ob.status] ?? 2) || (oa.seq - ob.seq);
  });
  const list = ids.map((id) => {
    const o = orders.get(id), busy = sending.has(id) || checking.has(id);
    const key = [statusText(o), reasonOf(o), foodText(o), o.placedTs, riderText(o), online, busy].join("|");
    let row = rows.get(id);
    if (!row || row.key !== key) {
      const tr = buildRow(id, o, busy);
      if (row) tr.dataset.armedAt = actionsOf(tr) === actionsOf(row.tr) ? row.tr.dataset.armedAt || 0 : arm;
      row = { tr, key }; rows.set(id, row);
    }
    return row.tr;
  });
  for (const id of rows.keys()) if (!orders.has(id)) rows.delete(id);
  const body = $("orders");
  ids.forEach((id, i) => {  // new on the board, or moved up or down it: not under a finger aimed at it
    if (arm && shownAt.get(id) !== i) list[i].dataset.armedAt = arm;
  });
  shownAt = new Map(ids.map((id, i) => [id, i]));
  list.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
  while (body.children.length > list.length) body.lastChild.remove();
  if (focused) {  // the same button, or (its action done, e.g. Confirm) the next one in that row
    const rowOf = (id) => body.querySelector(`tr[data-order="${CSS.escape(id)}"]`);
    const row = rowOf(focused[0]);
    // The row's buttons all gone (cancelled, collected by the rider): the first button of the
    // order that came after it, else the Orders heading, not the top of the page.
    const b = row?.querySelector(`button[data-action="${focused[1]}"]`) || row?.querySelector("button")
      || focused[2].map((id) => rowOf(id)?.querySelector("button")).find(Boolean) || $("orders-title");
    if (document.activeElement !== b) b.focus();
  }
  // What the kitchen still has to act on (confirm, cook, hand over); finished or collected rows
  // stay a while but are not counted.
  const open = [...orders.values()].filter((o) => !FINAL.has(o.status) && !COLLECTED.has(o.status)).length;
  $("count").textContent = open ? `(${open} open)` : orders.size ? "(none open)" : "";
  $("no-orders").hidden = orders.size > 0 || !online || refusedLink;  // (an empty board only when it is live)
}

let seq = 0;
function onEvent(e) {
  lastEventId = e.id;
  if (gone.has(e.order_id)) return;
  const o = orders.get(e.order_id) || { status: "placed", food: "", seq: seq++ };
  if (e.kind === "food_ready") { o.food = "ready"; o.delayedReadyTs = null; }
  else if (e.kind === "food_delayed") {  // the new ready time, however many delays led there
    // Before the confirm there is no ready time yet: each delay lengthens the preparation by its
    // minutes (the server adds them up), so the row says what they add up to, as the tracking page.
    if (!Number.isFinite(e.ready_at) && Number.isFinite(e.minutes)) o.delayedMinutes = (o.delayedMinutes || 0) + e.minutes;
    o.food = Number.isFinite(e.ready_at) ? `delayed to ${clockTime(e.ready_at)}` : `delayed ${o.delayedMinutes || 0} min`;
    o.delayedReadyTs = e.ready_at;
    if (Number.isFinite(e.delays_left)) o.delaysLeft = e.delays_left;
    // "start plating" and "hand-over soon" were timed to the old ready time: the kitchen has just
    // said when the food will be. Those sent before now go (a reconnect's catch-up included).
    o.delayedTs = Number.isFinite(e.ts) ? e.ts : clock.now();
    dropPrompts(e.order_id);
  }
  // A delay before the confirm lengthened the preparation (no ready time yet): once confirmed,
  // the board reads the ready time it led to.
  else if (e.kind === "confirmed" && o.food.startsWith("delayed") && !Number.isFinite(o.delayedReadyTs)) {
    o.status = e.kind;
    o.food = "";
  }
  else if (e.kind === "rider_unassigned") { o.status = "confirmed"; o.riderEta = null; }
  else o.status = e.kind;
  if ((e.kind === "failed" || e.kind === "cancelled") && typeof e.reason === "string") o.reason = e.reason;
  if (e.kind === "cancelled") o.by = e.by;
  if (e.kind === "placed" && Number.isFinite(e.ts)) o.placedTs = e.ts;
  if (FINAL.has(o.status)) o.finalTs = Number.isFinite(e.ts) ? e.ts : clock.now();
  // Prompts are moot once the rider is there, the rider gave the order back, or no one is coming.
  if (PROMPTS_DONE.has(o.status)) dropPrompts(e.order_id);
  orders.set(e.order_id, o);
  sending.delete(e.order_id);
  if (o.status !== "placed" && !o.food && !COLLECTED.has(o.status) && !FINAL.has(o.status)) askReadyTime(e.order_id);
  render();
}

// When the food of a confirmed order is expected (the order's expected_ready_at, the server's
// rule), read once per order over HTTP, a few at a time and a moment after the
// events came (a board rebuilding from its history asks only about orders still cooking).
const readyAsked = new Set();
let readyTimer = null;
function askReadyTime(id) {
  if (readyAsked.has(id)) return;
  readyAsked.add(id);
  clearTimeout(readyTimer);
  readyTimer = setTimeout(readReadyTimes, 300);
}
async function readReadyTimes() {
  const wanted = [...readyAsked].filter((id) => {
    const o = orders.get(id);
    return o && !o.food && !("readyTs" in o) && !COLLECTED.has(o.status) && !FINAL.has(o.status);
  });
  for (let at = 0; at < wanted.length; at += 4) {
    await Promise.all(wanted.slice(at, at + 4).map(async (id) => {
      let order;
      try { order = await api(`/v1/orders/${encodeURIComponent(id)}`); } catch { readyAsked.delete(id); return; }  // asked again with its next event
      const o = orders.get(id);
      if (!o) return;
      o.readyTs = Number.isFinite(order.expected_ready_at) ? order.expected_ready_at : null;
    }));
  }
  render();
}

// The order's prompts on the board (of one kind, when given) go.
function dropPrompts(id, kind = null) {
  const ofKind = kind === null ? "" : `[data-kind="${CSS.escape(kind)}"]`;
  for (const p of document.querySelectorAll(`#prompts .prompt[data-order="${CSS.escape(id)}"]${ofKind}`)) p.remove();
}

function onRiderEta(f) {
  const o = orders.get(f.order_id);
  if (!o || FINAL.has(o.status)) return;
  o.riderEta = f.rider_eta;
  render();
}

function onPrompt(p) {
  const o = orders.get(p.order_id);
  if (gone.has(p.order_id) || (o && PROMPTS_DONE.has(o.status))) return;
  if (o && Number.isFinite(o.delayedTs) && Number.isFinite(p.ts) && p.ts <= o.delayedTs) return;  // timed to a ready time since moved
  // One prompt per order and kind, a newer replacing the older; "hand-over soon" replaces
  // "start plating" too (the rider is at the door: the food is wanted now either way). The
  // same prompt again (a reconnect's catch-up sends the standing ones) stays where it is: added
  // again, the live region would read it out again.
  const key = `${p.message}|${p.ts}`;
  const shown = document.querySelector(`#prompts .prompt[data-order="${CSS.escape(p.order_id)}"][data-kind="${CSS.escape(p.kind)}"]`);
  if (shown && shown.dataset.key === key) {
    if (p.kind === "rider_arriving") dropPrompts(p.order_id, "start_preparing");
    return;
  }
  dropPrompts(p.order_id, p.kind === "rider_arriving" ? null : p.kind);
  const div = document.createElement("div");
  div.className = "prompt"; div.dataset.kind = p.kind; div.dataset.order = p.order_id; div.dataset.key = key;
  const at = document.createElement("small");
  at.textContent = ` (${clockTime(Number.isFinite(p.ts) ? p.ts : clock.now())})`;  // when it was sent: "2 min away" ages
  div.append(`Order ${p.order_id}: ${p.message}`, at);
  $("prompts").prepend(div);
}

// The Prompts box says it is empty rather than showing nothing (not once the link is refused).
function showNoPrompts() {
  $("no-prompts").hidden = refusedLink || $("prompts").children.length > 0;
}
new MutationObserver(showNoPrompts).observe($("prompts"), { childList: true });

function setOnline(state) {
  online = state === "yes";
  refusedLink = state === "refused";
  if (refusedLink) $("offline").hidden = true;  // (the refusal says why: no "back online")
  else setOffline(state === "no");
  document.body.dataset.online = state;
  // A refused link is never updated again: its orders, their buttons and its prompts go (as on
  // the tracking page), rather than stay on show as if live with nothing a press could send.
  for (const id of ["prompts-section", "orders-section"]) $(id).hidden = refusedLink;
  showNoPrompts();
  render();
}

// A `resync` means events may be missing: start again from the feed's whole retained history
// on a fresh socket (the board's state is rebuilt from it), without reloading the page.
function restart() {
  orders.clear(); rows.clear(); sending.clear(); readyAsked.clear(); lastEventId = null;
  online = false;  // until the fresh socket is open
  render();
  socket.restart();
}

const socket = liveSocket(() => wsUrl(`/v1/ws/merchant?token=${encodeURIComponent(token)}`
  + (merchantId ? `&merchant_id=${encodeURIComponent(merchantId)}` : "")
  + (lastEventId ? `&last_event_id=${encodeURIComponent(lastEventId)}` : "")), {
  onOnline: () => { setOnline("yes"); clock.sync(); },
  onOffline: () => setOnline("no"),
  onRefused: (reason) => { setOnline("refused"); showRefusal(reason); },
  onMessage: (msg) => {
    if (msg.type === "event") onEvent(msg);
    else if (msg.type === "prompt") onPrompt(msg);
    else if (msg.type === "rider_eta") onRiderEta(msg);
    else if (msg.type === "resync") restart();
    else if (msg.type === "error") onRefused(msg);  // an action refused: say why
  },
});
// The riders' minutes away run down between their updates (a replay's fast clock too).
setInterval(render, Math.max(250, Math.min(10_000, 60_000 / clock.scale)));

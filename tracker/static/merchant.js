// The kitchen board: orders to confirm, ready / delay buttons, prompts that stand out.
import { liveSocket, serverClock, token, wsUrl } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const orders = new Map(); // order id -> {status, food, finalTs}
const gone = new Set(); // finished orders that left the board: later frames about them are ignored
let lastEventId = null;
const FINAL = new Set(["delivered", "cancelled"]);
const COLLECTED = new Set(["picked_up", "at_dropoff", "delivered"]);
const PROMPTS_DONE = new Set(["at_pickup", ...COLLECTED, "cancelled"]);  // the rider is there, or no one will come
// A delivered or cancelled order stays on the board this long (server time) after its final
// event, then leaves. Judged by the event's server `ts`, so a replayed old one never shows.
const FINAL_VISIBLE_MS = 60_000;
const clock = await serverClock();
let expiryTimer = null;

function button(label, onClick, secondary = false) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; if (secondary) b.className = "secondary";
  b.addEventListener("click", onClick);
  return b;
}

// Drop finished orders whose minute is up; wake up again when the next one's is.
function expireFinished() {
  const now = clock.now();
  let next = Infinity;
  for (const [id, o] of orders) {
    if (!FINAL.has(o.status)) continue;
    const until = o.finalTs + FINAL_VISIBLE_MS;
    if (until <= now) {
      orders.delete(id); gone.add(id);
      dropPrompts(id);  // its prompts go too
    }
    else next = Math.min(next, until);
  }
  if (expiryTimer) { clearTimeout(expiryTimer); expiryTimer = null; }
  if (next < Infinity) expiryTimer = setTimeout(render, (next - now) / clock.scale + 50);
}

function render() {
  expireFinished();
  const rows = [...orders.entries()].map(([id, o]) => {
    const tr = document.createElement("tr");
    tr.dataset.order = id; tr.dataset.status = o.status;
    const collected = COLLECTED.has(o.status);  // the food has left the kitchen, so it was ready
    const cells = [id, o.status.replace("_", " "), o.food === "ready" || collected ? (collected ? "collected" : "ready") : (o.food || "preparing")]
      .map((text) => { const td = document.createElement("td"); td.textContent = text; return td; });
    const actions = document.createElement("td");
    if (o.status === "placed") actions.appendChild(button(`Confirm ${id}`, () => socket.send({ type: "confirm", order_id: id })));
    if (!["picked_up", "at_dropoff", "delivered", "cancelled"].includes(o.status) && o.food !== "ready") {
      actions.appendChild(button(`Ready ${id}`, () => socket.send({ type: "ready", order_id: id })));
      actions.appendChild(button(`Delay ${id} 5 min`, () => socket.send({ type: "delay", order_id: id, minutes: 5 }), true));
    }
    tr.append(...cells, actions);
    return tr;
  });
  $("orders").replaceChildren(...rows);
}

function onEvent(e) {
  lastEventId = e.id;
  if (gone.has(e.order_id)) return;
  const o = orders.get(e.order_id) || { status: "placed", food: "" };
  if (e.kind === "food_ready") o.food = "ready";
  else if (e.kind === "food_delayed") {  // the new ready time, however many delays led there
    o.food = Number.isFinite(e.ready_at)
      ? `delayed to ${new Date(e.ready_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`
      : `delayed ${e.minutes} min`;
  }
  else if (e.kind === "rider_unassigned") o.status = "confirmed";
  else o.status = e.kind;
  if (FINAL.has(o.status)) o.finalTs = Number.isFinite(e.ts) ? e.ts : clock.now();
  if (PROMPTS_DONE.has(o.status)) dropPrompts(e.order_id);  // moot once the rider is there
  orders.set(e.order_id, o);
  render();
}

function dropPrompts(id) {
  for (const p of document.querySelectorAll(`#prompts .prompt[data-order="${CSS.escape(id)}"]`)) p.remove();
}

function onPrompt(p) {
  const o = orders.get(p.order_id);
  if (gone.has(p.order_id) || (o && PROMPTS_DONE.has(o.status))) return;
  const div = document.createElement("div");
  div.className = "prompt"; div.dataset.kind = p.kind; div.dataset.order = p.order_id;
  div.textContent = `Order ${p.order_id}: ${p.message}`;
  $("prompts").prepend(div);
}

// An operator opens a kitchen's board with ?merchant_id=... beside its token.
const merchantId = new URLSearchParams(location.search).get("merchant_id");
const socket = liveSocket(() => wsUrl(`/v1/ws/merchant?token=${encodeURIComponent(token)}`
  + (merchantId ? `&merchant_id=${encodeURIComponent(merchantId)}` : "")
  + (lastEventId ? `&last_event_id=${encodeURIComponent(lastEventId)}` : "")), {
  onOnline: () => { $("offline").hidden = true; document.body.dataset.online = "yes"; clock.sync(); },
  onOffline: () => { $("offline").hidden = false; document.body.dataset.online = "no"; },
  onMessage: (msg) => {
    if (msg.type === "event") onEvent(msg);
    else if (msg.type === "prompt") onPrompt(msg);
    else if (msg.type === "resync") { orders.clear(); lastEventId = null; socket.close(); location.reload(); }
    else if (msg.type === "error") { const d = document.createElement("div"); d.className = "prompt"; d.textContent = msg.message; $("prompts").prepend(d); }
  },
});

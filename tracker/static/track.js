// The customer's page: the order's timeline, the rider on the map, a live ETA; resumes gaplessly.
import { api, liveSocket, token, VectorMap, wsUrl, minutesFrom } from "/static/common.js";

const STEPS = [
  ["placed", "Order placed"], ["confirmed", "Restaurant confirmed"], ["food_ready", "Food ready"],
  ["assigned", "Rider assigned"], ["at_pickup", "Rider at the restaurant"], ["picked_up", "On the way"],
  ["at_dropoff", "Rider at your door"], ["delivered", "Delivered"],
];
const orderId = decodeURIComponent(location.pathname.split("/").pop());
const $ = (id) => document.getElementById(id);
const map = new VectorMap($("map"), document.body.dataset.tileUrl.startsWith("{{") ? "" : document.body.dataset.tileUrl);
let lastEventId = null;
const seen = new Set();
let status = null;

function renderTimeline() {
  const list = $("timeline");
  list.replaceChildren(...STEPS.map(([kind, label]) => {
    const li = document.createElement("li");
    li.textContent = label;
    li.dataset.kind = kind;
    if (seen.has(kind)) li.className = "done";
    return li;
  }));
  if (seen.has("cancelled")) {
    const li = document.createElement("li"); li.textContent = "Cancelled"; li.className = "done"; li.dataset.kind = "cancelled"; list.appendChild(li);
  }
}

function apply(event) {
  lastEventId = event.id;
  if (event.kind === "rider_unassigned") {  // back to waiting for a rider: no rider, no ETA
    seen.delete("assigned"); seen.delete("at_pickup"); status = "confirmed"; map.removeMarker("rider"); $("eta").textContent = "–";
  }
  else { seen.add(event.kind); if (!event.kind.startsWith("food_")) status = event.kind; }
  if (status === "delivered" || status === "cancelled") { map.removeMarker("rider"); $("eta").textContent = status === "delivered" ? "delivered" : "–"; }
  $("status").textContent = (STEPS.find(([k]) => k === status) || [status, status])[1];
  $("status").dataset.status = status;
  renderTimeline();
}

async function load() {
  const order = await api(`/v1/orders/${encodeURIComponent(orderId)}`);
  $("order-id").textContent = order.id;
  map.fit([[order.pickup.lat, order.pickup.lng], [order.dropoff.lat, order.dropoff.lng]], 0.6);
  map.clear("points");
  map.point("restaurant", order.pickup.lat, order.pickup.lng, { color: "#2b6cb0", r: 12, label: "Restaurant" });
  map.point("home", order.dropoff.lat, order.dropoff.lng, { color: "#2f855a", r: 12, label: "Your address" });
  seen.clear();
  for (const e of order.events) apply(e);
}

await load();
liveSocket(() => wsUrl(`/v1/ws/customer?order_id=${encodeURIComponent(orderId)}&token=${encodeURIComponent(token)}` +
  (lastEventId ? `&last_event_id=${encodeURIComponent(lastEventId)}` : "")), {
  onOnline: () => { $("offline").hidden = true; document.body.dataset.online = "yes"; },
  onOffline: () => { $("offline").hidden = false; document.body.dataset.online = "no"; },
  onMessage: async (msg) => {
    if (msg.type === "event") { if (msg.id !== lastEventId) apply(msg); }
    else if (msg.type === "rider_location") {
      map.moveMarker("rider", msg.lat, msg.lng, { label: "Your rider" });
      if (msg.eta) $("eta").textContent = `${minutesFrom(msg.eta, msg.ts)} min`;
    } else if (msg.type === "resync") { await load(); }
  },
});

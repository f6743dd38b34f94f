// The operations page: the fleet on a map with H3 hexagons, rider states, dispatch and service figures.
import { api, clockTime, minutesFrom, setOffline, showRefusal, VectorMap } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const map = new VectorMap($("map"), document.body.dataset.tileUrl.startsWith("{{") ? "" : document.body.dataset.tileUrl);
const COLORS = { free: "#2f855a", offered: "#975a16", busy: "#c53030", unavailable: "#718096", silent: "#6b46c1",
  waiting: "#1a202c" };
// A rider carrying orders that stopped sending fixes stays on the map, in its own colour.
const stateOf = (r) => (r.stale ? "silent" : r.state);
const RANK = { silent: 0, busy: 1, offered: 2, free: 3, unavailable: 4 };
const TABLE_ROWS = 200;
const silentFor = (r, now) => `busy, silent ${Math.max(1, Math.round((now - r.ts) / 60000))} min`;

function figures(el, pairs) {
  el.replaceChildren(...pairs.map(([label, value]) => {
    const d = document.createElement("div"); const b = document.createElement("b");
    b.textContent = value; d.append(b, label); d.dataset.figure = label; return d;
  }));
}

function since(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

// The newest round of any process: how long ago, where and by whom. Rounds run only while
// orders wait, so a round older than three intervals with orders waiting means dispatch has
// stopped or fallen behind everywhere: said in words, not left to look current.
function drawDispatch(snap) {
  const d = snap.dispatch || {}, interval = snap.dispatch_interval_s;
  const age = d.ts === undefined ? null : snap.ts - d.ts;
  $("dispatch-where").textContent = age === null ? "No round yet: rounds run while confirmed orders wait for a rider."
    : `${since(age)} ago, region ${d.region}, process ${d.process}`;
  const late = snap.totals.open_orders > 0 && (age === null || age > 3 * interval * 1000);
  $("dispatch-late").hidden = !late;
  const due = `(one is due every ${interval} s)`;
  $("dispatch-late").textContent = !late ? "" : age === null ? `Orders are waiting and no round has run ${due}.`
    : `Orders are waiting and no round has run for ${since(age)} ${due}.`;
  figures($("dispatch"), [["orders", d.orders ?? "–"], ["riders", d.riders ?? "–"], ["offers", d.offers ?? "–"],
    ["bundles", d.bundles ?? "–"], ["solve ms", d.solve_ms ?? "–"], ["total ms", d.total_ms ?? "–"]]);
}

// Says which lists the snapshot cut: the map and the table show only those listed.
function drawCapped(snap) {
  const t = snap.totals, cut = [];
  if (snap.truncated.riders) cut.push(`${snap.riders.length} of ${t.riders} riders`);
  if (snap.truncated.open_orders) cut.push(`${snap.open_orders.length} of ${t.open_orders} open orders`);
  $("capped").hidden = !cut.length;
  $("capped").textContent = !cut.length ? ""
    : `Showing ${cut.join(" and ")} on the map and in the table; the figures count them all.`;
}

function draw(snap) {
  // Whole hexagons in view: with one or two riders online, their cell is larger than they are.
  const pts = [...snap.riders.map((r) => [r.lat, r.lng]), ...snap.open_orders.map((o) => [o.lat, o.lng]),
    ...snap.cells.flatMap((c) => c.boundary)];
  if (pts.length) map.fit(pts, 0.2);
  map.clear("areas"); map.clear("points");
  for (const c of snap.cells) {
    const red = Math.min(1, c.open_orders / 5), green = Math.min(1, c.free_riders / 5);
    const fill = c.open_orders >= c.free_riders ? `rgba(197,48,48,${0.2 + 0.5 * red})` : `rgba(47,133,90,${0.2 + 0.5 * green})`;
    map.polygon(c.cell, c.boundary, fill, `${c.open_orders} open orders, ${c.free_riders} free riders`);
  }
  // Orders waiting for a rider, one dot per restaurant (bigger with more of them).
  const kitchens = new Map();
  for (const o of snap.open_orders) {
    const k = kitchens.get(o.merchant_id) || { lat: o.lat, lng: o.lng, n: 0 };
    k.n += 1; kitchens.set(o.merchant_id, k);
  }
  map.clear("top");
  for (const [mid, k] of kitchens) {  // drawn above the riders, ringed, so a rider there does not hide it
    map.point(`kitchen:${mid}`, k.lat, k.lng, { color: COLORS.waiting, r: 6 + Math.min(k.n, 5), layer: "top",
      label: `${mid}: ${k.n} order${k.n === 1 ? "" : "s"} waiting for a rider` }).setAttribute("stroke", "#fff");
  }
  for (const r of snap.riders) {
    const label = r.stale ? silentFor(r, snap.ts) : r.state;
    map.moveMarker(r.id, r.lat, r.lng, { color: COLORS[stateOf(r)], label: `${r.id}: ${label}` });
  }
  for (const [id] of map.markers) if (!snap.riders.find((r) => r.id === id)) map.removeMarker(id);
  for (const [id, m] of map.markers) m.el.setAttribute("fill", COLORS[stateOf(snap.riders.find((r) => r.id === id) || {})] || "#718096");
  const s = snap.service, t = snap.totals;
  figures($("figures"), [  // whole-fleet totals: the lists may be cut, these are not
    ["orders waiting for the kitchen", s.by_status?.placed ?? 0],
    ["orders waiting for a rider", t.open_orders],
    ["riders online", t.online],
    ["riders unavailable", t.unavailable],
    ["riders silent with orders", t.silent],
    ["free riders", t.free],
    ["delivered", s.delivered],
    ["failed deliveries", s.by_status?.failed ?? 0],  // closed by an operator after pickup: not delivered
    ["on time", s.on_time_share === null ? "–" : `${Math.round(s.on_time_share * 100)}%`],
    ["click-to-door", s.click_to_door_mean_min === null ? "–" : `${s.click_to_door_mean_min.toFixed(1)} min`],
  ]);
  drawDispatch(snap);
  drawCapped(snap);
  // The riders who need watching first: silent with orders, busy, offered, free, unavailable.
  const riders = [...snap.riders].sort((a, b) => RANK[stateOf(a)] - RANK[stateOf(b)] || a.id.localeCompare(b.id));
  const rows = Math.min(riders.length, TABLE_ROWS);
  $("riders-shown").textContent = rows < t.riders ? `(showing ${rows} of ${t.riders})` : `(${t.riders})`;
  $("riders").replaceChildren(...riders.slice(0, TABLE_ROWS).map((r) => {
    const tr = document.createElement("tr"); tr.dataset.rider = r.id;
    if (r.stale) tr.dataset.silent = "";
    for (const text of [r.id, r.stale ? silentFor(r, snap.ts) : r.state, r.orders]) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
    return tr;
  }));
  drawWaiting(snap);
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// The confirmed orders waiting for a rider, longest first, with the dispatcher's estimate (or
// none when no rider can be planned for them now: the ones to act on).
function drawWaiting(snap) {
  const listed = snap.open_orders.slice(0, TABLE_ROWS), total = snap.totals.open_orders;
  $("waiting-shown").textContent = listed.length < total ? `(showing ${listed.length} of ${total}, longest waiting first)` : `(${total})`;
  $("waiting").replaceChildren(...listed.map((o) => {
    const tr = document.createElement("tr"); tr.dataset.order = o.id;
    const age = Number.isFinite(o.placed_at) ? since(snap.ts - o.placed_at) : "";
    const eta = Number.isFinite(o.planned_eta)
      ? `${clockTime(o.planned_eta)} (in ${Math.max(1, minutesFrom(o.planned_eta, snap.ts))} min)`
      : "none: no rider can be planned now";
    if (!Number.isFinite(o.planned_eta)) tr.dataset.unplanned = "";
    for (const text of [o.id, o.merchant_id, age, eta]) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
    return tr;
  }));
}

// Poll every 2 s; back off to 16 s while the server cannot be reached; stop for good (and say
// why) when it refuses the token.
const EVERY_MS = 2000;
// ?max_riders= and ?max_orders= on the page's address pass on to the snapshot (a slow machine
// may want fewer markers); the figures count the whole fleet either way.
const CAPS = (() => {
  const own = new URLSearchParams(location.search), caps = new URLSearchParams();
  for (const name of ["max_riders", "max_orders"]) if (own.has(name)) caps.set(name, own.get(name));
  return caps.toString() ? `?${caps}` : "";
})();
let retryMs = EVERY_MS;
async function tick() {
  let snap;
  try { snap = await api(`/v1/ops/snapshot${CAPS}`); }
  catch (err) {
    if (err.refused) { showRefusal(err.message); return; }
    // The server answered but cannot read the fleet: say that, not that it cannot be reached.
    $("offline").textContent = err.code === "redis_unavailable"
      ? "The server cannot reach its Redis: the figures below are from before; retrying…"
      : "Cannot reach the server: retrying…";
    setOffline(true);
    setTimeout(tick, retryMs);
    retryMs = Math.min(retryMs * 2, 16000);
    return;
  }
  setOffline(false); retryMs = EVERY_MS;
  try { draw(snap); } finally { setTimeout(tick, EVERY_MS); }
}
tick();

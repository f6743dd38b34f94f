// The operations page: the fleet on a map with H3 hexagons, rider states, dispatch and service
// figures, the orders waiting, and one order at a time to act on (cancel, take back, assign, fail).
import { api, ApiError, askReason, clockTime, isolated, isolatedText, MAX_REASON, minutesFrom, setOffline, setText, settle, settleRead, showRefusal, tokenTaken, VectorMap } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const map = new VectorMap($("map"), document.body.dataset.tileUrl.startsWith("{{") ? "" : document.body.dataset.tileUrl);
map.enableZoom();
// On a phone the legend starts folded (a "Legend" toggle), so it does not push the tables down.
if (matchMedia("(max-width: 600px)").matches) $("legend").open = false;
const COLORS = { free: "#2f855a", offered: "#975a16", busy: "#c53030", unavailable: "#718096", silent: "#6b46c1",
  waiting: "#1a202c", delayed: "#c05621", placed: "#fff" };
// A rider carrying orders that stopped sending fixes stays on the map, in its own colour.
const stateOf = (r) => (r.stale ? "silent" : r.state);
const RANK = { silent: 0, busy: 1, offered: 2, free: 3, unavailable: 4 };
const TABLE_ROWS = 200;

function since(ms) {
  const s = Math.max(0, Math.round(ms / 1000)), min = Math.round(s / 60);
  return s < 90 ? `${s} s` : min < 90 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
}
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
// Statuses and event kinds in words.
const WORDS = { at_pickup: "at the restaurant", picked_up: "picked up", at_dropoff: "at the door",
  rider_unassigned: "taken from its rider", food_ready: "food ready", food_delayed: "food delayed" };
const words = (code) => WORDS[code] || code;
// When an order is due at its customer: its clock start (the server's `clock_start_at`: its
// placement, or when the kitchen of an order scheduled ahead would start on it) plus the on-time
// target, as the server's `due_at` (null if unknown).
function dueAt(o, snap) {
  const target = snap?.settings?.TRACKER_ON_TIME_TARGET_MIN, start = o.clock_start_at ?? o.placed_at;
  // (The target is a whole number of seconds: rounded so as not to miss it by a float's error.)
  return Number.isFinite(start) && Number.isFinite(target) ? start + Math.round(target * 60) * 1000 : null;
}
const silentFor = (r, now) => `busy, silent ${since(now - r.ts)}`;

function figures(el, pairs) {
  el.replaceChildren(...pairs.map(([label, value]) => {
    const d = document.createElement("div"); const b = document.createElement("b");
    b.textContent = value; d.append(b, label); d.dataset.figure = label; return d;
  }));
}

// When the confirmed orders now waiting began to wait (the oldest listed: the list is oldest first).
const waitingSince = (snap) => snap.open_orders.reduce((t, o) => Math.min(t, o.confirmed_at ?? o.placed_at ?? t), Infinity);

// The newest round of any process: how long ago (it ended), where and by whom. Rounds run only
// while orders wait, so dispatch is late when orders have waited more than three intervals
// with no round since: said in words, not left to look current. (After a quiet spell the last
// round is old, but new orders are not late until a round was due for them.)
function drawDispatch(snap) {
  const d = snap.dispatch || {}, interval = snap.dispatch_interval_s;
  const age = d.ts === undefined ? null : snap.ts - d.ts;
  $("dispatch-where").textContent = age === null ? "No round yet: rounds run while confirmed orders wait for a rider."
    : `${since(age)} ago, region ${d.region}, process ${d.process}`;
  const due = Math.max(d.ts ?? -Infinity, waitingSince(snap));
  const late = snap.totals.open_orders > 0 && Number.isFinite(due) && snap.ts - due > 3 * interval * 1000;
  $("dispatch-late").hidden = !late;
  $("dispatch-late").textContent = !late ? ""
    : `Orders have waited ${since(snap.ts - due)} with no dispatch round (one is due every ${interval} s).`;
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

// The background tasks of the answering process that failed in the last minute. The banner sits
// in a live region (always in the page): it is written again only when what failed changes, so
// it is read out then; how long ago each failed, new every poll, is seen but not read out.
function drawDegraded(snap) {
  const bad = snap.degraded || [], banner = $("degraded");
  banner.hidden = !bad.length;
  const byError = new Map();  // one line per distinct error: a Redis outage fails most tasks alike
  for (const t of bad) {
    const e = byError.get(t.last_error) || { names: [], at: 0 };
    e.names.push(t.name); e.at = Math.max(e.at, t.last_error_at); byError.set(t.last_error, e);
  }
  const key = JSON.stringify([...byError].map(([error, e]) => [error, e.names]));
  if (banner.dataset.key !== key) {
    banner.dataset.key = key;
    banner.replaceChildren(...(!bad.length ? [] : ["Background tasks of this server process failed in the last minute: ",
      ...[...byError].flatMap(([error, e], i) => {
        const age = document.createElement("span"); age.setAttribute("aria-hidden", "true"); age.dataset.age = "";
        return [...(i ? ["; "] : []), `${e.names.join(", ")} (${error || "error"}`, age, ")"];
      })]));
  }
  const ages = banner.querySelectorAll("[data-age]");
  [...byError.values()].forEach((e, i) => setText(ages[i], `, last ${since(Date.now() - e.at * 1000)} ago`));
}

// The view fits where the fleet is: points far out (one order across the country, a rider's
// stray fix) would shrink the city to a dot, so they are left out of the fit and counted.
let showAll = false;
function core(points) {
  if (showAll || points.length < 4) return points;
  const keep = [0, 1].map((axis) => {
    const v = points.map((p) => p[axis]).sort((a, b) => a - b);
    const q1 = v[Math.floor(v.length / 4)], q3 = v[Math.floor(v.length * 3 / 4)], pad = 3 * (q3 - q1) + 0.02;
    return [q1 - pad, q3 + pad];
  });
  return points.filter((p) => p[0] >= keep[0][0] && p[0] <= keep[0][1] && p[1] >= keep[1][0] && p[1] <= keep[1][1]);
}

// Whether the kitchen has put the order's food back (a `delay`) and not called it ready since.
const kitchenDelayed = (o) => Number.isFinite(o.food_delayed_at) && !Number.isFinite(o.food_ready_at);
// Whether a delay's new ready time (`ready`) has passed (`now`: server time) with the food not
// called ready: then the food is simply late, said plainly ("food was due 12:10"), and the
// delay's marks (triangle, orange outline, row mark) go, since the kitchen's time is up.
const delayPast = (ready, now) => Number.isFinite(ready) && ready <= now;
const heldByKitchen = (o, now) => kitchenDelayed(o) && !delayPast(o.ready_at, now);
// What a delay says, e.g. "food delayed by the kitchen, ready 12:10", or "food was due 12:10".
const delayedText = (o, now) => delayPast(o.ready_at, now) ? `food was due ${clockTime(o.ready_at)}`
  : `food delayed by the kitchen${Number.isFinite(o.ready_at) ? `, ready ${clockTime(o.ready_at)}` : ""}`;
// The orders a rider is to collect whose food the kitchen delayed (the snapshot's
// `kitchen_delays`), as said after its state: " · o7: food delayed by the kitchen, ready 12:10".
const waitsOnKitchen = (r, now) => (r.kitchen_delays || []).some((d) => !delayPast(d.ready_at, now));
const kitchenDelaysText = (r, now) => (r.kitchen_delays || []).map((d) => ` · ${d.order_id}: ${delayedText(d, now)}`).join("");
const stateText = (r, now) => (r.stale ? silentFor(r, now) : r.state);

// The orders on the map, at their restaurants: one mark for those placed (waiting for the
// kitchen to confirm: a hollow frame, drawn first and larger), one for those waiting for a rider
// (a square; a triangle when the kitchen delayed the food of any of them). All are under the
// riders: a rider at the restaurant covers the middle of a mark, never the whole of it. A press
// opens one of its orders (a delayed one first, else the oldest) and lists under it every other
// order at that kitchen, those of the other mark included: the waiting mark lies over the placed
// one, so one press anywhere on the kitchen reaches all its orders.
function orderMark(mid, kind, orders, now, others = []) {
  const delayed = orders.filter((o) => heldByKitchen(o, now)), n = orders.length;
  const first = delayed[0] || orders[0], rest = [...orders.filter((o) => o !== first), ...others];
  let label, style;
  if (kind === "placed") {
    label = `${plural(n, "order")} waiting for the kitchen to confirm`;
    style = { shape: "square", color: COLORS.placed, r: 24, cls: "order-placed", stroke: COLORS.waiting, width: 3, dash: "4 3" };
  } else {
    const also = delayed.length === 1 ? delayedText(delayed[0], now) : `food delayed by the kitchen`;
    label = `${plural(n, "order")} waiting for a rider${!delayed.length ? "" : `, ${n > 1 ? `${delayed.length} with ` : ""}${also}`}`;
    style = delayed.length
      ? { shape: "triangle", color: COLORS.delayed, r: 14 + Math.min(n, 5), cls: "order-delayed", stroke: "#fff", width: 2 }
      : { shape: "square", color: COLORS.waiting, r: 14 + Math.min(n, 5), cls: "order-waiting", stroke: "#fff", width: 2 };
  }
  const el = map.point(`${kind === "placed" ? "placed" : "kitchen"}:${mid}`, first.lat, first.lng, { color: style.color, r: style.r,
    shape: style.shape, label: `${mid}: ${label}`, hit: { openOrder: first.id, also: rest.map((o) => o.id).join(" "), kitchen: mid } });
  el.classList.add(style.cls);
  el.setAttribute("stroke", style.stroke); el.setAttribute("stroke-width", style.width);
  el.setAttribute("vector-effect", "non-scaling-stroke");
  if (style.dash) el.setAttribute("stroke-dasharray", style.dash);
}

function drawOrders(snap) {
  const byKitchen = (orders) => {  // merchant -> its orders, oldest first (as the snapshot lists them)
    const out = new Map();
    for (const o of orders) { if (!out.has(o.merchant_id)) out.set(o.merchant_id, []); out.get(o.merchant_id).push(o); }
    return out;
  };
  map.clear("points");
  const placed = byKitchen(snap.kitchen_queue || []), waiting = byKitchen(snap.open_orders);
  for (const [mid, orders] of placed) orderMark(mid, "placed", orders, snap.ts, waiting.get(mid));
  for (const [mid, orders] of waiting) orderMark(mid, "waiting", orders, snap.ts, placed.get(mid));
}

function drawMap(snap, riderById) {
  const things = [...snap.riders.map((r) => [r.lat, r.lng]), ...snap.open_orders.map((o) => [o.lat, o.lng]),
    ...(snap.kitchen_queue || []).map((o) => [o.lat, o.lng])];
  const inside = core(things);
  const trimmed = things.length - inside.length;
  // Whole hexagons in view: with one or two riders online, their cell is larger than they are.
  const lats = inside.map((p) => p[0]), lngs = inside.map((p) => p[1]);
  const [s, n, w, e] = [Math.min(...lats), Math.max(...lats), Math.min(...lngs), Math.max(...lngs)];
  const near = (p) => trimmed === 0 || (p[0] > s - 0.02 && p[0] < n + 0.02 && p[1] > w - 0.02 && p[1] < e + 0.02);
  const pts = [...inside, ...snap.cells.flatMap((c) => c.boundary).filter(near)];
  // Fitted again only when the busy area left the view or shrank to half of it: a fit every poll made the map jump.
  if (pts.length && (!map.userView || !map.px) && !map.suits(pts, 0.5)) map.fit(pts, 0.2);
  const out = things.filter((p) => !map.shows(p[0], p[1])).length;  // off the map as drawn now
  $("outside").hidden = !(out || showAll);
  $("outside-text").textContent = showAll && !out ? "Showing every rider and order."
    : `${out} ${out === 1 ? "rider or order is" : "riders or orders are"} outside this view.`;
  $("show-all").textContent = showAll ? "Fit to the busy area" : "Show all";
  map.clear("areas");
  for (const c of snap.cells) {
    const red = Math.min(1, c.open_orders / 5), green = Math.min(1, c.free_riders / 5);
    const fill = c.open_orders >= c.free_riders ? `rgba(197,48,48,${0.2 + 0.5 * red})` : `rgba(47,133,90,${0.2 + 0.5 * green})`;
    map.polygon(c.cell, c.boundary, fill, `${plural(c.open_orders, "open order")}, ${plural(c.free_riders, "free rider")}`);
  }
  drawOrders(snap);
  for (const r of snap.riders) {  // above the orders: a rider at its restaurant stays in sight
    map.moveMarker(r.id, r.lat, r.lng, { color: COLORS[stateOf(r)], label: `${r.id}: ${stateText(r, snap.ts)}${kitchenDelaysText(r, snap.ts)}`, hit: { selectRider: r.id } });
  }
  for (const [id, m] of map.markers) {
    const r = riderById.get(id);
    if (!r) { map.removeMarker(id); continue; }
    const color = COLORS[stateOf(r)];
    if (m.el.getAttribute("fill") !== color) m.el.setAttribute("fill", color);
    // (shaped by state in common.css: an offered rider is a ring, an unavailable one a small dot)
    if (m.el.dataset.state !== stateOf(r)) m.el.dataset.state = stateOf(r);
    // Outlined in the delayed orders' orange while it waits on a kitchen's delay.
    const waits = waitsOnKitchen(r, snap.ts);
    if (waits !== m.el.hasAttribute("data-food-delayed")) m.el.toggleAttribute("data-food-delayed", waits);
  }
  markSelected();
}

// The rider picked on the map stands out on it (ringed).
function markSelected() {
  for (const [id, m] of map.markers) {
    if ((id === selectedRider) !== m.el.hasAttribute("data-selected")) m.el.toggleAttribute("data-selected", id === selectedRider);
  }
}

// A table being selected from (an id to copy) is not redrawn under the pointer; the header says
// so, and since when, so nobody reads a held table as current.
const held = new Set();
function selectingIn(el) {
  const sel = getSelection();
  const holding = sel && !sel.isCollapsed && sel.rangeCount > 0 && el.contains(sel.getRangeAt(0).commonAncestorContainer);
  if (holding && !held.has(el)) { held.add(el); el.dataset.heldSince = new Date().toLocaleTimeString(); }
  if (!holding) held.delete(el);
  const from = [...held].map((t) => t.dataset.heldSince).sort()[0];
  $("paused").hidden = !held.size;
  $("paused").textContent = held.size ? `a table is paused while text in it is selected (since ${from})` : "";
  return holding;
}

// What has the keyboard's focus in a table, as a selector that finds it again once the rows are
// redrawn (rows are matched by place, and a rider coming online moves every row below it): an
// order's link, a rider's Pause or Resume (either: a press turns one into the other), or a
// rider's row picked on the map. Null when the focus is elsewhere.
function focusedIn(tbody) {
  const el = document.activeElement;
  if (!el || !tbody.contains(el)) return null;
  if (el.dataset.openOrder) return `[data-open-order="${CSS.escape(el.dataset.openOrder)}"]`;
  if (el.dataset.riderAction) return `[data-rider-action][data-rider="${CSS.escape(el.dataset.rider)}"]`;
  if (el.matches("tr[data-rider]")) return `tr[data-rider="${CSS.escape(el.dataset.rider)}"]`;
  return null;
}

// Redraws a table's rows keeping the keyboard focus on the same order link, rider button or
// rider row, if it had it, wherever that row is now. Rows and cells that did not change are kept
// as they are: a click that lands while the table is refreshed is not lost with the element under it.
function redraw(tbody, rows) {
  const focused = focusedIn(tbody);
  const old = [...tbody.children];
  rows.forEach((row, i) => {
    const was = old[i];
    if (!was) tbody.appendChild(row);
    else if (was.outerHTML === row.outerHTML) return;
    else if (was.cells.length !== row.cells.length) was.replaceWith(row);
    else {
      for (const a of [...was.attributes]) if (!row.hasAttribute(a.name)) was.removeAttribute(a.name);
      for (const a of row.attributes) if (was.getAttribute(a.name) !== a.value) was.setAttribute(a.name, a.value);
      [...row.cells].forEach((c, j) => { if (was.cells[j].outerHTML !== c.outerHTML) was.cells[j].replaceWith(c); });
    }
  });
  for (const extra of old.slice(rows.length)) extra.remove();
  const again = focused && tbody.querySelector(focused);
  if (again && again !== document.activeElement) again.focus();
}

// An order id that opens the order in the Order panel.
function orderLink(id) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "link"; b.textContent = id; b.dataset.openOrder = id;
  b.setAttribute("aria-label", `Order ${id}: open`);
  return b;
}

// A table's count beside its title: "(12)", or "(showing 200 of 310, <how>)" when cut.
const countText = (shown, total, how = "") => (shown < total ? `(showing ${shown} of ${total}${how ? `, ${how}` : ""})` : `(${total})`);

// A table's one row saying why it is empty, across all its columns.
function noneRow(tbody, label, text) {
  const tr = document.createElement("tr"); cell(tr, label, text);
  tr.firstChild.colSpan = tbody.closest("table").tHead.rows[0].cells.length;
  redraw(tbody, [tr]);
}

// A rider's id on one line, cut with an ellipsis when long: the whole id is its title (on hover)
// and its text (read out whole).
function riderCell(tr, id) {
  const clip = document.createElement("span"); clip.className = "clip"; clip.textContent = id;
  cell(tr, "Rider", [clip]);
  tr.lastChild.className = "id one-line"; tr.lastChild.title = id;
}

// A cell of `content` (text, or nodes: several are held in one span, so that a phone's card,
// which lays a cell out as label and value side by side, keeps them one flowing value, not
// columns of their own).
function cell(tr, label, content) {
  const td = document.createElement("td"); td.dataset.label = label;
  if (typeof content === "string" || typeof content === "number") td.textContent = content;
  else if (content.length > 1) { const value = document.createElement("span"); value.append(...content); td.append(value); }
  else td.append(...content);
  tr.appendChild(td);
}

// The rider picked on the map: its row in the Riders table is marked, scrolled to and focused
// (a press on the map does what finding the rider in the table does).
let selectedRider = null;
function selectRider(id) {
  selectedRider = id;
  const r = lastSnap?.riders.find((x) => x.id === id);
  // A rider the table does not show (another filter, or past its 200 rows) is found by its id.
  const row = () => $("riders").querySelector(`tr[data-rider="${CSS.escape(id)}"]`);
  if (lastSnap) drawRiders(lastSnap);
  if (!row()) { $("rider-filter").value = id; if (lastSnap) drawRiders(lastSnap); }
  markSelected();
  $("rider-note").textContent = `Rider ${id} selected on the map${r ? `: ${stateText(r, lastSnap.ts)}, ${plural(r.orders, "order")}${kitchenDelaysText(r, lastSnap.ts)}` : ""}.`;
  const tr = row();
  if (tr) { tr.tabIndex = -1; tr.scrollIntoView({ block: "center" }); tr.focus({ preventScroll: true }); }
}

function drawRiders(snap) {
  if (selectingIn($("riders"))) return;
  const t = snap.totals, wanted = $("rider-filter").value.trim().toLowerCase();
  // The riders who need watching first: silent with orders, busy, offered, free, unavailable.
  const riders = snap.riders.filter((r) => !wanted || r.id.toLowerCase().includes(wanted))
    .sort((a, b) => RANK[stateOf(a)] - RANK[stateOf(b)] || a.id.localeCompare(b.id));
  const rows = Math.min(riders.length, TABLE_ROWS);
  $("riders-shown").textContent = wanted
    ? `(${riders.length} of ${t.riders} match${rows < riders.length ? `, showing ${rows}` : ""})`
    : countText(rows, t.riders);
  if (wanted && !riders.length) {
    noneRow($("riders"), "Rider", `No rider's id contains "${wanted}".`); return;
  }
  if (!riders.length) { noneRow($("riders"), "Rider", "None: no rider is online."); return; }
  redraw($("riders"), riders.slice(0, TABLE_ROWS).map((r) => {
    const tr = document.createElement("tr"); tr.dataset.rider = r.id;
    if (r.id === selectedRider) { tr.dataset.selected = ""; tr.tabIndex = -1; }
    if (r.stale) tr.dataset.silent = "";
    riderCell(tr, r.id);
    const refused = r.refused_last_hour ? ` · refused ${plural(r.refused_last_hour, "offer")} in the last hour` : "";
    const paused = !r.paused ? [] : r.paused.reason ? [" · paused by the operator: ", isolated(r.paused.reason)] : [" · paused by the operator"];
    cell(tr, "State", [stateText(r, snap.ts) + kitchenDelaysText(r, snap.ts), ...paused, refused]);
    if (waitsOnKitchen(r, snap.ts)) tr.dataset.delayed = "";
    if (r.refused_last_hour >= 3) tr.dataset.refusing = "";
    if (r.paused) tr.dataset.paused = "";
    const ids = r.order_ids || [];
    cell(tr, "Orders", ids.length ? ids.map(orderLink) : String(r.orders));
    cell(tr, "Action", [pauseButton(r)]);
    return tr;
  }));
}

// Pause a rider (no new offers until resumed, whatever its app says) or resume it.
function pauseButton(r) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "secondary small";
  b.textContent = r.paused ? "Resume" : "Pause";
  b.dataset.riderAction = r.paused ? "resume" : "pause"; b.dataset.rider = r.id;
  b.setAttribute("aria-label", r.paused ? `Resume rider ${r.id}: offers again` : `Pause rider ${r.id}: no new offers`);
  if (pausing) b.setAttribute("aria-disabled", "true");  // (drawn while a pause or resume waits for its answer)
  return b;
}

// Every paused rider, online or not, longest paused first: the only place to resume one that is offline.
function drawPaused(snap) {
  if (selectingIn($("paused-riders"))) return;
  const listed = snap.paused_riders || [], total = snap.totals.paused_riders ?? listed.length;
  $("paused-riders-shown").textContent = countText(listed.length, total, "longest paused first");
  if (!listed.length) {
    noneRow($("paused-riders"), "Rider", "None: every rider may be offered orders."); return;
  }
  redraw($("paused-riders"), listed.map((p) => {
    const tr = document.createElement("tr"); tr.dataset.rider = p.id;
    riderCell(tr, p.id);
    cell(tr, "Since", Number.isFinite(p.at) ? `${clockTime(p.at)} (${since(snap.ts - p.at)} ago)` : "");
    cell(tr, "Why", p.reason ? [isolated(p.reason)] : "");
    cell(tr, "By", p.by ? [isolated(p.by)] : "");  // (the pausing operator's token subject)
    cell(tr, "Action", [pauseButton({ id: p.id, paused: p })]);
    return tr;
  }));
}

// One pause or resume at a time (a double click acts once): the one waiting for its answer, or
// being checked after none came ({ riderId, done, at, checking }). A press meanwhile says so,
// rather than nothing. Its rider buttons are greyed meanwhile (aria-disabled, not `disabled`:
// keyboard focus stays on the button pressed).
let pausing = null;
const riderNote = (text) => { $("rider-note").textContent = text; };
function greyRiderButtons() {
  for (const b of document.querySelectorAll("[data-rider-action]")) {
    if (pausing) b.setAttribute("aria-disabled", "true"); else b.removeAttribute("aria-disabled");
  }
}

// Whether a snapshot shows rider `id` paused: on its Paused riders list, or its row; not on a
// whole list, not paused. Null when it cannot tell (an offline rider past a cut list).
function pausedIn(snap, id) {
  const listed = snap.paused_riders || [];
  if (listed.some((p) => p.id === id)) return true;
  const r = snap.riders.find((x) => x.id === id);
  if (r) return Boolean(r.paused);
  return listed.length >= (snap.totals?.paused_riders ?? listed.length) ? false : null;
}

// Pause or resume, as act() does an order's actions: said at once, given up after
// ACTION_WAIT_MS without an answer (a stalled path could hold it for minutes), and then, or after
// a `redis_unavailable` answer (not known to be done), checked in the snapshot's paused riders
// once the server answers again, and said which.
async function pauseOrResume(riderId, action) {
  if (pausing) {
    const ago = since(performance.now() - pausing.at);
    riderNote(pausing.checking
      ? `Still checking whether rider ${pausing.riderId} was ${pausing.done} (pressed ${ago} ago): press again once that is known.`
      : `Still waiting for the server's answer: rider ${pausing.riderId} is being ${pausing.done} (pressed ${ago} ago): press again once it answers.`);
    return;
  }
  const done = action === "pause" ? "paused" : "resumed";
  let body = {};
  if (action === "pause") {
    const reason = askReason(`Pause rider ${riderId}: no new offers until you resume it (the orders it carries stay its own). Why? (required; the rider is shown this)`, true);
    if (reason === null) return;
    body = { reason };
  }
  pausing = { riderId, done, at: performance.now(), checking: false };
  const pressed = document.activeElement, table = pressed?.closest?.("tbody");
  let snap = null;
  try {
    greyRiderButtons();
    riderNote(`${action === "pause" ? "Pausing" : "Resuming"} rider ${riderId}: waiting for the server…`);
    let unsure = null;  // what left it not known to be done: no answer, or redis_unavailable
    try {
      await api(`/v1/riders/${encodeURIComponent(riderId)}/${action}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        signal: AbortSignal.timeout(ACTION_WAIT_MS) });
      riderNote(action === "pause" ? `Rider ${riderId} paused: no new offers until resumed.`
        : `Rider ${riderId} resumed: it is offered orders again when available.`);
    } catch (err) {
      // No answer in time, or the connection dropped (it may have reached the server), or redis_unavailable.
      if (!(err instanceof ApiError) || err.code === "redis_unavailable") {
        unsure = err;
        riderNote(unsureText(`Rider ${riderId}`, done, err));
      } else riderNote(`Rider ${riderId} was not ${done}: ${err.message}`);
    }
    if (unsure) {  // read the snapshot once the server answers again, and say which
      pausing.checking = true;
      snap = await settleRead((signal) => api(`/v1/ops/snapshot${CAPS}`, { signal }));
      const now = snap === null ? null : pausedIn(snap, riderId);
      riderNote(now === null ? `Rider ${riderId}: could not find out whether it was ${done}; see the Riders and Paused riders tables once the page updates.`
        : now === (action === "pause") ? `Rider ${riderId} was ${done} after all${action === "pause" ? ": no new offers until resumed." : "."}`
          : `Rider ${riderId} was not ${done}: ${notTaken(unsure)}. Try again.`);
    } else {
      try { snap = await api(`/v1/ops/snapshot${CAPS}`, { signal: AbortSignal.timeout(SNAPSHOT_WAIT_MS) }); } catch { /* the next poll tries again */ }
    }
  } finally {
    pausing = null;
    greyRiderButtons();
  }
  if (snap) { lastSnap = snap; draw(snap); }
  // Pressed from the keyboard: focus on the rider's new Resume (or Pause) button, in the table
  // pressed in, else in the other (resumed, it leaves Paused riders), else on that table's title.
  if (table && (document.activeElement === document.body || document.activeElement === pressed)) {
    const button = `[data-rider-action][data-rider="${CSS.escape(riderId)}"]`;
    const next = table.querySelector(button) || document.querySelector(`#riders ${button}, #paused-riders ${button}`)
      || $(table.closest("table").getAttribute("aria-labelledby"));
    if (next !== document.activeElement) next.focus();
  }
}

// The confirmed orders waiting for a rider, longest first, with the dispatcher's estimate: none
// when no rider can be planned for them now (the ones to act on), or not yet when no round has
// looked at them since they came in.
function drawWaiting(snap) {
  if (selectingIn($("waiting"))) return;
  const listed = snap.open_orders.slice(0, TABLE_ROWS), total = snap.totals.open_orders;
  const started = snap.dispatch?.started ?? snap.dispatch?.ts;
  $("waiting-shown").textContent = countText(listed.length, total, "longest waiting first");
  if (!listed.length) { noneRow($("waiting"), "Order", "None: every confirmed order has a rider."); return; }
  redraw($("waiting"), listed.map((o) => {
    const tr = document.createElement("tr"); tr.dataset.order = o.id;
    const came = o.confirmed_at ?? o.placed_at;  // it waits for a rider from its confirmation
    // The dispatcher sends a rider for the food's ready time, not before: an order whose food is
    // still cooking is held, and says until when.
    if (heldByKitchen(o, snap.ts)) tr.dataset.delayed = "";
    const cooking = kitchenDelayed(o) ? ` · ${delayedText(o, snap.ts)}`
      : Number.isFinite(o.ready_at) && o.ready_at > snap.ts ? ` · food ready ${clockTime(o.ready_at)}` : "";
    const age = Number.isFinite(came) ? since(snap.ts - came) + cooking : "";
    let eta;
    const due = dueAt(o, snap);
    if (Number.isFinite(o.planned_eta)) {
      eta = `${clockTime(o.planned_eta)} (in ${Math.max(1, minutesFrom(o.planned_eta, snap.ts))} min)`;
      if (due !== null && o.planned_eta > due) { eta += ` · ${since(o.planned_eta - due)} past due`; tr.dataset.unplanned = ""; }
    }
    else if (!Number.isFinite(started) || came >= started) eta = "not planned yet: the next round will";
    else { eta = "none: no rider can be planned now"; tr.dataset.unplanned = ""; }
    cell(tr, "Order", [orderLink(o.id)]); cell(tr, "Kitchen", o.merchant_id); cell(tr, "Waiting", age);
    cell(tr, "Estimated drop-off", eta);
    return tr;
  }));
}

// Orders no kitchen has confirmed yet, longest waiting first: one that waits long may be at a
// restaurant whose board is not open.
const KITCHEN_LATE_MIN = 5;
$("kitchen-late-min").textContent = KITCHEN_LATE_MIN;
function drawKitchenQueue(snap) {
  if (selectingIn($("kitchen-queue"))) return;
  const listed = (snap.kitchen_queue || []).slice(0, TABLE_ROWS), total = snap.totals.kitchen_queue ?? listed.length;
  $("kitchen-shown").textContent = countText(listed.length, total, "longest waiting first");
  if (!listed.length) {
    noneRow($("kitchen-queue"), "Order", "None: every kitchen has confirmed its orders."); return;
  }
  redraw($("kitchen-queue"), listed.map((o) => {
    const tr = document.createElement("tr"); tr.dataset.order = o.id;
    const waited = snap.ts - o.placed_at, late = waited > KITCHEN_LATE_MIN * 60000;
    if (late) tr.dataset.late = "";
    cell(tr, "Order", [orderLink(o.id)]); cell(tr, "Kitchen", o.merchant_id);
    cell(tr, "Waiting", since(waited) + (late ? ` · over ${KITCHEN_LATE_MIN} min` : ""));
    return tr;
  }));
}

// Orders past the on-time target since their clock started (overdue, whatever their status), or
// due soon with a drop-off estimate past it (predicted), the longest overdue first.
const LATE_WARNING_MIN = 15;  // the server's lateness.WARNING_MIN
$("late-warning").textContent = LATE_WARNING_MIN;
function drawLate(snap) {
  const target = snap.settings?.TRACKER_ON_TIME_TARGET_MIN;
  $("late-target").textContent = Number.isFinite(target) ? `${target} min` : "on time";
  if (selectingIn($("late"))) return;
  const listed = (snap.running_late || []).slice(0, TABLE_ROWS), total = snap.totals.running_late ?? listed.length;
  const atLeast = snap.totals_at_least?.running_late;  // too many orders due to read them all: the oldest were
  const of = atLeast ? `at least ${total}` : `${total}`;
  $("late-shown").textContent = listed.length < total ? `(showing ${listed.length} of ${of}, longest overdue first)` : `(${of})`;
  if (!listed.length) {
    noneRow($("late"), "Order", atLeast ? "None among the oldest orders read." : "None: every order on the road is on time.");
    return;
  }
  redraw($("late"), listed.map((o) => {
    const tr = document.createElement("tr"); tr.dataset.order = o.id;
    const overdue = o.late === "overdue";
    if (overdue) tr.dataset.overdue = "";
    cell(tr, "Order", [orderLink(o.id)]); cell(tr, "Kitchen", o.merchant_id);
    const delayed = kitchenDelayed(o) && !ON_THE_ROAD.has(o.status);
    if (delayed && heldByKitchen(o, snap.ts)) tr.dataset.delayed = "";
    const food = delayed ? ` · ${delayedText(o, snap.ts)}`
      : Number.isFinite(o.ready_at) && o.ready_at > Math.min(o.due_at, snap.ts) && !ON_THE_ROAD.has(o.status)
        ? ` · food ready ${clockTime(o.ready_at)}` : "";  // the kitchen, not the riders, makes it late
    cell(tr, "Status", `${words(o.status)} · ${o.rider_id ? `rider ${o.rider_id}` : "no rider"}${food}`);
    cell(tr, "Due", overdue ? `${since(snap.ts - o.due_at)} ago` : `in ${since(o.due_at - snap.ts)}`);
    const past = o.expected_at - o.due_at;
    if (past > 0 && o.expected_at >= snap.ts) tr.dataset.pastDue = "";  // marked as in "Orders waiting"
    cell(tr, "Expected drop-off", !Number.isFinite(o.expected_at) ? "unknown"
      : o.expected_at < snap.ts ? `unknown: the last estimate (${clockTime(o.expected_at)}) has passed`
        : past > 0 ? `${clockTime(o.expected_at)} (${since(past)} past due)` : clockTime(o.expected_at));
    return tr;
  }));
}

function draw(snap) {
  const riderById = new Map(snap.riders.map((r) => [r.id, r]));
  drawMap(snap, riderById);
  const s = snap.service, t = snap.totals;
  figures($("figures"), [  // whole-fleet totals: the lists may be cut, these are not
    ["orders waiting for the kitchen", s.by_status?.placed ?? 0],
    ["orders waiting for a rider", t.open_orders],
    ["deliveries running late", snap.totals_at_least?.running_late ? `${t.running_late}+` : t.running_late ?? 0],
    ["riders online", t.online],
    ["riders unavailable", t.unavailable],
    ["riders silent with orders", t.silent],
    ["free riders", t.free],
    ["delivered", s.delivered],
    ["failed deliveries", s.by_status?.failed ?? 0],  // closed by an operator after pickup: not delivered
    ["on time (of delivered)", s.on_time_share === null ? "–" : `${Math.round(s.on_time_share * 100)}%`],
    ["click-to-door", s.click_to_door_mean_min === null ? "–" : `${s.click_to_door_mean_min.toFixed(1)} min`],
  ]);
  drawDispatch(snap);
  drawCapped(snap);
  drawDegraded(snap);
  drawRiders(snap);
  drawPaused(snap);
  drawLate(snap);
  drawWaiting(snap);
  drawKitchenQueue(snap);
  $("updated").textContent = `updated ${new Date(snap.ts).toLocaleTimeString()}`;  // the server's clock, as every time here
}

// ---- One order: look it up, and act on it as its status allows.
let shownOrder = null;
let acting = false;

// `parts`: strings, and a reason as isolated() (said within the note's words).
function note(...parts) { $("order-note").replaceChildren(...parts); }
// The end of a note's sentence: ": " and the reason (isolated), or "." when there is none.
const reasonEnd = (reason) => (typeof reason === "string" ? [": ", isolated(reason)] : ["."]);

// The open order as it stands now, with each snapshot (its rider may have moved it on).
async function refreshOrder() {
  if (!shownOrder || acting) return;
  try {
    const order = await api(`/v1/orders/${encodeURIComponent(shownOrder.id)}`, { signal: AbortSignal.timeout(SNAPSHOT_WAIT_MS) });
    if (!acting && shownOrder && order.id === shownOrder.id) { shownOrder = order; drawOrder(order); }
  } catch { /* said by the next look-up or action */ }
}

// A look-up on a stalled path: said once it has waited LOOKUP_SAY_MS, given up after
// LOOKUP_WAIT_MS (and said), tried again every 2 s until the server answers, for at most
// LOOKUP_TRY_MS. Only the newest look-up shows what it read: an older one answering late does not.
const LOOKUP_SAY_MS = 500, LOOKUP_WAIT_MS = 8000, LOOKUP_TRY_MS = 120_000;
let lookup = 0;

// `also`: the other orders one mark on the map stands for ({ kitchen, ids }), listed under the order.
async function openOrder(id, focus = false, also = null) {
  const mine = ++lookup;
  $("order-id").value = id;
  const others = also?.ids || [];
  $("order-also").hidden = !others.length;
  const group = [id, ...others], link = (other) => {  // each opens with the rest of the group listed
    const b = orderLink(other); b.dataset.kitchen = also.kitchen; b.dataset.also = group.filter((x) => x !== other).join(" ");
    return b;
  };
  const toConfirm = new Set((lastSnap?.kitchen_queue || []).map((o) => o.id));  // said apart: not yet the kitchen's
  const item = (other, i) => [...(i ? [" "] : []), link(other), ...(toConfirm.has(other) ? [" (placed, to confirm)"] : [])];
  $("order-also").replaceChildren(...(others.length ? [`Also at kitchen ${also.kitchen}: `, ...others.flatMap(item)] : []));
  const slow = setTimeout(() => { if (mine === lookup) note(`Looking up order ${id}: waiting for the server…`); }, LOOKUP_SAY_MS);
  const until = performance.now() + LOOKUP_TRY_MS;
  let order = null, failed = null;
  try {
    for (;;) {
      try {
        order = await api(`/v1/orders/${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(LOOKUP_WAIT_MS) });
        break;
      } catch (err) {
        failed = err;
        if (err instanceof ApiError || mine !== lookup || performance.now() > until) break;
        // No answer in time, or the connection dropped: said, and tried again.
        clearTimeout(slow);
        if (shownOrder?.id !== id) { shownOrder = null; $("order-card").hidden = true; }
        note(`Order ${id} could not be read: ${err.name === "TimeoutError" ? `no answer from the server within ${LOOKUP_WAIT_MS / 1000} s`
          : "the connection to the server failed"}. Trying again…`);
        await new Promise((ok) => setTimeout(ok, 2000));
        if (mine !== lookup) return;  // (another look-up since)
      }
    }
  } finally { clearTimeout(slow); }
  if (mine !== lookup) return;
  if (order) {
    shownOrder = order; drawOrder(order); note("");
    if (focus) $("order-summary").focus();  // (opened from a table: say which order, where the buttons are)
  } else {
    shownOrder = null; $("order-card").hidden = true;
    note(failed.code === "not_found" ? `There is no order ${id}.`
      : failed instanceof ApiError ? `Order ${id} could not be read: ${failed.message}`
        : `Order ${id} could not be read: no answer from the server for ${since(LOOKUP_TRY_MS)}. Look it up again.`);
  }
}

const TAKEN_BACK = new Set(["assigned", "at_pickup"]);  // a rider has it, the food is not collected
const CANCELLABLE = new Set(["placed", "confirmed", "assigned", "at_pickup"]);
const ON_THE_ROAD = new Set(["picked_up", "at_dropoff"]);

let drawnActions = "";
function drawOrder(o) {
  const undone = o.status === "cancelled" || o.status === "failed";  // a rider it had is no longer on it
  const parts = [`${o.id}: ${words(o.status)}`, `kitchen ${o.merchant_id}`,
    o.rider_id ? `${undone ? "had rider" : "rider"} ${o.rider_id}` : "no rider"];
  if (Number.isFinite(o.placed_at)) parts.push(`placed ${clockTime(o.placed_at)}`);
  // An order scheduled ahead is timed from when its kitchen would start on it, not its placement.
  const scheduled = o.clock_start_at > o.placed_at, start = scheduled ? o.clock_start_at : o.placed_at;
  if (scheduled) parts.push(`scheduled: timed from ${clockTime(o.clock_start_at)}`);
  const due = dueAt(o, lastSnap);
  if (Number.isFinite(o.delivered_at)) {
    parts.push(`delivered ${clockTime(o.delivered_at)}, ${since(Math.max(0, o.delivered_at - start))} after ${
      scheduled ? "that" : "it was placed"}${
      due === null ? "" : o.delivered_at <= due ? " (on time)" : ` (${since(o.delivered_at - due)} late)`}`);
  } else if (!["cancelled", "failed"].includes(o.status)) {
    if (due !== null) parts.push(`due ${clockTime(due)}`);
    const ready = o.expected_ready_at ?? o.ready_at;
    const delays = (o.events || []).filter((e) => e.kind === "food_delayed");
    // One rule, delayed or not: a ready time passed with the food not called ready (nor collected)
    // reads "food was due"; "food ready" is said of a time to come, or of the kitchen's Ready.
    if (!Number.isFinite(o.food_ready_at) && !ON_THE_ROAD.has(o.status) && delayPast(ready, lastSnap?.ts ?? Date.now())) {
      parts.push(`food was due ${clockTime(ready)}`);  // the kitchen's time is up: the food is late
    } else if (kitchenDelayed(o) && !ON_THE_ROAD.has(o.status)) {  // the kitchen, not the riders, holds it up
      const minutes = delays.reduce((sum, e) => sum + (Number.isFinite(e.minutes) ? e.minutes : 0), 0);
      parts.push(`food delayed by the kitchen${minutes ? ` ${minutes} min` : ""}${delays.length > 1 ? ` (${delays.length} delays)` : ""}${
        Number.isFinite(ready) ? `, ready ${clockTime(ready)}` : ""}`);
    } else if (Number.isFinite(ready)) parts.push(`food ready ${clockTime(ready)}`);
    const eta = Number.isFinite(o.eta) ? o.eta : o.planned_eta;
    if (Number.isFinite(eta)) parts.push(`drop-off about ${clockTime(eta)}`);
  }
  const ended = (o.events || []).findLast?.((e) => e.kind === o.status);
  let why = null;  // the reason it ended with, isolated after the summary's words
  if (ended && (o.status === "cancelled" || o.status === "failed")) {
    if (typeof ended.reason === "string") why = ended.reason;
    parts.push(`by ${ended.by || "?"}${why === null ? "" : ":"}`);
  }
  const summary = parts.join(" · ");
  if ($("order-summary").textContent !== (why === null ? summary : `${summary} ${why}`)) {
    $("order-summary").replaceChildren(...(why === null ? [summary] : [`${summary} `, isolated(why)]));
  }
  drawEvents(o.events || []);
  $("order-card").hidden = false;
  // The buttons are drawn again only when what they offer changes (a new ETA every fix would
  // take the keyboard's focus, and a click half-made, away every 2 s).
  const key = `${o.id}|${o.status}|${o.rider_id}`;
  if (key === drawnActions) return;
  drawnActions = key;
  const buttons = [];
  const add = (text, action) => {
    const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.dataset.action = action;
    b.className = action === "cancel" || action === "fail" ? "" : "secondary";
    if (acting) b.setAttribute("aria-disabled", "true");  // (drawn while an action waits for its answer)
    b.addEventListener("click", () => act(o, action)); buttons.push(b);
  };
  if (CANCELLABLE.has(o.status)) add("Cancel order", "cancel");
  if (TAKEN_BACK.has(o.status) && o.rider_id) add(`Take back from ${o.rider_id}`, "unassign");
  if (o.status === "confirmed" && !o.rider_id) add("Assign to a rider…", "assign");
  if (ON_THE_ROAD.has(o.status)) add("Mark delivery failed", "fail");
  const focused = $("order-actions").contains(document.activeElement) ? document.activeElement.dataset.action : null;
  $("order-actions").replaceChildren(...buttons);
  if (!buttons.length) $("order-actions").textContent = "Nothing to do: the order has ended.";
  // The keyboard's place stays in the panel: the same action's button, or, that action done or
  // no longer offered (cancelled, assigned), the order's summary, not the top of the page.
  if (focused) (buttons.find((b) => b.dataset.action === focused) || $("order-summary")).focus();
}

// The order's history, newest last: what happened, when, by whom and why.
function drawEvents(events) {
  const items = events.map((e) => {
    const li = document.createElement("li");
    const who = e.kind === "assigned" && e.rider_id ? ` to ${e.rider_id}` : e.by ? ` by ${e.by}${e.rider_id && e.by !== "rider" ? ` (${e.rider_id})` : ""}` : "";
    const delay = e.kind === "food_delayed" ? [Number.isFinite(e.minutes) ? ` ${e.minutes} min` : "",
      Number.isFinite(e.ready_at) ? `, ready ${clockTime(e.ready_at)}` : ""].join("") : "";
    li.append(`${Number.isFinite(e.ts) ? clockTime(e.ts) : ""} ${words(e.kind)}${delay}${who}`);
    if (typeof e.reason === "string") li.append(": ", isolated(e.reason));
    return li;
  });
  const text = items.map((li) => li.textContent).join("\n");
  if ($("order-events").dataset.text !== text) { $("order-events").replaceChildren(...items); $("order-events").dataset.text = text; }
}

// How long an action waits for the server's answer before it is treated as not known to be done
// (then checked, as one answered redis_unavailable is).
const ACTION_WAIT_MS = 15_000;
// Actions of this page answered redis_unavailable or not at all ("action id"): only such an action can be the
// one a later `already` refusal found done; without one, someone else took that step first.
const unsureActs = new Set();
const VERB = { cancel: "cancelled", unassign: "taken back", assign: "assigned", fail: "marked as a failed delivery" };
// What an action not known to be done says while it is checked: `who` ("Order o1", "Rider r1"),
// `done` what it would have made of them, `err` what left it unknown (no answer in time or a
// dropped connection: the request may have reached the server; or a redis_unavailable answer).
function unsureText(who, done, err) {
  return err instanceof ApiError
    ? `${who}: not known whether it was ${done}: the server's database did not answer in time, `
      + `and may still do it when it wakes. Checking… (Server: ${err.message})`
    : `${who}: no answer from the server within ${ACTION_WAIT_MS / 1000} s: not known whether it was ${done}. Checking…`;
}
// Why an action not known to be done (`err`: the error that left it so) did not go through,
// once the check found it not done: the database only when the server said so
// (`redis_unavailable`); after no answer, the network, whatever the check found.
function notTaken(err) {
  if (err?.code === "redis_unavailable") return "the server's database did not take it";
  if (err?.name === "TimeoutError") {
    return `no answer from the server within ${ACTION_WAIT_MS / 1000} s (the request, or its answer, was lost on the way)`;
  }
  return "the request did not reach the server (the connection failed)";
}
// Whether the order as read took the action (`body`: what was sent), for an action answered
// `redis_unavailable`: not known to be done (Redis may still take it when it wakes).
const TOOK = {
  cancel: (o) => o.status === "cancelled",
  fail: (o) => o.status === "failed",
  assign: (o, body) => o.rider_id === body.rider_id,
  unassign: (o, body) => o.rider_id !== body.rider_id,
};

// Why the server did not take an action, in plain words first (the server's own words follow).
function whyNot(err) {
  const message = String(err.message || "");
  if (err.code === "invalid_transition") {
    if (/has no rider to take it from/.test(message)) return "it has no rider now (its rider gave it back, or it was taken back already).";
    const now = /it is '(\w+)'/.exec(message)?.[1];
    return now ? `it is ${words(now)} now.` : "its status does not allow it (any more).";
  }
  if (err.code === "conflict") return "it changed meanwhile; look at it again.";
  if (err.code === "not_found") return "there is no such order.";
  if (err.code === "redis_unavailable") return "the server could not save it just now; try again.";
  if (err.code === "bad_request") return "the server did not accept what was sent.";
  return "the server refused it.";
}

async function act(o, action) {
  if (acting) return;  // a double click acts once
  let body = {};
  if (action === "cancel") {
    const reason = askReason(`Cancel order ${o.id}? Say why, in at most ${MAX_REASON} characters (the customer and the kitchen are shown this):`, false);
    if (reason === null) return;
    if (reason) body = { reason };
  } else if (action === "unassign") {
    const reason = askReason(`Take order ${o.id} back from ${o.rider_id}? Why (optional; the rider is shown this):`, false);
    if (reason === null) return;
    body = { rider_id: o.rider_id, ...(reason ? { reason } : {}) };  // refused if another rider has it by now
  } else if (action === "assign") {
    const rider = window.prompt(`Give order ${o.id} to which rider? Rider id:`, "")?.trim();
    if (!rider) return;
    const known = lastSnap?.riders.find((r) => r.id === rider);
    const paused = lastSnap?.paused_riders?.find((p) => p.id === rider);
    if (paused && !window.confirm(`Rider ${rider} is paused (${isolatedText(paused.reason)}): dispatch offers it nothing. Give it order ${o.id} anyway?`)) return;
    if (!known || known.stale) {
      const wait = lastSnap?.settings?.TRACKER_SILENT_TAKE_BACK_S;
      const back = wait ? ` If it does not show up, the order is taken back from it after ${since(wait * 1000)}.` : "";
      if (!window.confirm(`Rider ${rider} is not online now (not on the map).${back} Give it order ${o.id} anyway?`)) return;
    }
    body = { rider_id: rider };
  } else if (action === "fail") {
    const reason = askReason(`The food of order ${o.id} will not arrive? Say what happened (required; the customer is shown this):`, true);
    if (reason === null) return;
    body = { reason };
  }
  // The buttons wait for the answer greyed, and `acting` turns presses away meanwhile, but not
  // `disabled`: a disabled button drops the keyboard's focus to the top of the page.
  acting = true;
  const fromButton = $("order-actions").contains(document.activeElement);
  for (const b of $("order-actions").querySelectorAll("button")) b.setAttribute("aria-disabled", "true");
  let done = false, unsure = null, answered = false;  // unsure: the error that left it not known to be done
  try {
    const after = await api(`/v1/orders/${encodeURIComponent(o.id)}/${action}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: AbortSignal.timeout(ACTION_WAIT_MS) });
    answered = true;
    shownOrder = after; drawOrder(after); done = true;
    note(action === "assign" ? `Order ${o.id} assigned to ${body.rider_id}.`
      : action === "unassign" ? `Order ${o.id} taken back from ${o.rider_id}: dispatch offers it again.`
        : `Order ${o.id} ${VERB[action]}.`);
  } catch (err) {
    // No answer in time, or the connection dropped: the request may have reached the server.
    const noAnswer = !answered && !(err instanceof ApiError);
    if (noAnswer || err.code === "redis_unavailable") {
      unsure = err; unsureActs.add(`${action} ${o.id}`);
      note(unsureText(`Order ${o.id}`, VERB[action], err));
    } else if (err.code === "invalid_transition" && err.detail?.already === true) {
      note(unsureActs.has(`${action} ${o.id}`) ? `Order ${o.id} is already ${VERB[action]} (an earlier try went through).`
        : `Order ${o.id} was already ${VERB[action]} before this press (see its events)${body.reason ? "; your reason was not sent." : "."}`);
    } else note(`Order ${o.id} was not ${VERB[action]}: ${whyNot(err)} (Server: ${err.message})`);
  } finally {
    acting = false;
    for (const b of $("order-actions").querySelectorAll("button")) b.removeAttribute("aria-disabled");
  }
  if (unsure) {  // read it once the server answers again, and say which
    const after = await settle(o.id);
    const took = after !== null && TOOK[action](after, body);
    if (after !== null && !took) unsureActs.delete(`${action} ${o.id}`);
    note(after === null ? `Order ${o.id}: could not find out whether it was ${VERB[action]}; look at it again in a moment.`
      : took ? `Order ${o.id} was ${VERB[action]} after all.`
        : `Order ${o.id} was not ${VERB[action]}: ${notTaken(unsure)}. Try again.`);
  }
  // The order as it stands now, with its events (who ended it and why), the note kept (and kept
  // if it cannot be read). A rider may give a hand assignment back at once (its shift ends first):
  // said, so the note does not contradict the card.
  await refreshOrder();
  if (fromButton && document.activeElement === document.body) {  // (its panel redrawn meanwhile)
    ($("order-actions").querySelector(`[data-action="${action}"]`) || $("order-summary")).focus();
  }
  const ended = shownOrder?.id === o.id && ["cancelled", "failed", "delivered"].includes(shownOrder.status);
  if (done && action === "assign" && ended) {  // (a cancel that landed just after the assignment: both went through)
    const end = (shownOrder.events || []).findLast?.((e) => e.kind === shownOrder.status);
    const who = { operator: "the operator", merchant: "the restaurant" }[end?.by] || "";
    note(`Order ${o.id} was assigned to ${body.rider_id}, but was then ${words(shownOrder.status)}${who ? ` by ${who}` : ""}`,
      ...reasonEnd(end?.reason));
  } else if (done && action === "assign" && shownOrder?.id === o.id && shownOrder.rider_id !== body.rider_id) {
    const back = (shownOrder.events || []).findLast?.((e) => e.kind === "rider_unassigned");
    note(`Order ${o.id} was assigned to ${body.rider_id}, who no longer has it`, ...reasonEnd(back?.reason));
  }
}

$("order-find").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("order-id").value.trim();
  if (id) openOrder(id);
});
document.addEventListener("click", (ev) => {
  const riderButton = ev.target.closest?.("[data-rider-action]");
  if (riderButton) { pauseOrResume(riderButton.dataset.rider, riderButton.dataset.riderAction); return; }
  const rider = ev.target.closest?.("[data-select-rider]");  // a rider on the map
  if (rider) { selectRider(rider.dataset.selectRider); return; }
  const link = ev.target.closest?.("[data-open-order]");  // an order in a table, or its restaurant's mark on the map
  if (!link) return;
  openOrder(link.dataset.openOrder, true, { kitchen: link.dataset.kitchen, ids: (link.dataset.also || "").split(" ").filter(Boolean) });
});
$("rider-filter").addEventListener("input", () => {
  selectedRider = null;  // looking for another rider: the one picked on the map is let go
  markSelected();
  if (lastSnap) drawRiders(lastSnap);
});
$("zoom-in").addEventListener("click", () => map.zoom(1.5));
$("zoom-out").addEventListener("click", () => map.zoom(1 / 1.5));
$("zoom-fit").addEventListener("click", () => { map.resetView(); if (lastSnap) draw(lastSnap); });
$("show-all").addEventListener("click", () => { showAll = !showAll; map.resetView(); if (lastSnap) draw(lastSnap); });

// Poll every 2 s; back off to 16 s (jittered: pages cut off together do not come back together)
// while the server cannot be reached; stop for good (and say why) when it refuses the token. A
// request that hangs (a stalled network) is given up after SNAPSHOT_WAIT_MS, and the page says
// it is not updating, instead of waiting on it for good.
const EVERY_MS = 2000;
const SNAPSHOT_WAIT_MS = 8000;
// ?max_riders= and ?max_orders= on the page's address pass on to the snapshot (a slow machine
// may want fewer markers); the figures count the whole fleet either way.
const CAPS = (() => {
  const own = new URLSearchParams(location.search), caps = new URLSearchParams();
  for (const name of ["max_riders", "max_orders"]) if (own.has(name)) caps.set(name, own.get(name));
  return caps.toString() ? `?${caps}` : "";
})();
let retryMs = EVERY_MS;
let lastSnap = null;
async function tick() {
  let snap;
  try { snap = await api(`/v1/ops/snapshot${CAPS}`, { signal: AbortSignal.timeout(SNAPSHOT_WAIT_MS) }); }
  catch (err) {
    if (err.refused) { refused(err.message); return; }
    // The server answered but cannot read the fleet: say that, not that it cannot be reached.
    const from = lastSnap ? ` (from ${clockTime(lastSnap.ts)})` : "";
    setText($("offline"), err.code === "redis_unavailable"
      ? "The server cannot reach its Redis: the figures below are from before; retrying…"
      : err.name === "TimeoutError"
        ? `No answer from the server for ${SNAPSHOT_WAIT_MS / 1000} s: the figures below are not updating${from}; retrying…`
        : "Cannot reach the server: retrying…");
    setOffline(true);
    setTimeout(tick, retryMs * (0.5 + Math.random()));
    retryMs = Math.min(retryMs * 2, 16000);
    return;
  }
  setOffline(false); tokenTaken(); retryMs = EVERY_MS; lastSnap = snap;
  try { draw(snap); refreshOrder(); } finally { setTimeout(tick, EVERY_MS); }
}
// A refused link is never polled again: the figures, the map, the tables and the order shown go,
// with their buttons and the "updated" time (as on the other pages), rather than stay on show
// looking live; the banner says why.
function refused(reason) {
  showRefusal(reason, { detail: true });
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  for (const id of ["updated", "paused", "degraded"]) $(id).hidden = true;
}
const initial = new URLSearchParams(location.search).get("order");
if (initial) openOrder(initial);
tick();

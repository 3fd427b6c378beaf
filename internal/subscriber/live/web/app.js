// The live page: one EventSource on /events (same origin, so the browser
// sends the page's cookie), one fetch of /api/deadletters and a fetch of
// /api/backlog every few seconds. Everything
// from the server goes into the page as text (textContent), never as HTML.
"use strict";

const MAX_ROWS = 50;
const OUTCOMES = ["success", "duplicate", "held", "drop", "retry", "dead_letter"];
// The handler's counters (GET /stats) by the outcome they count.
const COUNTERS = { success: "processed", duplicate: "duplicates", held: "held", drop: "dropped", retry: "retried", dead_letter: "dead_letters" };

const $ = (id) => document.getElementById(id);
const deadLetters = new Map(); // event id -> element

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function setStatus(cls, text) {
  const s = $("status");
  s.className = "status " + cls;
  s.textContent = text;
}

function addDelivery(d, fresh) {
  const body = $("orders").tBodies[0];
  const tr = el("tr", fresh ? "fresh" : "");
  tr.dataset.eventId = d.event_id;
  tr.dataset.outcome = d.outcome;
  // An order that did not decode has no id or message: show why instead.
  const msg = d.message !== undefined ? el("td", "", d.message) : el("td", "why", d.reason || "");
  msg.title = msg.textContent;
  const evt = el("td", "mono", d.event_id);
  evt.title = d.event_id;
  tr.append(el("td", "mono", clock(d.time)), el("td", "", d.id ?? "—"), msg);
  const out = el("td");
  const badge = el("span", "badge " + (OUTCOMES.includes(d.outcome) ? d.outcome : ""), d.outcome.replace("_", " "));
  if (d.reason) badge.title = d.reason;
  out.append(badge);
  tr.append(out, evt, el("td", "num", d.duration_ms.toFixed(1)));
  tr.title = d.reason ? d.outcome + ": " + d.reason : d.topic;
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  $("orders-empty").classList.add("hidden");
  if (d.outcome === "dead_letter") {
    addDeadLetter({ event_id: d.event_id, reason: d.reason, received_at: d.time,
      data: d.id !== undefined ? JSON.stringify({ id: d.id, message: d.message }) : "" }, true);
  }
}

// addDeadLetter shows one dead letter, once per event id; live ones go on
// top, stored ones (newest first from the server) are appended.
function addDeadLetter(dl, onTop) {
  const seen = deadLetters.get(dl.event_id);
  if (seen) {
    // A live one first, the stored one (with the payload) later.
    if (dl.data && !seen.querySelector(".dl-data")) seen.append(el("div", "dl-data mono", dl.data));
    return;
  }
  const li = el("li");
  li.dataset.eventId = dl.event_id;
  const head = el("div", "dl-head");
  head.append(el("span", "dl-id mono", dl.event_id), el("span", "muted mono", clock(dl.received_at)));
  li.append(head, el("div", "dl-reason", dl.reason || "no reason given"));
  if (dl.data) li.append(el("div", "dl-data mono", dl.data));
  const list = $("deadletters");
  if (onTop) list.prepend(li); else list.append(li);
  deadLetters.set(dl.event_id, li);
  $("dl-empty").classList.add("hidden");
  $("dl-total").textContent = "(" + deadLetters.size + ")";
}

function setStats(s) {
  for (const o of OUTCOMES) {
    $("count-" + o).textContent = (s.counts[COUNTERS[o]] ?? 0).toLocaleString();
  }
  // The ordered mode's held events (at the subscriber's last sweep).
  const now = s.counts.held_now ?? 0;
  $("held-now").textContent = now > 0 ? now.toLocaleString() + " waiting, oldest " + ((s.counts.oldest_held_ms ?? 0) / 1000).toFixed(0) + " s" : "";
  drawSparkline(s.rate || []);
  $("missed").textContent = s.missed > 0 ? s.missed.toLocaleString() + " deliveries not shown: this page fell behind" : "";
}

function drawSparkline(rate) {
  const w = 600, h = 80, pad = 4;
  const n = rate.length;
  const peak = Math.max(0, ...rate);
  const top = Math.max(peak, 1);
  const pts = rate.map((v, i) => {
    const x = n > 1 ? (i / (n - 1)) * w : 0;
    const y = h - pad - (v / top) * (h - 2 * pad);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  $("spark-line").setAttribute("points", pts.join(" "));
  $("spark-area").setAttribute("d", pts.length ? "M0," + h + " L" + pts.join(" L") + " L" + w + "," + h + " Z" : "");
  // The current second is still filling up: "now" is the last full one.
  $("rate-now").textContent = (n > 1 ? rate[n - 2] : 0).toLocaleString();
  $("rate-peak").textContent = peak.toLocaleString();
}

async function loadDeadLetters() {
  try {
    const r = await fetch("/api/deadletters", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    const body = await r.json();
    for (const dl of body.dead_letters) addDeadLetter(dl, false);
    if (body.total > deadLetters.size) $("dl-total").textContent = "(" + body.total + ", newest shown)";
  } catch (err) {
    $("dl-total").textContent = "(could not load the stored ones: " + err.message + ")";
  }
}

// The backlog comes from the retention keeper through GET /api/backlog,
// every BACKLOG_EVERY ms while the page is open.
const BACKLOG_EVERY = 2000;

function age(seconds) {
  if (seconds < 1) return "—";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

function setBacklog(b) {
  const body = $("backlog").tBodies[0];
  body.replaceChildren();
  for (const s of b.streams) {
    const groups = s.groups.length ? s.groups : [null];
    for (const g of groups) {
      const tr = el("tr");
      tr.dataset.stream = s.stream;
      tr.append(el("td", "mono", s.stream), el("td", "mono", g ? g.group : "no group"));
      const pending = el("td", "num", g ? g.pending.toLocaleString() : "—");
      const oldest = el("td", "num", g ? age(g.oldest_pending_seconds) : "—");
      if (s.window_exceeded) {
        oldest.className = "num warn";
        oldest.title = "older than the retention window (" + b.window + "): its record may expire before it is redelivered";
      }
      tr.append(el("td", "num", g ? g.lag.toLocaleString() : "—"), pending, oldest,
        el("td", "num", g ? g.redeliveries.toLocaleString() : "—"),
        el("td", "num", s.length.toLocaleString()), el("td", "num", bytes(s.bytes)));
      body.append(tr);
    }
  }
  const when = b.pass_at && !b.pass_at.startsWith("0001") ? "as of " + clock(b.pass_at) : "no pass yet";
  $("backlog-status").textContent = (b.error ? "last pass failed: " + b.error + " · " : "") + when + " · window " + b.window;
}

async function loadBacklog() {
  try {
    const r = await fetch("/api/backlog", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error((await r.text()).trim() || String(r.status));
    setBacklog(await r.json());
  } catch (err) {
    $("backlog").tBodies[0].replaceChildren();
    $("backlog-status").textContent = err.message;
  }
  setTimeout(loadBacklog, BACKLOG_EVERY);
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("open", () => setStatus("live", "live"));
  es.addEventListener("error", () => {
    setStatus(es.readyState === EventSource.CLOSED ? "down" : "connecting",
      es.readyState === EventSource.CLOSED ? "disconnected — reload the page" : "reconnecting…");
  });
  es.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    $("orders").tBodies[0].replaceChildren();
    for (const d of snap.deliveries) addDelivery(d, false);
    setStats(snap.stats);
    setStatus("live", "live");
    loadDeadLetters();
  });
  es.addEventListener("delivery", (e) => addDelivery(JSON.parse(e.data), true));
  es.addEventListener("stats", (e) => setStats(JSON.parse(e.data)));
}

connect();
loadBacklog();

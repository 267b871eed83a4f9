// The dashboard page: plain JavaScript, no framework and no build step (nothing to fetch from a
// CDN, nothing to vendor and keep up to date). One EventSource receives everything the hub
// sends (state, logs, timeline, action, notice, now); actions are POSTs carrying the token.
"use strict";

const TOKEN = document.querySelector('meta[name="devstack-token"]').content;
const MAX_LINES = 5000; // log lines kept in the page; older ones are dropped
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Devstack-Token": TOKEN },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) {
    const text = await response.text();
    showAction({ name: path.replace("/api/", ""), phase: "failed", text: text.trim() });
  }
}

// --- services ------------------------------------------------------------------------------
let services = [];
let busy = null;

function healthClass(health) {
  const word = (health || "").split(/[ ;(]/)[0];
  return word ? `health-${word}` : "";
}

// A row and its buttons stay the same elements while their service is shown: an update only
// swaps the other cells, so a click whose press and release straddle an update still lands.
const shownRows = new Map(); // service -> { tr, actions, key }

function actionsCell(s) {
  const actions = el("td", { class: "actions" });
  if (s.declared) {
    actions.append(
      el("button", { type: "button", class: "restart", title: `restart ${s.service}`,
        onclick: () => post("/api/restart", { service: s.service }) }, "restart"), " ",
      el("button", { type: "button", class: "shell", title: s.shell,
        onclick: (e) => copy(s.shell, e.target) }, "copy shell"));
  }
  return actions;
}

function rowOf(s) {
  const key = JSON.stringify([s.declared, s.shell]);
  let shown = shownRows.get(s.service);
  if (!shown || shown.key !== key) {
    shown = { tr: el("tr"), actions: actionsCell(s), key };
    shownRows.set(s.service, shown);
  }
  const { tr, actions } = shown;
  tr.className = s.ok ? "ok" : "bad";
  Object.assign(tr.dataset, { service: s.service, ok: String(s.ok), state: s.state,
    container: s.container });
  const health = el("td", { class: healthClass(s.health) }, s.health || "-");
  if (s.health_message) health.append(el("span", { class: "message", text: s.health_message }));
  const ports = el("td");
  s.ports.forEach((url, i) => {
    if (i) ports.append(el("br"));
    ports.append(/^https?:/.test(url)
      ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url })
      : url);
  });
  if (!s.ports.length) ports.append("-");
  const notes = el("td");
  if (s.drift) notes.append(el("div", { class: "drift", text: s.drift }));
  if (s.code_error) notes.append(el("div", { class: "code-error", text: s.code_error }));
  const cells = [
    el("td", { class: `c-${s.colour}` }, el("span", { class: "dot" }), s.service),
    el("td", { class: `state-${s.state}`, text: s.state }),
    health, ports,
    el("td", { text: s.image }),
    el("td", { text: s.uptime || "-" }),
    notes,
  ];
  cells.forEach((cell, i) => {
    if (tr.cells[i] && tr.cells[i] !== actions) tr.replaceChild(cell, tr.cells[i]);
    else tr.insertBefore(cell, actions.parentNode === tr ? actions : null);
  });
  if (actions.parentNode !== tr) tr.append(actions);
  return tr;
}

function renderServices(state) {
  services = state.services;
  busy = state.action;
  const body = document.querySelector("#services tbody");
  const rows = services.map(rowOf);
  const names = new Set(services.map((s) => s.service));
  for (const name of [...shownRows.keys()]) if (!names.has(name)) shownRows.delete(name);
  // only what moved, came or went is touched
  rows.forEach((tr, i) => {
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  while (body.children.length > rows.length) body.lastElementChild.remove();
  for (const button of document.querySelectorAll("button.restart, #up, #down")) {
    button.disabled = Boolean(busy);
  }
  const notice = $("notice");
  notice.hidden = !state.notice;
  notice.textContent = state.notice || "";
  renderLogServices();
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) { // no clipboard permission: select it in a text area and copy the old way
    const area = el("textarea", { text: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "copied";
  button.dataset.copied = text;
  setTimeout(() => { button.textContent = label; }, 1200);
}

// --- logs ----------------------------------------------------------------------------------
const logs = $("logs");
const hiddenServices = new Set();
let filterText = "";

function colourOf(service) {
  const found = services.find((s) => s.service === service);
  return found ? found.colour : "cyan";
}

function renderLogServices() {
  const box = $("log-services");
  const names = services.filter((s) => s.declared).map((s) => s.service);
  if (box.dataset.names === names.join(",")) return;
  box.dataset.names = names.join(",");
  box.replaceChildren(...names.map((name) => {
    const input = el("input", { type: "checkbox", "data-service": name });
    input.checked = !hiddenServices.has(name);
    input.addEventListener("change", () => {
      if (input.checked) hiddenServices.delete(name); else hiddenServices.add(name);
      applyFilter();
    });
    return el("label", { class: `c-${colourOf(name)}` }, input, name);
  }));
}

function visible(line) {
  return !hiddenServices.has(line.dataset.service) &&
    (!filterText || line.dataset.text.toLowerCase().includes(filterText));
}

function applyFilter() {
  for (const line of logs.children) line.hidden = !visible(line);
  countLines();
  if ($("log-follow").checked) logs.scrollTop = logs.scrollHeight;
}

function countLines() {
  $("log-count").textContent = `${logs.childElementCount} lines kept (last ${MAX_LINES})`;
}

const width = () => Math.max(0, ...services.map((s) => s.service.length));

function addLogs(batch) {
  const fragment = document.createDocumentFragment();
  const pad = width();
  for (const [service, text, kind] of batch) {
    const line = el("div", { class: `l c-${colourOf(service)}${kind ? " " + kind : ""}` },
      el("span", { class: "p", text: `${service.padEnd(pad)}  | ` }), text);
    line.dataset.service = service;
    line.dataset.text = text;
    line.hidden = !visible(line);
    fragment.append(line);
  }
  logs.append(fragment);
  let extra = logs.childElementCount - MAX_LINES;
  while (extra-- > 0) logs.firstElementChild.remove();
  countLines();
  if ($("log-follow").checked) logs.scrollTop = logs.scrollHeight;
}

$("log-filter").addEventListener("input", (e) => {
  filterText = e.target.value.trim().toLowerCase();
  applyFilter();
});
logs.addEventListener("scroll", () => {
  const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 20;
  $("log-follow").checked = atBottom;
});

// --- the timeline (Gantt) ------------------------------------------------------------------
const MARKS = ["building", "pulling", "created", "started", "released", "checking", "ready"];

function renderTimeline(timeline) {
  const box = $("timeline");
  if (!timeline || !timeline.services.length) {
    box.replaceChildren(el("p", { class: "muted", text: "no `up` recorded yet" }));
    return;
  }
  $("timeline-when").textContent =
    `· last up ${new Date(timeline.started_at).toLocaleString()}, ` +
    `${timeline.ok ? "ready" : "failed"} after ${timeline.total.toFixed(2)} s`;
  const total = Math.max(timeline.total, 0.001);
  const pct = (t) => `${(100 * t / total).toFixed(2)}%`;
  const legend = el("div", { class: "legend" }, ...["building", "created", "started", "held",
    "released", "checking", "failed"].map((m) => el("span", {},
    el("i", { class: `seg ${m}` }), m)),
  el("span", {}, el("i", { class: "ready-key" }), "ready"));
  const rows = timeline.services.map((s) => {
    const track = el("div", { class: "track" });
    const marks = MARKS.map((m) => [m, s[m]]).filter(([, t]) => t != null);
    const end = s.ready != null ? s.ready : s.failed;
    marks.forEach(([mark, at], i) => {
      if (mark === "ready") return;
      const next = i + 1 < marks.length ? marks[i + 1][1] : end;
      if (next == null) return;
      const held = s.released != null && mark === "started"; // started, held until released
      const seg = el("div", { class: `seg ${held ? "held" : mark}`,
        title: `${held ? "held" : mark} from ${at.toFixed(2)} s` });
      seg.style.left = pct(at);
      seg.style.width = pct(Math.max(next - at, 0));
      track.append(seg);
    });
    if (s.failed != null) {
      const seg = el("div", { class: "seg failed", title: s.detail });
      seg.style.left = pct(s.failed);
      seg.style.width = "4px";
      track.append(seg);
    }
    if (s.ready != null) {
      const ready = el("div", { class: "ready", title: `ready at ${s.ready.toFixed(2)} s` });
      ready.style.left = `calc(${pct(s.ready)} - 2px)`;
      track.append(ready);
    }
    const info = s.failed != null ? `failed at ${s.failed.toFixed(2)} s: ${s.detail}`
      : `ready at ${end == null ? "?" : end.toFixed(2)} s` +
        (s.check ? ` · ${s.check}` : "") + (s.attempts ? ` (${s.attempts} not yet)` : "");
    return el("div", { class: "row", "data-service": s.service },
      el("div", { class: `c-${colourOf(s.service)}` }, el("span", { class: "dot" }), s.service),
      track, el("div", { class: "info", title: info, text: info }));
  });
  box.replaceChildren(legend, ...rows);
}

// --- actions and notices -------------------------------------------------------------------
let actionTimer = null;
function showAction(action) {
  const bar = $("action");
  bar.hidden = false;
  bar.className = action.phase === "failed" ? "failed" : "";
  bar.textContent = `${action.name}: ${action.phase}${action.text ? " · " + action.text : ""}`;
  clearTimeout(actionTimer);
  if (action.phase === "done") actionTimer = setTimeout(() => { bar.hidden = true; }, 4000);
}

$("up").addEventListener("click", () => post("/api/up"));
$("down").addEventListener("click", () => post("/api/down"));

// --- Now: each watched service's numbers from Prometheus, as small live charts -----------
const NOW_POINTS = 60; // the last two minutes at one reading every 2 s
const nowHistory = new Map(); // "service metric" -> [values]

function formatNow(metric, value) {
  if (value === null || value === undefined) return "–";
  if (metric === "p50" || metric === "p95") return value < 1 ? `${(value * 1000).toFixed(0)} ms` : `${value.toFixed(2)} s`;
  return value < 10 ? value.toFixed(2) : value.toFixed(0);
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${NOW_POINTS - 1} 20`);
  svg.setAttribute("preserveAspectRatio", "none");
  const known = values.filter((v) => v !== null);
  const top = Math.max(...known, 1e-9);
  const points = values.map((v, i) => `${i + NOW_POINTS - values.length},${20 - 19 * ((v ?? 0) / top)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  return svg;
}

function renderNow(data) {
  const panel = $("now");
  const charts = $("now-charts");
  panel.dataset.wired = "true";
  $("now-placeholder").hidden = !!data.services.length;
  if (!data.services.length) {
    $("now-placeholder").textContent = data.off || "no service declares metrics";
    charts.replaceChildren();
    return;
  }
  const cards = data.services.map((s) => {
    const card = el("div", { class: "now-card", "data-service": s.service }, el("h3", { text: s.service }));
    for (const [metric, value] of Object.entries(s.values)) {
      const key = `${s.service} ${metric}`;
      const history = [...(nowHistory.get(key) || []), value].slice(-NOW_POINTS);
      nowHistory.set(key, history);
      card.append(el("div", { class: "now-metric", "data-metric": metric, "data-value": value ?? "" },
        el("span", { class: "name", text: metric }), sparkline(history),
        el("span", { class: "value", text: formatNow(metric, value) })));
    }
    return card;
  });
  charts.replaceChildren(...cards);
}

// --- the one event stream ------------------------------------------------------------------
function connect() {
  const source = new EventSource(`events?token=${encodeURIComponent(TOKEN)}`);
  const pill = $("connection");
  const parsed = (handler) => (event) => handler(JSON.parse(event.data));
  source.onopen = () => { pill.textContent = "live"; pill.className = "pill live"; };
  source.onerror = () => { pill.textContent = "reconnecting…"; pill.className = "pill lost"; };
  source.addEventListener("hello", () => logs.replaceChildren()); // the backlog follows
  source.addEventListener("state", parsed((state) => {
    renderServices(state);
    document.body.dataset.stateAt = String(state.read_at);
  }));
  source.addEventListener("logs", parsed(addLogs));
  source.addEventListener("timeline", parsed(renderTimeline));
  source.addEventListener("action", parsed(showAction));
  source.addEventListener("notice", parsed((n) => {
    $("notice").hidden = false;
    $("notice").textContent = n.text;
  }));
  source.addEventListener("now", parsed(renderNow));
}
connect();

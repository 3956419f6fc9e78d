// citysense dashboard: the live board, its filters and paging, the live stream, the alarms,
// signing in and the wiring; the map (map.js) and the case view (caseview.js) are modules of
// their own. Vanilla JS modules, no build step, nothing from elsewhere. Case text comes from the
// field: always textContent, never innerHTML.
import {
  $, ageText, ALARMING, API, CLOSED_SHOWN, el, fetchJson, formatTime, isClosed, lang, mark,
  OPEN_PAGE, SESSION_URL, setLang, severityBadge, SEVERITIES, SignedOut, STALE_AFTER_MS, state,
  STEPS, t, WATCHDOG_MS,
} from "./common.js";
import { loadMap, refreshMapSoon, renderMap, renderMapCases, watchPan, zoomTo } from "./map.js";
import { closeCase, openCase, showCase } from "./caseview.js";

// -- filters -----------------------------------------------------------------------------------
function filters() {
  return {
    step: $("f-step").value, severity: $("f-severity").value, district: $("f-district").value,
    klass: /^\d{4}$/.test($("f-class").value) ? $("f-class").value : "",
    q: $("f-q").value.trim(),
  };
}

function filterParams(f) {
  const p = new URLSearchParams();
  if (f.severity) p.append("severity", f.severity);
  if (f.district) p.append("district", f.district);
  if (f.klass) p.append("class_code", f.klass);
  if (f.q) p.append("q", f.q);
  return p;
}

function matches(c, f) {
  if (f.step && c.step !== f.step) return false;
  if (f.severity && c.severity !== f.severity) return false;
  if (f.district && c.district_code !== f.district) return false;
  if (f.klass && c.class_code !== f.klass) return false;
  if (f.q) {
    const text = [c.title, c.address, c.sensor_id, c.station_id, c.class_name].join("\n").toLowerCase();
    if (!text.includes(f.q.toLowerCase())) return false;
  }
  return true;
}

// Returns whether the chosen value had to go (not among `values`).
function fillSelect(select, values, label) {
  const chosen = select.value;
  select.replaceChildren(el("option", "", t("any")));
  select.firstChild.value = "";
  for (const value of values) {
    const option = el("option", "", label(value));
    option.value = value;
    select.append(option);
  }
  select.value = values.includes(chosen) ? chosen : "";
  return select.value !== chosen;
}

// Returns whether a filter changed (a value no longer offered).
export function fillFilters() {
  const codes = [...state.districts.keys()].sort();
  const dropped = [
    fillSelect($("f-step"), STEPS, (s) => t("s_" + s)),
    fillSelect($("f-severity"), SEVERITIES, (s) => t("v_" + s)),
    fillSelect($("f-district"), codes, (code) => code + " " + (state.districts.get(code) || "")),
  ];
  return dropped.some(Boolean);
}

// -- the address bar ---------------------------------------------------------------------------
// The filters and the case on view are kept in the URL (?step=&severity=&district=&class=&q=
// &case=), replaced as they change (no history entry each): a reload, a bookmark or a link sent
// to a colleague opens the same view, after signing in if need be.
const URL_FIELDS = [["step", "f-step"], ["severity", "f-severity"], ["district", "f-district"],
  ["class", "f-class"], ["q", "f-q"]];

function viewUrl() {
  const p = new URLSearchParams();
  for (const [key, id] of URL_FIELDS) {
    const value = $(id).value.trim();
    if (value) p.set(key, value);
  }
  if (state.viewing !== null) p.set("case", String(state.viewing));
  const query = p.toString();
  return location.pathname + (query ? "?" + query : "") + location.hash;
}

export function writeUrl() {
  const url = viewUrl();
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, "", url);
}

// The filters the URL asks for; a district the map has not named yet is kept as a bare code
// until it has (`fillFilters` then drops it if the map has no such district). Returns the
// case the URL asks to view, or null.
function readUrl() {
  const p = new URLSearchParams(location.search);
  for (const [key, id] of URL_FIELDS) {
    const field = $(id);
    const value = (p.get(key) || "").slice(0, 100);
    if (field.tagName === "SELECT" && value && ![...field.options].some((o) => o.value === value)) {
      const option = el("option", "", value);
      option.value = value;
      field.append(option);
    }
    field.value = value;
  }
  const wanted = Number(p.get("case"));
  return Number.isSafeInteger(wanted) && wanted > 0 ? wanted : null;
}

// -- rendering the board -----------------------------------------------------------------------


function td(label, ...children) {
  const cell = document.createElement("td");
  cell.dataset.label = label;
  cell.append(...children);
  return cell;
}

function renderRow(c) {
  const tr = document.createElement("tr");
  tr.dataset.caseId = String(c.id);
  tr.className = c.severity + (isClosed(c) ? " closed" : "");
  if (state.unseen.has(c.id)) tr.classList.add("alarm");
  const marks = el("div");
  if (c.awaiting_verification) mark(marks, t("awaiting"), true);
  else if (c.status === "open" && !isClosed(c)) mark(marks, t("alarm"));
  if (c.detected_late) mark(marks, t("late"));
  if (c.ended_before_seen) mark(marks, t("ended"));
  if (c.flapping) mark(marks, t("flapping"));
  if (c.escalations > 0) mark(marks, t("escalated", { n: c.escalations, p: c.priority }));
  if (c.next_actions.includes("acknowledge")) mark(marks, t("unacked"));
  const age = el("span", "age", ageText(c));
  age.dataset.detected = c.detected_at;
  const where = el("div", "", c.address || "—");
  where.append(el("div", "sub", [c.district_code, state.districts.get(c.district_code)].filter(Boolean).join(" ")));
  const when = el("div", "num", t("arrived") + " " + formatTime(c.detected_at));
  when.append(el("div", "sub num", t("device") + " " + formatTime(c.opened_at)));
  const klass = el("div", "", c.class_code + " " + c.class_name);
  klass.append(el("div", "sub", c.major_name + " · " + c.title));
  tr.append(
    td("#", el("span", "num", c.id)),
    td(t("c_severity"), severityBadge(c.severity)),
    td(t("c_class"), klass),
    td(t("c_step"), el("span", "step", t("s_" + c.step)), marks),
    td(t("c_age"), age),
    td(t("c_where"), where),
    td(t("c_time"), when),
  );
  tr.addEventListener("click", () => openCase(c.id));
  return tr;
}

// The board's orders are the center's (`sort=-severity`, `sort=-updated_at`, ties by arrival
// and id: center/case_query.py), to the microsecond, so its pages follow on from each other.
function instant(iso) {
  const fraction = /\.(\d+)/.exec(iso);
  return Date.parse(iso) * 1000 + (fraction ? Number((fraction[1] + "00000").slice(3, 6)) : 0);
}

function compareOpen(a, b) {
  const rank = (c) => SEVERITIES.indexOf(c.severity);
  return rank(a) - rank(b) || instant(b.detected_at) - instant(a.detected_at) || b.id - a.id;
}

function compareClosed(a, b) {
  return instant(b.updated_at) - instant(a.updated_at) ||
    instant(b.detected_at) - instant(a.detected_at) || b.id - a.id;
}

export function sortedOpen() {
  return [...state.open.values()].sort(compareOpen);
}

export function renderBoard() {
  const open = sortedOpen();
  $("cases").replaceChildren(...open.map(renderRow));
  const closed = [...state.closed.values()].sort(compareClosed);
  $("closed").replaceChildren(...closed.map(renderRow));
  $("empty").hidden = open.length > 0;
  $("closed-empty").hidden = closed.length > 0;
  const paging = state.paging || newPaging();
  $("open-total").textContent = String(open.length + paging.open.beyond);
  const alarming = open.filter((c) => c.status === "open").length;
  $("open-count").textContent = String(paging.open.beyond ? paging.alarming ?? alarming : alarming);
  showMore("open", open.length, paging.open.beyond);
  showMore("closed", closed.length, paging.closed.beyond);
  showTitle();
  renderMapCases();
}

export function showTitle() {
  const base = t("title");
  document.title = state.unseen.size ? "(" + state.unseen.size + ") " + base : base;
}

function tickAges() {
  for (const span of document.querySelectorAll(".age[data-detected]")) {
    const id = Number(span.closest("tr").dataset.caseId);
    const c = state.open.get(id) || state.closed.get(id);
    if (c) span.textContent = ageText(c);
  }
}

function renderLegend() {
  const legend = $("legend");
  legend.replaceChildren(el("span", "", t("legend")), ...SEVERITIES.map(severityBadge));
}

// -- loading and the live stream ---------------------------------------------------------------
async function reload() {
  const generation = ++state.generation;
  state.pending = state.pending || [];
  const f = filters();
  const paging = state.paging || (state.paging = newPaging());
  try {
    const [open, closed] = await Promise.all([
      fetchList("open", f, 0, paging.open.wanted),
      fetchList("closed", f, 0, paging.closed.wanted),
    ]);
    const alarming = open.total > open.items.length ? await countAlarming(f) : null;
    if (generation !== state.generation) return;  // a newer reload is on its way
    state.open = new Map(open.items.map((c) => [c.id, c]));
    state.closed = new Map(closed.items.map((c) => [c.id, c]));
    tookPage(paging.open, open, state.open);
    tookPage(paging.closed, closed, state.closed);
    paging.alarming = alarming;
  } finally {
    if (generation === state.generation) {
      const events = state.pending;
      state.pending = null;
      for (const event of events) applyEvent(event, false);
      renderBoard();
    }
  }
}

// -- paging ------------------------------------------------------------------------------------
// Each list holds its first pages in the center's order, and what the stream brought since.
// "Show more" asks for the page at the offset of the cases held up to the last one paged in,
// so a case that arrived or left meanwhile shifts nothing. `beyond` counts the matching cases
// after those held: the center's total less what is held, counted again after live events
// while it is not 0 (the stream says nothing of cases the page does not hold).
const ORDER = { open: compareOpen, closed: compareClosed };
const PAGE_SIZE = { open: OPEN_PAGE, closed: CLOSED_SHOWN };

function newPaging() {
  return {
    open: { wanted: OPEN_PAGE, last: null, beyond: 0 },
    closed: { wanted: CLOSED_SHOWN, last: null, beyond: 0 },
    alarming: null,  // the center's count of open cases alarming, while not all are held
  };
}

function listParams(kind, f) {
  const p = filterParams(f);
  if (kind === "open") {
    p.set("open_only", "true");
    if (f.step) p.append("step", f.step);
    p.set("sort", "-severity");
  } else {
    for (const step of f.step ? [f.step] : ["close", "evaluate"]) p.append("step", step);
    p.set("sort", "-updated_at");
  }
  return p;
}

// `count` cases of a list from `offset` on, a request per 500 (the center's largest page).
async function fetchList(kind, f, offset, count) {
  if (f.step && ["close", "evaluate"].includes(f.step) !== (kind === "closed")) return { items: [], total: 0 };
  const items = [];
  let total = 0;
  while (items.length < count) {
    const params = listParams(kind, f);
    const limit = Math.min(500, count - items.length);
    params.set("limit", String(limit));
    if (offset + items.length) params.set("offset", String(offset + items.length));
    const page = await fetchJson(API + "/cases?" + params);
    items.push(...page.items);
    total = page.total;
    if (page.items.length < limit) break;
  }
  return { items, total };
}

async function countAlarming(f) {
  const params = listParams("open", f);
  params.set("status", "open");
  params.set("limit", "1");
  return (await fetchJson(API + "/cases?" + params)).total;
}

function tookPage(list, page, held) {
  list.last = page.items.length ? page.items[page.items.length - 1] : null;
  list.beyond = Math.max(0, page.total - held.size);
}

async function showMoreCases(kind) {
  const generation = state.generation;
  const list = state.paging[kind];
  const held = state[kind];
  const offset = list.last ? [...held.values()].filter((c) => ORDER[kind](c, list.last) <= 0).length : 0;
  const page = await fetchList(kind, filters(), offset, PAGE_SIZE[kind]);
  if (generation !== state.generation) return;  // reloaded meanwhile: its pages stand
  for (const c of page.items) {
    const known = held.get(c.id);
    if (!known || instant(known.updated_at) < instant(c.updated_at)) held.set(c.id, c);
  }
  if (page.items.length) list.last = page.items[page.items.length - 1];
  list.wanted = Math.max(held.size, PAGE_SIZE[kind]);  // a reload keeps what is shown
  list.beyond = Math.max(0, page.total - held.size);
  renderBoard();
}

let recountTimer = null;
function recountSoon() {
  const paging = state.paging;
  if (recountTimer || !paging || !(paging.open.beyond || paging.closed.beyond)) return;
  recountTimer = setTimeout(() => { recountTimer = null; recount().catch(loadFailed); }, 1000);
}

async function recount() {
  const generation = state.generation;
  const f = filters();
  const [open, closed, alarming] = await Promise.all(
    [fetchList("open", f, 0, 1), fetchList("closed", f, 0, 1), countAlarming(f)]);
  if (generation !== state.generation || !state.paging) return;
  state.paging.open.beyond = Math.max(0, open.total - state.open.size);
  state.paging.closed.beyond = Math.max(0, closed.total - state.closed.size);
  state.paging.alarming = alarming;
  renderBoard();
}

function showMore(kind, shown, beyond) {
  $(kind + "-more").hidden = beyond === 0;
  $(kind + "-shown").textContent = t("shown", { n: shown, t: shown + beyond });
}

function applyEvent(event, live) {
  const c = event.case;
  const known = state.open.get(c.id) || state.closed.get(c.id);
  if (known && known.updated_at > c.updated_at) return;  // an older state than the shown one
  state.open.delete(c.id);
  state.closed.delete(c.id);
  if (matches(c, filters())) (isClosed(c) ? state.closed : state.open).set(c.id, c);
  if (live && (event.type === "opened" || event.type === "reopened" || event.type === "escalated")
      && ALARMING.has(c.severity) && !isClosed(c)) alarm(c);
  if (isClosed(c) || c.step === "handle") state.unseen.delete(c.id);
  if (live && event.type === "opened" && !(state.map && state.map.sensors.some((s) => s.sensor_id === c.sensor_id))) refreshMapSoon();
  if (state.viewing === c.id) showCase(c, event.type === "transition");
}

function onCaseEvent(message) {
  state.lastEventId = message.lastEventId || state.lastEventId;
  heard();
  const event = JSON.parse(message.data);
  if (state.pending) { state.pending.push(event); return; }
  applyEvent(event, true);
  renderBoard();
  recountSoon();
  const row = document.querySelector('tr[data-case-id="' + event.case.id + '"]');
  if (row) row.classList.add("fresh");
}

function heard() {
  state.lastHeard = Date.now();
  state.downSince = null;
  $("stale").hidden = true;
  setConnection("live", t("live"));
}

function setConnection(kind, text) {
  $("conn").className = "conn " + kind;
  $("conn-text").textContent = text;
}

function connect() {
  const url = API + "/cases/stream" + (state.lastEventId ? "?last_event_id=" + encodeURIComponent(state.lastEventId) : "");
  const source = new EventSource(url);
  state.source = source;
  for (const type of ["opened", "updated", "reopened", "recovered", "transition", "escalated"]) {
    source.addEventListener(type, onCaseEvent);
  }
  source.onopen = () => {
    heard();
    reload().catch(loadFailed);  // after the stream is open: no change falls between the two
  };
  source.onerror = () => {
    if (state.source !== source) return;
    if (!state.downSince) state.downSince = Date.now();
    setConnection("down", t("reconnecting"));
    if (source.readyState === EventSource.CLOSED) {  // refused for good: the session ended?
      source.close();
      checkSession(true);
    }
  };
  state.lastHeard = Date.now();
}

function watchStream() {
  if (!state.source) return;
  const now = Date.now();
  if (state.source.readyState !== EventSource.OPEN && !state.downSince) state.downSince = now;
  if (state.downSince && now - state.downSince >= STALE_AFTER_MS) {
    $("stale").textContent = t("stale", { t: formatTime(new Date(state.downSince).toISOString()) });
    $("stale").hidden = false;
  }
  // A quiet city sends nothing; a dead connection sends nothing either: reconnect now and
  // then (resuming after the last event id) so a connection lost silently is noticed.
  if (state.source.readyState === EventSource.OPEN && now - state.lastHeard > WATCHDOG_MS) {
    state.source.close();
    connect();
  }
}

export function loadFailed(error) {
  if (error instanceof SignedOut) showSignIn(t("ended_session"));
  else setConnection("down", t("load_failed", { m: error.message }));
}

// -- alarms: sound, title, notification --------------------------------------------------------
let audio = null;
function unlockAudio() {
  if (audio || !window.AudioContext) return;
  try { audio = new AudioContext(); } catch (error) { audio = null; }
}

function beep() {
  if (state.muted || !audio) return;
  try {
    if (audio.state === "suspended") audio.resume();
    const now = audio.currentTime;
    for (const [offset, freq] of [[0, 880], [0.25, 660], [0.5, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.22);
    }
  } catch (error) { /* no audio device: the highlight and the title still say it */ }
}

function alarm(c) {
  if (state.unseen.has(c.id)) return;
  state.unseen.add(c.id);
  beep();
  if (window.Notification && Notification.permission === "granted" && document.hidden) {
    const note = new Notification(t("new_case", { s: t("v_" + c.severity) }) + " #" + c.id,
      { body: c.class_code + " " + c.class_name + " · " + c.address, tag: "case-" + c.id });
    note.onclick = () => { window.focus(); openCase(c.id); };
  }
}

function showTools() {
  $("mute").textContent = state.muted ? t("unmute") : t("mute");
  $("mute").setAttribute("aria-pressed", String(state.muted));
  const notify = $("notify");
  notify.hidden = !window.Notification || Notification.permission === "denied";
  notify.textContent = window.Notification && Notification.permission === "granted" ? t("notify_on") : t("notify");
}

// -- signing in and out ------------------------------------------------------------------------
function stop() {
  if (state.source) state.source.close();
  state.source = null;
  state.open.clear();
  state.closed.clear();
  state.unseen.clear();
  state.downSince = null;
  state.paging = null;
  $("cases").replaceChildren();
  $("closed").replaceChildren();
  $("open-count").textContent = "–";
  $("stale").hidden = true;
  closeCase();
}

function showSignIn(message) {
  stop();
  state.me = null;
  for (const id of ["board", "conn", "who", "mute", "notify"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("username").focus();
}

function showBoard(me) {
  state.me = me;
  $("signin").hidden = true;
  $("password").value = "";
  $("who-name").textContent = me.name + " · " + me.role;
  for (const id of ["who", "conn", "board", "mute"]) $(id).hidden = false;
  showTools();
  setConnection("", t("connecting"));
  loadMap().catch(loadFailed);
  connect();
  if (state.urlCase !== null) {  // the case the address asked for, once signed in
    const wanted = state.urlCase;
    state.urlCase = null;
    openCase(wanted);
  }
}

async function checkSession(again) {
  try {
    showBoard(await fetchJson(SESSION_URL));
  } catch (error) {
    if (error instanceof SignedOut) showSignIn(again ? t("ended_session") : "");
    else if (again) setTimeout(() => checkSession(true), 3000);
    else showSignIn(t("no_answer", { m: error.message }));
  }
}

async function signIn(event) {
  event.preventDefault();
  unlockAudio();
  const error = $("signin-error");
  error.textContent = "";
  const response = await fetch(SESSION_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  if (response.ok) showBoard(await response.json());
  else if (response.status === 429) error.textContent = t("too_many", { n: response.headers.get("Retry-After") || "60" });
  else if (response.status === 401) error.textContent = t("wrong");
  else error.textContent = t("failed", { n: response.status });
}

// -- language ----------------------------------------------------------------------------------
function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  $("f-q").placeholder = lang === "zh" ? "标题、地址、传感器…" : "title, address, sensor…";
  for (const id of ["zoom-in", "zoom-out"]) {
    $(id).title = t(id.replace("-", "_"));
    $(id).setAttribute("aria-label", $(id).title);
  }
  fillFilters();
  renderLegend();
  showTools();
  showTitle();
  if (state.me) {
    renderBoard();
    renderMap();
    if (state.viewing !== null) openCase(state.viewing);
  }
}

// -- wiring ------------------------------------------------------------------------------------
export function refilter() {
  writeUrl();
  if (state.me) { state.paging = newPaging(); reload().catch(loadFailed); }
}

function start() {
  $("signin").addEventListener("submit", (event) => { signIn(event).catch((e) => { $("signin-error").textContent = String(e); }); });
  $("signout").addEventListener("click", async () => {
    stop();
    await fetch(SESSION_URL, { method: "DELETE" });
    showSignIn(t("signed_out"));
  });
  $("lang").addEventListener("click", () => {
    setLang(lang === "zh" ? "en" : "zh");
    localStorage.setItem("citysense.lang", lang);
    applyLanguage();
  });
  $("mute").addEventListener("click", () => {
    state.muted = !state.muted;
    localStorage.setItem("citysense.muted", state.muted ? "1" : "0");
    unlockAudio();
    showTools();
  });
  $("notify").addEventListener("click", () => {
    unlockAudio();
    if (window.Notification) Notification.requestPermission().then(showTools);
  });
  for (const kind of ["open", "closed"]) {
    $(kind + "-more-button").addEventListener("click", () => showMoreCases(kind).catch(loadFailed));
  }
  $("zoom-in").addEventListener("click", () => zoomTo(state.view.zoom * 2));
  $("zoom-out").addEventListener("click", () => zoomTo(state.view.zoom / 2));
  $("zoom-reset").addEventListener("click", () => zoomTo(1));
  watchPan($("map"));
  $("case-close").addEventListener("click", closeCase);
  $("case-view").addEventListener("click", (event) => { if (event.target === $("case-view")) closeCase(); });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeCase(); });
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  let typing = null;
  for (const id of ["f-step", "f-severity", "f-district"]) $(id).addEventListener("change", refilter);
  for (const id of ["f-class", "f-q"]) {
    $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 300); });
  }
  applyLanguage();
  state.urlCase = readUrl();
  setInterval(() => { tickAges(); watchStream(); }, 1000);
  checkSession(false);
}

document.addEventListener("DOMContentLoaded", start);

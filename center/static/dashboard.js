// citysense dashboard: the live board, the case view and the map. Vanilla JS, no build step,
// nothing from elsewhere. Case text comes from the field: always textContent, never innerHTML.
"use strict";

const API = "/api/v1";
const SESSION_URL = API + "/session";
const STEPS = ["discover", "register", "dispatch", "handle", "verify", "close", "evaluate"];
const SEVERITIES = ["critical", "urgent", "warning", "maintenance"];
const ALARMING = new Set(["critical", "urgent"]);
const STALE_AFTER_MS = 4000;      // the stream down this long: say the data may be stale
const WATCHDOG_MS = 60000;        // nothing (no event, no reconnect) this long: reconnect
const OPEN_PAGE = 100;            // open cases a page of the board ("Show more": the next)
const CLOSED_SHOWN = 20;          // closed cases a page
const SVG = "http://www.w3.org/2000/svg";

// -- words -------------------------------------------------------------------------------------
const WORDS = {
  en: {
    title: "citysense · urgent cases", alarming: "Alarming", signout: "Sign out", signin: "Sign in",
    user: "User", password: "Password", f_step: "Step", f_severity: "Severity",
    f_district: "District", f_class: "Class", f_q: "Search", any: "any",
    open_cases: "Open cases", closed_cases: "Recently closed", no_open: "No open cases.",
    more: "Show more", shown: "{n} of {t} shown",
    zoom_in: "Zoom in", zoom_out: "Zoom out", zoom_reset: "Whole city",
    no_closed: "No closed cases.", c_severity: "Severity", c_class: "Class", c_step: "Step",
    c_age: "Age", c_where: "Where", c_time: "Time", map: "Map", close_view: "Close",
    evidence: "Evidence", note: "Note", history: "History", h_at: "When", h_actor: "Who",
    h_action: "Action", h_steps: "Steps", legend: "Severity:", live: "live",
    connecting: "connecting", reconnecting: "reconnecting",
    stale: "Live updates are down since {t}: the board may be stale. Reconnecting…",
    open_for: "open for {d}", closed_after: "took {d}", arrived: "arrived", device: "device",
    awaiting: "recovered, awaiting verification", alarm: "sensor alarms", late: "detected late",
    ended: "ended before seen", flapping: "flapping", escalated: "escalated ×{n} · P{p}",
    unregistered: "unregistered sensor", wrong: "Wrong user name or password.",
    too_many: "Too many attempts: try again in {n} s.", failed: "Sign-in failed: HTTP {n}",
    ended_session: "Your session ended: sign in again.", signed_out: "Signed out.",
    no_answer: "The center does not answer: {m}", mute: "Sound on", unmute: "Sound off",
    notify: "Notify me", notify_on: "Notifications on", new_case: "New {s} case",
    d_class: "Class", d_component: "Component", d_grid: "Grid", d_district: "District",
    d_address: "Address", d_station: "Station", d_sensor: "Sensor", d_members: "Sensors",
    d_status: "Condition", d_times: "Times", d_priority: "Priority", d_rule: "Rule", d_lonlat: "Lon, lat",
    started: "began", opened: "opened", cleared: "recovered", threshold: "threshold",
    load_failed: "load failed: {m}", no_case: "Case #{n} was not found: purged, or a wrong link.", map_sensors: "{n} sensors · {s} stations · {c} open cases",
    a_register: "Register", a_dismiss: "Dismiss", a_dispatch: "Dispatch", a_handle: "Handle",
    a_acknowledge: "Acknowledge", unacked: "not acknowledged", d_ack: "Acknowledged",
    a_redispatch: "Redispatch", a_verify: "Report done (verify)", a_rework: "Rework",
    a_close: "Close case", a_evaluate: "Evaluate", a_reopen: "Reopen", a_discover: "Discovered",
    read_only: "Your role ({r}) may not move cases.",
    s_discover: "discover", s_register: "registered", s_dispatch: "dispatched",
    s_handle: "handling", s_verify: "verifying", s_close: "closed", s_evaluate: "evaluated",
    v_critical: "critical", v_urgent: "urgent", v_warning: "warning", v_maintenance: "maintenance",
  },
  zh: {
    title: "citysense · 紧急案件", alarming: "报警中", signout: "退出", signin: "登录",
    user: "用户名", password: "密码", f_step: "环节", f_severity: "级别", f_district: "区",
    f_class: "小类", f_q: "搜索", any: "全部", open_cases: "未结案件", closed_cases: "最近结案",
    more: "显示更多", shown: "已显示 {n} / {t}",
    zoom_in: "放大", zoom_out: "缩小", zoom_reset: "全市",
    no_open: "暂无未结案件。", no_closed: "暂无结案。", c_severity: "级别", c_class: "类别",
    c_step: "环节", c_age: "时长", c_where: "位置", c_time: "时间", map: "地图",
    close_view: "关闭", evidence: "证据", note: "备注", history: "处置记录", h_at: "时间",
    h_actor: "操作人", h_action: "操作", h_steps: "环节", legend: "级别：", live: "实时",
    connecting: "连接中", reconnecting: "重连中",
    stale: "实时更新自 {t} 起中断：数据可能已过时。正在重连…",
    open_for: "已持续 {d}", closed_after: "历时 {d}", arrived: "接报", device: "设备",
    awaiting: "已恢复，待现场核查", alarm: "传感器报警中", late: "迟报", ended: "已结束",
    flapping: "反复", escalated: "已升级 ×{n} · P{p}", unregistered: "未登记传感器",
    wrong: "用户名或密码错误。", too_many: "尝试次数过多，请 {n} 秒后再试。",
    failed: "登录失败：HTTP {n}", ended_session: "会话已结束，请重新登录。", signed_out: "已退出。",
    no_answer: "中心无应答：{m}", mute: "声音开", unmute: "声音关", notify: "桌面通知",
    notify_on: "通知已开", new_case: "新{s}案件", d_class: "类别", d_component: "部件编码",
    d_grid: "网格", d_district: "区", d_address: "地址", d_station: "基站", d_sensor: "传感器",
    d_members: "关联传感器", d_status: "传感器状态", d_times: "时间", d_priority: "优先级", d_rule: "规则",
    d_lonlat: "经纬度", started: "开始", opened: "报警", cleared: "恢复", threshold: "阈值",
    load_failed: "加载失败：{m}", no_case: "未找到案件 #{n}：已清除，或链接有误。", map_sensors: "{n} 个传感器 · {s} 个基站 · {c} 件未结",
    a_register: "立案", a_dismiss: "不予立案", a_dispatch: "派遣", a_handle: "签收处置",
    a_acknowledge: "接警确认", unacked: "未接警", d_ack: "接警",
    a_redispatch: "回退重派", a_verify: "处置完成（核查）", a_rework: "返工", a_close: "结案",
    a_evaluate: "评价", a_reopen: "重新立案", a_discover: "发现",
    read_only: "您的角色（{r}）不能处置案件。",
    s_discover: "发现", s_register: "已立案", s_dispatch: "已派遣", s_handle: "处置中",
    s_verify: "核查中", s_close: "已结案", s_evaluate: "已评价",
    v_critical: "特急", v_urgent: "紧急", v_warning: "警告", v_maintenance: "维护",
  },
};
let lang = (localStorage.getItem("citysense.lang") ||
  (navigator.language || "en").toLowerCase()).startsWith("zh") ? "zh" : "en";

function t(key, values) {
  let text = (WORDS[lang][key] ?? WORDS.en[key]) ?? key;
  for (const [name, value] of Object.entries(values || {})) text = text.replace("{" + name + "}", value);
  return text;
}

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- time --------------------------------------------------------------------------------------
function formatTime(iso, withDate) {
  if (!iso) return "—";
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    timeZoneName: "short" };
  if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", options);
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const zh = lang === "zh";
  if (s < 60) return s + (zh ? " 秒" : " s");
  if (s < 3600) return Math.floor(s / 60) + (zh ? " 分钟" : " min");
  if (s < 86400) return Math.floor(s / 3600) + (zh ? " 小时 " : " h ") + Math.floor((s % 3600) / 60) + (zh ? " 分" : " min");
  return Math.floor(s / 86400) + (zh ? " 天" : " d");
}

function isClosed(c) { return c.step === "close" || c.step === "evaluate"; }

function ageText(c) {
  if (isClosed(c)) return t("closed_after", { d: duration(Date.parse(c.updated_at) - Date.parse(c.detected_at)) });
  return t("open_for", { d: duration(Date.now() - Date.parse(c.detected_at)) });
}

// -- state -------------------------------------------------------------------------------------
const state = {
  me: null, open: new Map(), closed: new Map(), districts: new Map(), map: null,
  unseen: new Set(), muted: localStorage.getItem("citysense.muted") === "1",
  source: null, lastEventId: null, lastHeard: 0, downSince: null, pending: null, viewing: null,
  generation: 0, paging: null, view: { zoom: 1, cx: 300, cy: 240 }, urlCase: null,
};

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

// Returns whether the chosen value had to go (not among ``values``).
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
function fillFilters() {
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

function writeUrl() {
  const url = viewUrl();
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, "", url);
}

// The filters the URL asks for; a district the map has not named yet is kept as a bare code
// until it has (``fillFilters`` then drops it if the map has no such district). Returns the
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
function severityBadge(severity) {
  return el("span", "sev " + severity, t("v_" + severity));
}

function mark(parent, text, ok) { parent.append(el("span", ok ? "mark ok" : "mark", text)); }

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

function sortedOpen() {
  return [...state.open.values()].sort(compareOpen);
}

function renderBoard() {
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

function showTitle() {
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

// -- the map -----------------------------------------------------------------------------------
const MAP_W = 600, MAP_H = 480, PAD = 40;

function projection(bounds) {
  const [west, south, east, north] = bounds;
  const cx = (west + east) / 2, cy = (south + north) / 2;
  // equirectangular: a degree of longitude is cos(lat) of a degree of latitude
  const k = Math.cos(cy * Math.PI / 180);
  const dx = Math.max((east - west) * k, 0.02), dy = Math.max(north - south, 0.02);
  const scale = Math.min((MAP_W - 2 * PAD) / dx, (MAP_H - 2 * PAD) / dy);
  return (lon, lat) => [MAP_W / 2 + (lon - cx) * k * scale, MAP_H / 2 - (lat - cy) * scale];
}

function mapBounds() {
  const points = [];
  if (state.map && state.map.bounds) {
    const [w, s, e, n] = state.map.bounds;
    points.push([w, s], [e, n]);
    for (const d of state.map.districts) points.push(...(d.outline || []));
  }
  for (const c of state.open.values()) if (c.lon !== null && c.lat !== null) points.push([c.lon, c.lat]);
  if (!points.length) return null;
  const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
  return [Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)];
}

function renderMap() {
  const svg = $("map");
  const bounds = mapBounds();
  svg.replaceChildren();
  if (!bounds) return;
  state.baseProject = projection(bounds);
  const at = zoomed(state.baseProject);
  state.project = at;
  const base = svgEl("g", { class: "base" });
  const data = state.map || { districts: [], stations: [], sensors: [] };
  for (const d of data.districts) {  // under the rest: what our sensors cover, named
    const [x, y] = at(d.lon, d.lat);
    const g = svgEl("g", { class: "district", "data-code": d.code });
    const corners = (d.outline || []).map((p) => at(p[0], p[1]).map((v) => v.toFixed(1)).join(","));
    if (corners.length) g.append(svgEl("path", { class: "outline", d: "M" + corners.join("L") + "Z" }));
    g.append(svgEl("text", { x: x, y: y }, (d.name || "") + " " + d.code));
    base.append(g);
  }
  for (const s of data.sensors) {
    const [x, y] = at(s.lon, s.lat);
    base.append(svgEl("circle", { class: "sensor", cx: x, cy: y, r: 2, "data-district": s.district }));
  }
  for (const s of data.stations) {
    const [x, y] = at(s.lon, s.lat);
    const g = svgEl("g", { class: "station " + s.status });
    g.append(svgEl("rect", { x: x - 4, y: y - 4, width: 8, height: 8 }));
    g.append(svgEl("title", {}, s.station_id + " · " + s.status));
    base.append(g);
  }
  svg.append(base, svgEl("g", { id: "map-cases" }));
  showZoom();
  renderMapCases();
}

// Zoom and pan: the view's centre (in the whole city's map units) and its magnification,
// applied in the projection, so that marks, labels and lines keep their size.
const ZOOM_MAX = 32;

function zoomed(project) {
  const v = state.view;
  return (lon, lat) => {
    const [x, y] = project(lon, lat);
    return [MAP_W / 2 + (x - v.cx) * v.zoom, MAP_H / 2 + (y - v.cy) * v.zoom];
  };
}

function zoomTo(zoom) {
  const v = state.view;
  v.zoom = Math.min(ZOOM_MAX, Math.max(1, zoom));
  if (v.zoom === 1) Object.assign(v, { cx: MAP_W / 2, cy: MAP_H / 2 });
  renderMap();
}

function showZoom() {
  const zoom = state.view.zoom;
  $("zoom-in").disabled = zoom >= ZOOM_MAX;
  $("zoom-out").disabled = $("zoom-reset").disabled = zoom <= 1;
  $("map").classList.toggle("zoomed", zoom > 1);
}

function watchPan(svg) {
  let drag = null, dragged = false;
  svg.addEventListener("pointerdown", (event) => {
    if (state.view.zoom > 1 && event.button === 0) drag = { x: event.clientX, y: event.clientY, dx: 0, dy: 0 };
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const units = MAP_W / svg.getBoundingClientRect().width;  // map units a screen pixel
    drag.dx = (event.clientX - drag.x) * units;
    drag.dy = (event.clientY - drag.y) * units;
    if (Math.hypot(drag.dx, drag.dy) < 3) return;
    for (const layer of svg.children) layer.setAttribute("transform", "translate(" + drag.dx + " " + drag.dy + ")");
  });
  const drop = () => {
    if (!drag) return;
    const v = state.view;
    if (Math.hypot(drag.dx, drag.dy) >= 3) {
      v.cx = Math.min(MAP_W, Math.max(0, v.cx - drag.dx / v.zoom));
      v.cy = Math.min(MAP_H, Math.max(0, v.cy - drag.dy / v.zoom));
      dragged = true;
      renderMap();
    }
    drag = null;
  };
  svg.addEventListener("pointerup", drop);
  svg.addEventListener("pointerleave", drop);
  // a drag that ends on a case's mark does not open it
  svg.addEventListener("click", (event) => { if (dragged) event.stopPropagation(); dragged = false; }, true);
}

function renderMapCases() {
  const layer = $("map-cases");
  if (!layer || !state.project) { if (state.open.size) renderMap(); return; }
  const marks = [];
  for (const c of sortedOpen().reverse()) {
    if (c.lon === null || c.lat === null) continue;
    const [bx, by] = state.baseProject(c.lon, c.lat);  // the whole city: is the case in it?
    if (bx < 0 || bx > MAP_W || by < 0 || by > MAP_H) { queueMicrotask(renderMap); return; }
    const [x, y] = state.project(c.lon, c.lat);
    const blink = c.status === "open" && ALARMING.has(c.severity) && ["discover", "register", "dispatch"].includes(c.step);
    const dot = svgEl("circle", { class: "case-mark " + c.severity + (blink ? " blink" : ""), cx: x, cy: y, r: 9,
      "data-case-id": c.id, tabindex: 0, role: "button" });
    dot.append(svgEl("title", {}, "#" + c.id + " " + t("v_" + c.severity) + " · " + c.class_name + " · " + c.address));
    dot.addEventListener("click", () => openCase(c.id));
    dot.addEventListener("keydown", (e) => { if (e.key === "Enter") openCase(c.id); });
    marks.push(dot);
  }
  layer.replaceChildren(...marks);
  const data = state.map || { sensors_total: 0, stations: [] };
  $("map-legend").textContent = t("map_sensors", { n: data.sensors_total, s: data.stations.length, c: state.open.size });
}

let mapTimer = null;
async function loadMap() {
  try {
    state.map = await fetchJson(API + "/map");
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    state.map = null;  // a node without a registry: cases alone
  }
  for (const d of (state.map ? state.map.districts : [])) state.districts.set(d.code, d.name || "");
  if (fillFilters()) refilter();
  renderMap();
}

function refreshMapSoon() {
  if (mapTimer) return;
  mapTimer = setTimeout(() => { mapTimer = null; loadMap().catch(loadFailed); }, 1000);
}

// -- loading and the live stream ---------------------------------------------------------------
class SignedOut extends Error {}
class NotFound extends Error {}

async function fetchJson(url, init) {
  const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, init));
  if (response.status === 401) throw new SignedOut(url);
  if (response.status === 404) throw new NotFound(url);
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response.json();
}

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

function loadFailed(error) {
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

// -- the case view -----------------------------------------------------------------------------
async function openCase(id) {
  state.viewing = id;
  writeUrl();
  state.unseen.delete(id);
  showTitle();
  $("transition-error").textContent = "";
  $("transition-note").value = "";
  $("case-view").hidden = false;
  try {
    const c = await fetchJson(API + "/cases/" + id);
    if (state.viewing === id) showCase(c, true);
  } catch (error) {
    if (!(error instanceof NotFound)) loadFailed(error);
    else if (state.viewing === id) showMissing(id);
  }
  renderBoard();
}

// A case the center does not have (purged after retention, or a wrong link).
function showMissing(id) {
  $("case-title").textContent = t("no_case", { n: id });
  for (const id of ["case-marks", "case-details", "evidence", "history-rows"]) $(id).replaceChildren();
  $("case-actions").hidden = true;
}

function closeCase() {
  state.viewing = null;
  $("case-view").hidden = true;
  writeUrl();
}

function detail(list, term, ...values) {
  list.append(el("dt", "", term));
  const dd = el("dd");
  dd.append(...values.map((v) => (typeof v === "string" ? document.createTextNode(v) : v)));
  list.append(dd);
}

function showCase(c, withHistory) {
  $("case-title").textContent = "#" + c.id + " " + c.title;
  const marks = $("case-marks");
  marks.replaceChildren(severityBadge(c.severity), document.createTextNode(" "),
    el("span", "step", t("s_" + c.step)), document.createTextNode(" "));
  if (c.awaiting_verification) mark(marks, t("awaiting"), true);
  else if (c.status === "open") mark(marks, t("alarm"));
  if (c.detected_late) mark(marks, t("late"));
  if (c.escalations > 0) mark(marks, t("escalated", { n: c.escalations, p: c.priority }));
  if (c.next_actions.includes("acknowledge")) mark(marks, t("unacked"));
  const list = $("case-details");
  list.replaceChildren();
  detail(list, t("d_class"), c.category + " " + c.class_code + " " + c.major_name + " / " + c.class_name);
  detail(list, t("d_component"), c.component_id || "—");
  detail(list, t("d_grid"), c.grid_code || "—");
  detail(list, t("d_district"), [c.district_code, state.districts.get(c.district_code)].filter(Boolean).join(" ") || "—");
  detail(list, t("d_address"), c.address || "—");
  detail(list, t("d_lonlat"), c.lon === null ? "—" : c.lon.toFixed(5) + ", " + c.lat.toFixed(5));
  detail(list, t("d_station"), c.station_id);
  detail(list, t("d_sensor"), c.sensor_id + " (" + c.sensor_kind + ")" + (c.unregistered ? " · " + t("unregistered") : ""));
  detail(list, t("d_members"), c.members.join(", "));
  detail(list, t("d_status"), c.status === "open" ? t("alarm") : t("cleared") + " " + formatTime(c.cleared_at, true));
  detail(list, t("d_times"),
    t("arrived") + " " + formatTime(c.detected_at, true) + " · " + t("device") + " " +
    t("started") + " " + formatTime(c.started_at, true) + ", " + t("opened") + " " + formatTime(c.opened_at, true));
  detail(list, t("d_priority"), "P" + c.priority + (c.ack_due_at ? " · ack ≤ " + formatTime(c.ack_due_at) : ""));
  detail(list, t("d_ack"), c.acknowledged_by ? c.acknowledged_by + " · " + formatTime(c.acknowledged_at, true) : "—");
  detail(list, t("d_rule"), c.rule_id + (c.rules_version != null ? " · v" + c.rules_version : ""));
  drawEvidence(c);
  showActions(c);
  if (withHistory) loadHistory(c.id).catch(loadFailed);
}

function drawEvidence(c) {
  const svg = $("evidence");
  svg.replaceChildren();
  const W = 600, H = 200, L = 50, R = 10, T = 14, B = 26;
  const points = c.evidence.map((p) => [Date.parse(p.ts), p.value]);
  if (!points.length) { svg.append(svgEl("text", { x: L, y: H / 2 }, "—")); return; }
  const xs = points.map((p) => p[0]);
  const values = points.map((p) => p[1]).concat([c.threshold]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const x = (v) => L + (v - x0) / (x1 - x0) * (W - L - R);
  const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
  svg.append(svgEl("line", { class: "threshold", x1: L, x2: W - R, y1: y(c.threshold), y2: y(c.threshold) }));
  svg.append(svgEl("text", { x: W - R, y: y(c.threshold) - 4, "text-anchor": "end" }, t("threshold") + " " + c.threshold + " " + c.field));
  svg.append(svgEl("polyline", { class: "line", points: points.map((p) => x(p[0]) + "," + y(p[1])).join(" ") }));
  for (const p of points) svg.append(svgEl("circle", { class: "dotp", cx: x(p[0]), cy: y(p[1]), r: 2.5 }));
  svg.append(svgEl("text", { x: L - 6, y: T + 4, "text-anchor": "end" }, String(+hi.toFixed(2))));
  svg.append(svgEl("text", { x: L - 6, y: H - B, "text-anchor": "end" }, String(+lo.toFixed(2))));
  svg.append(svgEl("text", { x: L, y: H - 6 }, formatTime(new Date(x0).toISOString())));
  svg.append(svgEl("text", { x: W - R, y: H - 6, "text-anchor": "end" }, formatTime(new Date(x1).toISOString()) + " (" + t("device") + ")"));
  svg.setAttribute("aria-label", c.field + ": " + points.length + " readings, " + t("threshold") + " " + c.threshold);
}

function mayTransition() {
  return state.me && (state.me.role === "operator" || state.me.role === "admin");
}

function showActions(c) {
  const box = $("case-actions");
  const buttons = $("action-buttons");
  buttons.replaceChildren();
  box.hidden = false;
  if (!mayTransition()) {
    box.hidden = !state.me;
    $("transition-note").hidden = true;
    box.querySelector("label").hidden = true;
    $("transition-error").textContent = t("read_only", { r: state.me ? state.me.role : "" });
    return;
  }
  $("transition-note").hidden = false;
  box.querySelector("label").hidden = false;
  $("transition-error").textContent = "";
  for (const action of c.next_actions) {
    const button = el("button", "", t("a_" + action));
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => transition(c.id, action));
    buttons.append(button);
  }
}

async function transition(id, action) {
  const error = $("transition-error");
  error.textContent = "";
  for (const b of $("action-buttons").querySelectorAll("button")) b.disabled = true;
  try {
    const response = await fetch(API + "/cases/" + id + "/transitions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ action: action, note: $("transition-note").value }),
    });
    if (response.status === 401) throw new SignedOut("transition");
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      $("transition-note").value = "";
      if (state.viewing === id) showCase(body, true);
    } else if (response.status === 409) {
      error.textContent = body.detail;
    } else {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
      error.textContent = "HTTP " + response.status + ": " + (detail || "");
    }
  } catch (failure) {
    if (failure instanceof SignedOut) loadFailed(failure);
    else error.textContent = String(failure.message || failure);
  } finally {
    for (const b of $("action-buttons").querySelectorAll("button")) b.disabled = false;
  }
}

async function loadHistory(id) {
  const history = await fetchJson(API + "/cases/" + id + "/history");
  if (state.viewing !== id) return;
  $("history-rows").replaceChildren(...history.items.map((h) => {
    const tr = document.createElement("tr");
    tr.append(el("td", "num", formatTime(h.at, true)), el("td", "actor", h.actor),
      el("td", "action", t("a_" + h.action)),
      el("td", "", (h.from_step ? t("s_" + h.from_step) + " → " : "") + t("s_" + h.to_step)),
      el("td", "", h.note));
    return tr;
  }));
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
function refilter() {
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
    lang = lang === "zh" ? "en" : "zh";
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

// citysense dashboard: the case view: details, the evidence chart, the history, the buttons.
import {
  $, API, el, fetchJson, formatTime, mark, NotFound, severityBadge, SignedOut, state, svgEl, t,
} from "./common.js";
import { loadFailed, renderBoard, showTitle, writeUrl } from "./dashboard.js";

// -- the case view -----------------------------------------------------------------------------
export async function openCase(id) {
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

export function closeCase() {
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

export function showCase(c, withHistory) {
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

// citysense dashboard: the map of the city, drawn from the center's own data (no tile server).
import { $, ALARMING, API, fetchJson, SignedOut, state, svgEl, t } from "./common.js";
import { openCase } from "./caseview.js";
import { fillFilters, loadFailed, refilter, sortedOpen } from "./dashboard.js";

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

export function renderMap() {
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

export function zoomTo(zoom) {
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

export function watchPan(svg) {
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

export function renderMapCases() {
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
export async function loadMap() {
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

export function refreshMapSoon() {
  if (mapTimer) return;
  mapTimer = setTimeout(() => { mapTimer = null; loadMap().catch(loadFailed); }, 1000);
}

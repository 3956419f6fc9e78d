// citysense dashboard: what every part shares: settings, the language, DOM and time helpers, the
// page's state, and the center's answers. Case text comes from the field: always textContent.
import { WORDS } from "./words.js";

export const API = "/api/v1";
export const SESSION_URL = API + "/session";
export const STEPS = ["discover", "register", "dispatch", "handle", "verify", "close", "evaluate"];
export const SEVERITIES = ["critical", "urgent", "warning", "maintenance"];
export const ALARMING = new Set(["critical", "urgent"]);
export const STALE_AFTER_MS = 4000;      // the stream down this long: say the data may be stale
export const WATCHDOG_MS = 60000;        // nothing (no event, no reconnect) this long: reconnect
export const OPEN_PAGE = 100;            // open cases a page of the board ("Show more": the next)
export const CLOSED_SHOWN = 20;          // closed cases a page
const SVG = "http://www.w3.org/2000/svg";

export let lang = (localStorage.getItem("citysense.lang") ||
  (navigator.language || "en").toLowerCase()).startsWith("zh") ? "zh" : "en";

export function setLang(chosen) { lang = chosen; }

export function t(key, values) {
  let text = (WORDS[lang][key] ?? WORDS.en[key]) ?? key;
  for (const [name, value] of Object.entries(values || {})) text = text.replace("{" + name + "}", value);
  return text;
}

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- time --------------------------------------------------------------------------------------
export function formatTime(iso, withDate) {
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

export function isClosed(c) { return c.step === "close" || c.step === "evaluate"; }

export function ageText(c) {
  if (isClosed(c)) return t("closed_after", { d: duration(Date.parse(c.updated_at) - Date.parse(c.detected_at)) });
  return t("open_for", { d: duration(Date.now() - Date.parse(c.detected_at)) });
}

// -- state -------------------------------------------------------------------------------------
export const state = {
  me: null, open: new Map(), closed: new Map(), districts: new Map(), map: null,
  unseen: new Set(), muted: localStorage.getItem("citysense.muted") === "1",
  source: null, lastEventId: null, lastHeard: 0, downSince: null, pending: null, viewing: null,
  generation: 0, paging: null, view: { zoom: 1, cx: 300, cy: 240 }, urlCase: null,
};


export class SignedOut extends Error {}
export class NotFound extends Error {}

export async function fetchJson(url, init) {
  const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, init));
  if (response.status === 401) throw new SignedOut(url);
  if (response.status === 404) throw new NotFound(url);
  if (!response.ok) throw new Error(url + ": HTTP " + response.status);
  return response.json();
}


// -- shared by the board and the case view ---------------------------------------------------
export function severityBadge(severity) {
  return el("span", "sev " + severity, t("v_" + severity));
}

export function mark(parent, text, ok) { parent.append(el("span", ok ? "mark ok" : "mark", text)); }

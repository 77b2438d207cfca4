/* The dashboard's shell: one EventSource on /api/stream, state replaced per kind, and
   hash routes (#/overview, #/agents, #/agents/<id>, ...) rendered without page reloads.
   A page draws its shell once per route and then only its live regions, so filters keep
   their focus and selection while documents stream in. */
"use strict";

const KINDS = ["cluster", "agents", "groups", "auctions", "accounts", "coordination",
               "variables"];
const state = {};          // kind -> the latest document, exactly as the API gives it
const received = {};       // kind -> when it arrived (ms)
const API = "/api";

/* ---- formatting helpers (shared by pages.js) ---- */
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                      '"': "&quot;", "'": "&#39;"}[c]));
}
function dash(v) { return v === null || v === undefined || v === "" ? "—" : esc(v); }
function num(v, digits = 2) {
  if (typeof v !== "number") return "—";
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}
function when(t) {
  if (typeof t !== "number" || !t) return "—";
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], {hour12: false}) +
    (Date.now() - d.getTime() > 86400e3 ? ` ${d.toLocaleDateString()}` : "");
}
function duration(s) {
  if (typeof s !== "number") return "—";
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
function badge(v, cls) {
  const c = cls ?? (v === true ? "true" : v === false ? "false" : String(v ?? ""));
  return `<span class="badge ${esc(c)}">${v === null || v === undefined ? "—" : esc(v)}</span>`;
}
function table(headers, rows, emptyText = "nothing yet") {
  if (!rows.length) return `<div class="empty">${esc(emptyText)}</div>`;
  const th = headers.map(h => (h.startsWith("#") ? `<th class="num">${esc(h.slice(1))}</th>`
                                                 : `<th>${esc(h)}</th>`)).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}
/** Replace a region's HTML if it changed, keeping which <details data-key> were open. */
const drawn = new WeakMap();  // element -> the HTML last drawn into it
function setHTML(id, html) {
  const el = document.getElementById(id);
  if (!el || drawn.get(el) === html) return;
  const open = new Set([...el.querySelectorAll("details[open][data-key]")]
    .map(d => d.dataset.key));
  el.innerHTML = html;
  drawn.set(el, html);
  for (const d of el.querySelectorAll("details[data-key]")) {
    if (open.has(d.dataset.key)) d.open = true;
  }
}

/* ---- routing ---- */
let current = {page: null, arg: null};

function route() {
  const [, page = "overview", ...rest] = (location.hash || "#/overview").split("/");
  const name = Pages[page] ? page : "overview";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  const main = document.getElementById("page");
  current = {page: name, arg};
  main.dataset.page = name;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  main.innerHTML = Pages[name].shell(arg);
  render(null);
}

/** Redraw the live regions of the current page (kind: what changed, null = everything). */
function render(kind) {
  const page = Pages[current.page];
  if (!page) return;
  if (kind && !page.kinds.includes(kind)) return;
  try {
    page.update(current.arg, kind);
  } catch (err) {
    console.error(err);
    setHTML("page-error", `<p class="err">could not draw this page: ${esc(err.message)}</p>`);
  }
}

/* ---- the live feed ---- */
function connect() {
  const live = document.getElementById("live");
  const source = new EventSource(`${API}/stream`);
  source.onopen = () => { live.dataset.state = "open"; live.textContent = "live"; };
  source.onerror = () => {  // EventSource reconnects by itself; say so meanwhile
    live.dataset.state = "error";
    live.textContent = "reconnecting…";
  };
  for (const kind of KINDS) {
    source.addEventListener(kind, ev => {
      try {
        state[kind] = JSON.parse(ev.data);
      } catch (err) {
        console.error(`bad ${kind} document`, err);
        return;
      }
      received[kind] = Date.now();
      live.dataset.state = "open";
      live.textContent = "live";
      if (Pages.observe) Pages.observe(kind, state[kind]);
      render(kind);
    });
  }
}

async function getJSON(path) {
  const reply = await fetch(API + path, {headers: {Accept: "application/json"}});
  const body = await reply.json();
  if (!reply.ok) throw new Error(body?.error?.message || `${reply.status}`);
  return body;
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => { route(); connect(); });

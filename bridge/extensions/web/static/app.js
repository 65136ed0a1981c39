// The page's one script: no build step, no framework. Every URL is relative, so the page works at /,
// under a reverse proxy's prefix and in Home Assistant's ingress. Text from the store is only ever
// set as textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const LIVE_ROWS = 100;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function say(message) {
  const status = $("status");
  status.textContent = message || "";
  status.hidden = !message;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (response.status === 401) { location.reload(); throw new Error("logged out"); }
  const body = response.headers.get("Content-Type")?.startsWith("application/json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || `${response.status} ${response.statusText}`);
  return body;
}

const time = (iso) => new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
function duration(seconds) {
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}
const plateLink = (plate) => el("a", { class: "plate", href: `#plate/${encodeURIComponent(plate)}`, text: plate });
const badges = (lists) => lists.map((name) => el("span", { class: "badge", text: name }));

function sightingRow(s) {
  const crop = s.has_crop ? el("img", { class: "crop", alt: `crop of ${s.plate}`, loading: "lazy", src: `api/sightings/${s.id}/crop.jpg` }) : null;
  return el("tr", { class: s.watchlists.length ? "flagged" : "", "data-id": String(s.id), "data-plate": s.plate },
    el("td", { text: time(s.seen_at) }), el("td", {}, plateLink(s.plate)), el("td", { text: s.camera }),
    el("td", { text: s.score.toFixed(2) }), el("td", {}, ...badges(s.watchlists)), el("td", {}, crop));
}

// -- live -----------------------------------------------------------------------------------------
let feed = null;
async function startLive() {
  if (feed) return;
  feed = "starting";
  const list = $("live-list");
  try {
    const { sightings } = await api("api/search?limit=25");
    list.replaceChildren(...sightings.map(sightingRow));
    performance.mark("plate-bridge:live-rows");  // benchmarks/web_first_paint.py reads it
  } catch (error) { say(error.message); }
  feed = new EventSource("api/feed");
  feed.onopen = () => { $("live-state").textContent = "following"; };
  feed.onerror = () => { $("live-state").textContent = "reconnecting…"; };
  feed.addEventListener("sighting", (event) => {
    const s = JSON.parse(event.data);
    if (list.querySelector(`tr[data-id="${s.id}"]`)) return;
    const row = sightingRow(s);
    row.classList.add("new");
    list.prepend(row);
    while (list.children.length > LIVE_ROWS) list.lastChild.remove();
  });
}

// -- search ---------------------------------------------------------------------------------------
let lastQuery = "";
function searchQuery(before) {
  const form = new FormData($("search-form"));
  const query = new URLSearchParams();
  for (const [key, value] of form) {
    if (!value) continue;
    query.set(key, key === "since" || key === "until" ? new Date(value).toISOString() : value);
  }
  if (before) query.set("before", before);
  return query;
}
async function search(more = false) {
  const results = $("search-results");
  const last = results.lastElementChild?.dataset.id;
  const query = searchQuery(more ? last : null);
  query.set("limit", "50");
  try {
    const { sightings } = await api(`api/search?${query}`);
    say("");
    if (more) results.append(...sightings.map(sightingRow)); else results.replaceChildren(...sightings.map(sightingRow));
    if (!more && !sightings.length) results.append(el("tr", {}, el("td", { colspan: "6", class: "muted", text: "Nothing found." })));
    $("search-more").hidden = sightings.length < 50;
    query.delete("limit"); query.delete("before");
    lastQuery = String(query);
    $("search-export").href = `api/search.csv?${lastQuery}`;
  } catch (error) { say(error.message); }
}
async function fillFilters() {
  try {
    const [{ cameras }, { lists }] = await Promise.all([api("api/cameras"), api("api/watchlists")]);
    const camera = $("search-camera"), list = $("search-list");
    camera.replaceChildren(el("option", { value: "", text: "any" }), ...cameras.map((c) => el("option", { value: c, text: c })));
    list.replaceChildren(el("option", { value: "", text: "any" }), ...lists.map((l) => el("option", { value: l.name, text: l.name })));
  } catch (error) { say(error.message); }
}

// -- a plate --------------------------------------------------------------------------------------
async function showPlate(plate, visitId) {
  $("plate-name").textContent = plate;
  try {
    const data = await api(`api/plates/${encodeURIComponent(plate)}`);
    say("");
    $("plate-lists").replaceChildren(...data.watchlists.map((w) =>
      el("span", { class: "badge", text: w.label ? `${w.list}: ${w.label}` : w.list })));
    $("plate-visits").replaceChildren(...data.visits.map((v) =>
      el("tr", { id: `visit-${v.id}`, class: String(v.id) === visitId ? "highlight" : "" },
        el("td", { text: time(v.first_seen) }), el("td", { text: time(v.last_seen) }),
        el("td", { text: duration(v.dwell_seconds) }), el("td", { text: v.cameras.join(", ") }),
        el("td", { text: v.open ? "present" : "" }))));
    if (!data.visits.length) $("plate-visits").append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No visits." })));
    $("plate-sightings").replaceChildren(...data.sightings.map((s) =>
      el("div", { class: "card", id: `sighting-${s.id}` },
        el("div", {}, el("strong", { text: time(s.seen_at) }), ` · ${s.camera} · ${s.score.toFixed(2)} · ${s.reader}`),
        s.visit_id ? el("a", { href: `#plate/${encodeURIComponent(s.plate)}/visit/${s.visit_id}`, text: "its visit" }) : null,
        el("div", {}, ...badges(s.watchlists)),
        s.has_crop ? el("img", { class: "crop", alt: "plate crop", loading: "lazy", src: `api/sightings/${s.id}/crop.jpg` }) : null,
        s.has_snapshot ? el("img", { alt: "snapshot", loading: "lazy", src: `api/sightings/${s.id}/snapshot.jpg` }) : null)));
  } catch (error) { say(error.message); }
}

// -- present, lists, usage ------------------------------------------------------------------------
async function showPresent() {
  try {
    const { visits } = await api("api/present");
    $("present-list").replaceChildren(...visits.map((v) =>
      el("tr", {}, el("td", {}, plateLink(v.plate)), el("td", { text: time(v.first_seen) }),
        el("td", { text: time(v.last_seen) }), el("td", { text: v.cameras.join(", ") }))));
    if (!visits.length) $("present-list").append(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "Nobody." })));
  } catch (error) { say(error.message); }
}

async function showLists() {
  try {
    const { lists } = await api("api/watchlists");
    $("list-names").replaceChildren(...lists.filter((l) => l.source === "store").map((l) => el("option", { value: l.name })));
    $("lists").replaceChildren(...lists.map(listBlock));
  } catch (error) { say(error.message); }
}
function listBlock(list) {
  const readOnly = list.source === "yaml";
  const name = encodeURIComponent(list.name);
  const rows = list.entries.map((e) => el("tr", {},
    el("td", {}, plateLink(e.plate)), el("td", { text: e.label || "" }),
    el("td", {}, readOnly ? null : el("button", { class: "remove", text: "Remove", onclick: async () => {
      try { await api(`api/watchlists/${name}/entries/${encodeURIComponent(e.plate)}`, { method: "DELETE" }); showLists(); }
      catch (error) { say(error.message); }
    } }))));
  const upload = el("input", { type: "file", accept: ".csv,text/csv", "aria-label": `import CSV into ${list.name}`, onchange: async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const { imported } = await api(`api/watchlists/${name}/import`, { method: "POST", headers: { "Content-Type": "text/csv" }, body: file });
      say(`${imported} plate(s) imported into ${list.name}.`); showLists();
    } catch (error) { say(error.message); }
  } });
  return el("div", { class: "list", "data-list": list.name },
    el("h3", {}, list.name, " ", readOnly ? el("span", { class: "badge ro", text: "from the configuration file: read-only" }) : null),
    el("table", { class: "rows" }, el("tbody", {}, ...rows)),
    readOnly ? null : el("p", {}, el("a", { href: `api/watchlists/${name}/export.csv`, download: "", text: "Export CSV" }), " · Import CSV (replaces the list): ", upload));
}
async function addEntry(event) {
  event.preventDefault();
  const list = $("add-list").value.trim(), plate = $("add-plate").value.trim(), label = $("add-label").value.trim();
  try {
    await api(`api/watchlists/${encodeURIComponent(list)}/entries`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ plate, label: label || null }) });
    say(""); $("add-plate").value = ""; $("add-label").value = "";
    showLists();
  } catch (error) { say(error.message); }
}

async function showUsage() {
  try {
    const usage = await api("api/usage");
    $("usage-month").textContent = usage.month;
    $("usage-calls").textContent = usage.calls.toLocaleString();
    $("usage-reuse").textContent = usage.saved_by_reuse.toLocaleString();
    $("usage-consensus").textContent = usage.saved_by_consensus.toLocaleString();
    $("usage-offline").textContent = usage.read_offline.toLocaleString();
  } catch (error) { say(error.message); }
}

// -- views ----------------------------------------------------------------------------------------
function route() {
  const [view, plate, , visit] = location.hash.slice(1).split("/");
  const current = ["live", "search", "plate", "present", "lists", "usage"].includes(view) ? view : "live";
  for (const section of document.querySelectorAll("main section")) section.hidden = section.dataset.view !== current;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === current);
  say("");
  if (current === "live") startLive();
  else if (current === "search") fillFilters();
  else if (current === "plate") showPlate(decodeURIComponent(plate || ""), visit);
  else if (current === "present") showPresent();
  else if (current === "lists") showLists();
  else if (current === "usage") showUsage();
}

$("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
$("search-more").addEventListener("click", () => search(true));
$("add-form").addEventListener("submit", addEntry);
window.addEventListener("hashchange", route);
route();
startLive();

// The remediator dashboard: one module, no framework, no build step.
//
// Every read and action is an ordinary REST API call with the tab's token
// (sessionStorage: typed once per tab, gone when the tab closes). Live updates come from
// GET /v1/compute/transitions/stream (server-sent events read with fetch, which, unlike
// EventSource, can send the Authorization header). Views: the fleet (#/?filters), an
// instance (#/instance/C/I) and a cluster's safety (#/cluster/C).

const API = "/v1/compute";
const TOKEN_KEY = "remediator.token";

const STATES = ["PENDING_APPROVAL", "PENDING", "QUARANTINING", "QUARANTINED", "RUNNING",
  "SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED"];
const OPEN_STATES = STATES.slice(0, 5);
const MODES = ["REMEDIATION_MODE_REBOOT_VM", "REMEDIATION_MODE_VM_ONLY",
  "REMEDIATION_MODE_HOST_AWARE", "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT",
  "REMEDIATION_MODE_HOST_POWER_CYCLE"];
// HOST_POWER_CYCLE is never an approval override: the API refuses it (domain/lifecycle.py).
const OVERRIDE_MODES = MODES.filter((m) => m !== "REMEDIATION_MODE_HOST_POWER_CYCLE");
const MODE_LABELS = {
  REMEDIATION_MODE_REBOOT_VM: "Reboot VM",
  REMEDIATION_MODE_VM_ONLY: "Reprovision VM (VM only)",
  REMEDIATION_MODE_HOST_AWARE: "Move to a new host (host aware)",
  REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT: "Evict without replacement",
  REMEDIATION_MODE_HOST_POWER_CYCLE: "Power-cycle the host",
};
const TRIGGERS = ["REMEDIATION_TRIGGER_AUTOMATED", "REMEDIATION_TRIGGER_MANUAL"];
const PAGE_SIZE = 200;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const shortMode = (m) => (m || "").replace("REMEDIATION_MODE_", "");
const shortTrigger = (t) => (t === "REMEDIATION_TRIGGER_MANUAL" ? "manual" : "automated");
const shortId = (id) => (id && id.length > 12 ? id.slice(0, 8) + "…" : id || "");
const instancePath = (c, i) => `${API}/clusters/${enc(c)}/instances/${enc(i)}`;

// --- DOM -----------------------------------------------------------------------------

/** h("a", {href, class}, ...children): an element; text children are never parsed as HTML. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function badge(state) {
  return h("span", { class: `badge s-${state}`, dataset: { state } }, state);
}

// replaceChildren without the absent parts (a card that does not apply is null, which
// replaceChildren would show as the text "null").
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
}

// Relative times, absolute (UTC and local) on hover; refreshed every 15 s.
function rel(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: absolute(iso), dataset: { rel: "" } }, ago(iso));
}
// Change freezes holding now: automated remediation holds still until each ends.
function freezeBanner(freezes) {
  if (!freezes || !freezes.length) return null;
  return h("div", { class: "card freeze", role: "status", dataset: { card: "freeze" } },
    freezes.map((f) => h("div", {},
      h("strong", {}, `Change freeze ${f.name}`),
      f.domains && f.domains.length ? ` in ${f.domains.join(", ")}` : " (whole cluster)",
      " until ", rel(f.end), `: ${f.reason}`,
      h("div", { class: "small muted" }, f.allow_running
        ? "No automated remediation opens (proposals wait in the queue); approved ones still start."
        : "No automated remediation opens (proposals wait in the queue) and approved ones wait; an admin may still create one by hand, with a reason."))));
}

function absolute(iso) {
  const d = new Date(iso);
  return `${d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")} (local ${d.toLocaleString()})`;
}
function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const past = seconds >= 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 10) return past ? "just now" : "in a moment";
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else text = `${Math.floor(s / 86400)} d`;
  return past ? `${text} ago` : `in ${text}`;
}
setInterval(() => {
  for (const t of document.querySelectorAll("time[data-rel]")) t.textContent = ago(t.dateTime);
}, 15000);

function showBanner(message) {
  const banner = $("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

// --- the API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, name, message) {
    super(message);
    this.status = status;
    this.name = name;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    throw new ApiError(0, "UNREACHABLE", `the worker did not answer (${exc.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.status || `HTTP ${response.status}`,
      error.message || response.statusText);
    if (response.status === 401) signOut(failure.message);
    throw failure;
  }
  return data;
}

// --- records: newest wins --------------------------------------------------------------

/** An RFC 3339 UTC time that sorts as a string: "…:05Z" and "…:05.25Z" made comparable. */
function sortable(iso) {
  const match = /^([^.Z]*)(?:\.(\d+))?Z$/.exec(iso || "");
  return match ? `${match[1]}.${(match[2] || "").padEnd(6, "0")}` : iso || "";
}

/** How far along the lifecycle a state is: the tie-break of two versions of one time. */
const RANK = Object.fromEntries(STATES.map((s, i) => [s, Math.min(i, 5)]));

/** Keep the newer of two versions of a record (a reload, an action's answer and a live
 * transition may arrive in any order). One change can make two versions with the same
 * update_time (approved, and started by the executor in the same batch): the one further
 * along the lifecycle is the later. */
function newer(a, b) {
  if (!a) return b;
  if (!b) return a;
  const [ta, tb] = [sortable(a.update_time), sortable(b.update_time)];
  if (ta !== tb) return tb > ta ? b : a;
  return RANK[b.state] >= RANK[a.state] ? b : a;
}

function byNewest(a, b) {
  if (a.create_time !== b.create_time) return a.create_time < b.create_time ? 1 : -1;
  return a.id < b.id ? 1 : -1;
}

// --- routing -------------------------------------------------------------------------

let view = null; // { reload(), onTransition(t), dispose?() }

function route() {
  if (!token()) return;
  if (view && view.dispose) view.dispose();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const main = $("main");
  main.replaceChildren();
  showBanner("");
  if (parts[0] === "instance" && parts.length === 3) view = instanceView(main, parts[1], parts[2]);
  else if (parts[0] === "cluster" && parts.length === 2) view = clusterView(main, parts[1]);
  else view = fleetView(main, new URLSearchParams(query || ""));
  view.reload();
}
window.addEventListener("hashchange", route);

// --- the live stream -------------------------------------------------------------------

const live = { controller: null, delay: 1000 };

function setLive(on, text) {
  const el = $("live");
  el.className = `live ${on ? "on" : "off"}`;
  el.textContent = text || (on ? "● live" : "○ reconnecting…");
}

async function streamLoop() {
  while (token()) {
    const controller = new AbortController();
    live.controller = controller;
    try {
      const response = await fetch(`${API}/transitions/stream`, {
        headers: { Authorization: `Bearer ${token()}` }, signal: controller.signal, cache: "no-store",
      });
      if (response.status === 401) {
        signOut("the token is no longer accepted");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      if (controller.signal.aborted) return;
    }
    if (controller.signal.aborted) return;
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, live.delay));
    live.delay = Math.min(live.delay * 2, 15000);
  }
}

function onFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (event === "ready") {
    // From here on nothing is missed: reload what the view shows, then apply what comes.
    setLive(true);
    live.delay = 1000;
    if (view) view.reload();
  } else if (event === "transition" && view) {
    view.onTransition(JSON.parse(data.join("\n")));
  }
}

// Coalesces bursts: fn runs `ms` after the last call of a burst (typing in a filter).
function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// At most once per `ms`, and always after the latest call: unlike debounce, a steady
// stream of transitions cannot put a refresh off forever.
function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) {
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
    }
  };
}

// --- what the signed-in role may do (GET /v3/whoami names it) ----------------------------

// The server checks every call (403 PERMISSION_DENIED); the dashboard only hides what the
// role cannot do, so that a viewer is not offered buttons that would be refused.
const RIGHTS = {
  viewer: ["read"],
  operator: ["read", "operate"],
  admin: ["read", "operate", "administer"],
  webhook: ["webhook"],
  unrestricted: ["read", "operate", "administer", "webhook"],
};
let role = "unrestricted";
const may = (right) => (RIGHTS[role] || []).includes(right);

// --- actions: approve, reject, cancel --------------------------------------------------

const ACTIONS = {
  approve: { title: "Approve remediation", submit: "Approve", mode: true, comment: true },
  reject: { title: "Reject remediation", submit: "Reject", mode: false, comment: true },
  cancel: { title: "Cancel remediation", submit: "Cancel remediation", mode: false, comment: false },
};

function actionsFor(r) {
  const buttons = [];
  if (!may("operate")) return buttons;
  const add = (action, label, cls) => buttons.push(h("button", {
    type: "button", class: cls, dataset: { action },
    onclick: () => openAction(action, r),
  }, label));
  if (r.state === "PENDING_APPROVAL") {
    add("approve", "Approve");
    add("reject", "Reject", "danger");
  }
  if (r.state === "PENDING_APPROVAL" || r.state === "PENDING") add("cancel", "Cancel", "secondary");
  return buttons;
}

function openAction(action, r) {
  const spec = ACTIONS[action];
  const dialog = $("act");
  $("act-title").textContent = spec.title;
  $("act-target").textContent =
    `${r.instance_name || r.instance_id} in ${r.cluster_id} · ${shortMode(r.mode)} · ${r.id}`;
  $("act-mode-row").hidden = !spec.mode;
  $("act-comment-row").hidden = !spec.comment;
  const select = $("act-mode");
  select.replaceChildren(
    h("option", { value: "" }, `Keep ${MODE_LABELS[r.mode] || shortMode(r.mode)}`),
    ...OVERRIDE_MODES.filter((m) => m !== r.mode).map((m) => h("option", { value: m }, MODE_LABELS[m])),
  );
  $("act-comment").value = "";
  $("act-error").textContent = "";
  const submit = $("act-submit");
  submit.textContent = spec.submit;
  submit.className = action === "approve" ? "" : "danger";
  submit.disabled = false;
  dialog.dataset.action = action;
  dialog.record = r;
  dialog.showModal();
}

async function submitAction(event) {
  event.preventDefault();
  const dialog = $("act");
  const action = dialog.dataset.action;
  const r = dialog.record;
  const spec = ACTIONS[action];
  const body = {};
  const comment = $("act-comment").value.trim();
  if (spec.comment && comment) body.comment = comment;
  if (spec.mode && $("act-mode").value) body.mode = $("act-mode").value;
  const submit = $("act-submit");
  submit.disabled = true;
  $("act-error").textContent = "";
  try {
    const updated = await call("POST",
      `${instancePath(r.cluster_id, r.instance_id)}/remediations/${enc(r.id)}/${action}`, body);
    dialog.close();
    if (view) view.onRecord(updated);
  } catch (exc) {
    // The state may have moved on (another operator, the pipeline): say what the API said.
    $("act-error").textContent = `${exc.name}: ${exc.message}`;
    submit.disabled = false;
  }
}

// --- one remediation, as a table row ---------------------------------------------------

function evidence(r) {
  const items = [];
  const triggering = new Set([r.active_health_check_run_id, r.passive_health_check_event_id]);
  for (const s of (r.signals || []).slice(-4).reverse()) {
    items.push(h("li", {},
      h("strong", {}, s.name), " ", s.status, " · ",
      h("span", { class: "mono", title: `${s.kind === "ACTIVE_RUN" ? "run" : "event"} id ${s.id}` },
        `${s.kind === "ACTIVE_RUN" ? "run" : "event"} ${shortId(s.id)}`),
      triggering.has(s.id) ? h("span", { class: "muted" }, " (trigger)") : null,
      " ", rel(s.observed_at)));
  }
  if ((r.signals || []).length > 4) items.push(h("li", { class: "muted" }, `${r.signals.length - 4} more on the instance page`));
  for (const a of (r.linked_alerts || []).slice(0, 3)) {
    const tags = Object.entries(a.annotations || {}).map(([k, v]) =>
      h("span", { class: `tag${k === "xid" ? " hot" : ""}` }, `${k} ${v}`));
    items.push(h("li", {}, "alert ", h("strong", {}, a.alert_name), " ",
      a.severity.replace("PHC_SEVERITY_", ""), " ", tags,
      a.resolved_at ? h("span", { class: "good" }, " resolved ") : null,
      a.resolved_at ? rel(a.resolved_at) : null));
  }
  const explicitIds = [];
  const known = new Set((r.signals || []).map((s) => s.id));
  if (r.active_health_check_run_id && !known.has(r.active_health_check_run_id))
    explicitIds.push(`run ${r.active_health_check_run_id}`);
  if (r.passive_health_check_event_id && !known.has(r.passive_health_check_event_id))
    explicitIds.push(`event ${r.passive_health_check_event_id}`);
  return h("td", { class: "evidence" },
    r.rule ? h("div", {}, "rule ", h("strong", {}, r.rule)) : null,
    r.reason ? h("div", {}, r.reason) : null,
    explicitIds.map((t) => h("div", { class: "mono small" }, t)),
    items.length ? h("ul", {}, items) : null,
    r.error_message ? h("div", { class: "bad" }, r.error_message) : null);
}

function remediationRow(r, flash, trail) {
  const name = r.instance_name || r.instance_id;
  return h("tr", {
    class: `rem${flash ? " flash" : ""}`,
    dataset: { id: r.id, cluster: r.cluster_id, instance: r.instance_id },
  },
    h("td", { class: "state" }, badge(r.state),
      trail && trail.length > 1 ? h("div", { class: "small trail", title: "seen live in this tab" }, trail.join(" → ")) : null,
      h("div", { class: "small muted" }, "updated ", rel(r.update_time))),
    h("td", { class: "instance" },
      h("a", { href: `#/instance/${enc(r.cluster_id)}/${enc(r.instance_id)}` }, h("strong", {}, name)),
      name !== r.instance_id ? h("div", { class: "mono small muted" }, r.instance_id) : null,
      h("div", { class: "small" }, h("a", { href: `#/cluster/${enc(r.cluster_id)}` }, r.cluster_id))),
    h("td", {}, h("div", { class: "mode" }, shortMode(r.mode)),
      h("div", { class: "small muted" }, shortTrigger(r.trigger)),
      h("div", { class: "mono small muted", title: r.id }, shortId(r.id))),
    evidence(r),
    h("td", { class: "requested" }, h("div", {}, r.requested_by), h("div", { class: "small" }, rel(r.create_time))),
    h("td", { class: "reviewed" },
      r.reviewed_by ? h("div", {}, r.reviewed_by) : h("span", { class: "muted" }, "—"),
      r.review_time ? h("div", { class: "small" }, rel(r.review_time)) : null,
      r.review_comment ? h("div", { class: "small comment" }, `“${r.review_comment}”`) : null),
    h("td", { class: "actions" }, actionsFor(r)));
}

function remediationTable(records, flashing, trails) {
  if (!records.length) return h("div", { class: "card empty" }, "No remediations match.");
  return h("table", { class: "remediations" },
    h("thead", {}, h("tr", {}, ["State", "Instance", "Mode", "Evidence", "Requested", "Reviewed", ""]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, records.map((r) =>
      remediationRow(r, flashing && flashing.has(r.id), trails && trails.get(r.id)))));
}

/** "3 / 20", or "3 (no budget)": a budget of 0 (or none) in the policy means no limit. */
function budget(opened, perHour) {
  return perHour ? `${opened} / ${perHour}` : `${opened} (no budget)`;
}

// --- the fleet -------------------------------------------------------------------------

function fleetView(main, params) {
  const filters = {
    cluster: params.get("cluster") || "",
    instance: params.get("instance") || "",
    state: params.get("state") || "",
    mode: params.get("mode") || "",
    trigger: params.get("trigger") || "",
  };
  const records = new Map();
  const flashing = new Set();
  const trails = new Map(); // id -> the states its transitions went through in this tab
  const sequences = new Map(); // id -> the last transition applied to its trail
  let clusters = [];
  let nextToken = "";
  let generation = 0;
  // Records changed live while a reload is in flight: newer than its snapshot may be.
  let changedDuringLoad = new Map();

  const summary = h("div", { id: "clusters" });
  const chips = h("div", { class: "chips", id: "state-chips" });
  const listing = h("div", { id: "listing" });
  const more = h("div");

  const select = (name, label, options) => h("div", {},
    h("label", { for: `f-${name}` }, label),
    h("select", { id: `f-${name}`, onchange: (e) => setFilter(name, e.target.value) },
      options.map(([value, text]) => h("option", { value, selected: filters[name] === value }, text))));
  const stateOptions = [["", "All states"], [OPEN_STATES.join(","), "Open (not ended)"],
    ...STATES.map((s) => [s, s])];
  const form = h("div", { class: "filters card" },
    h("div", {}, h("label", { for: "f-cluster" }, "Cluster"),
      h("select", { id: "f-cluster", onchange: (e) => setFilter("cluster", e.target.value) },
        h("option", { value: "" }, "All clusters"),
        filters.cluster ? h("option", { value: filters.cluster, selected: true }, filters.cluster) : null)),
    h("div", {}, h("label", { for: "f-instance" }, "Instance (id or name contains)"),
      h("input", { id: "f-instance", value: filters.instance, placeholder: "any",
        oninput: debounce(() => setFilter("instance", $("f-instance").value.trim(), true), 300) })),
    select("state", "State", stateOptions),
    select("mode", "Mode", [["", "All modes"], ...MODES.map((m) => [m, shortMode(m)])]),
    select("trigger", "Trigger", [["", "Any trigger"], ...TRIGGERS.map((t) => [t, shortTrigger(t)])]));

  main.append(h("h1", {}, "Fleet"), summary, form, chips, listing, more);

  function setFilter(name, value, keepFocus) {
    filters[name] = value;
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    if (keepFocus) {
      history.replaceState(null, "", `#/${query ? "?" + query : ""}`);
      render();
    } else {
      location.hash = `#/${query ? "?" + query : ""}`;
    }
  }

  function matches(r) {
    if (filters.cluster && r.cluster_id !== filters.cluster) return false;
    if (filters.state && !filters.state.split(",").includes(r.state)) return false;
    if (filters.mode && r.mode !== filters.mode) return false;
    if (filters.trigger && r.trigger !== filters.trigger) return false;
    const needle = filters.instance.toLowerCase();
    return !needle || r.instance_id.toLowerCase().includes(needle)
      || (r.instance_name || "").toLowerCase().includes(needle);
  }

  function listUrl(pageToken) {
    const query = new URLSearchParams({ page_size: PAGE_SIZE });
    for (const name of ["state", "mode", "trigger"]) if (filters[name]) query.set(name, filters[name]);
    if (pageToken) query.set("page_token", pageToken);
    return `${instancePath(filters.cluster || "-", "-")}/remediations?${query}`;
  }

  async function reload() {
    const mine = ++generation;
    changedDuringLoad = new Map();
    try {
      const [list, fleet] = await Promise.all([call("GET", listUrl()), call("GET", `${API}/clusters`)]);
      if (mine !== generation) return;
      const fresh = new Map(list.remediations.map((r) => [r.id, newer(records.get(r.id), r)]));
      for (const [id, r] of changedDuringLoad) {
        if (matches(r)) fresh.set(id, newer(fresh.get(id), r));
        else fresh.delete(id);
      }
      records.clear();
      for (const [id, r] of fresh) records.set(id, r);
      nextToken = list.has_next ? list.next_page_token : "";
      clusters = fleet.clusters;
      render();
      renderClusters();
    } catch (exc) {
      if (exc.status !== 401) showBanner(`Could not load the fleet: ${exc.message}`);
    }
  }

  async function loadMore() {
    try {
      const list = await call("GET", listUrl(nextToken));
      for (const r of list.remediations) records.set(r.id, newer(records.get(r.id), r));
      nextToken = list.has_next ? list.next_page_token : "";
      render();
    } catch (exc) {
      showBanner(`Could not load more: ${exc.message}`);
    }
  }

  const refreshClusters = throttle(async () => {
    try {
      clusters = (await call("GET", `${API}/clusters`)).clusters;
      renderClusters();
    } catch {
      // the next transition or reload tries again
    }
  }, 2000);

  function render() {
    const shown = [...records.values()].filter(matches).sort(byNewest);
    listing.replaceChildren(remediationTable(shown, flashing, trails));
    flashing.clear();
    more.replaceChildren(nextToken
      ? h("button", { type: "button", class: "secondary", onclick: loadMore }, "Load more") : "");
  }

  function renderClusters() {
    const select = $("f-cluster");
    select.replaceChildren(h("option", { value: "" }, "All clusters"),
      ...[...new Set([...clusters.map((c) => c.cluster_id), filters.cluster].filter(Boolean))].map((c) =>
        h("option", { value: c, selected: c === filters.cluster }, c)));
    const totals = {};
    for (const c of clusters) {
      for (const [state, n] of Object.entries(c.open_remediations || {})) totals[state] = (totals[state] || 0) + n;
    }
    chips.replaceChildren(h("span", { class: "muted" }, "Open now:"),
      ...OPEN_STATES.map((s) => h("button", {
        type: "button", class: `chip${filters.state === s ? " active" : ""}`, dataset: { state: s },
        onclick: () => setFilter("state", filters.state === s ? "" : s),
      }, badge(s), ` ${totals[s] || 0}`)));
    if (!clusters.length) {
      summary.replaceChildren(h("div", { class: "card empty" }, "No clusters known yet: no health signal or API call has named one."));
      return;
    }
    summary.replaceChildren(h("table", { class: "clusters" },
      h("thead", {}, h("tr", {}, ["Cluster", "Instances", "Open", "Blast radius", "Opened in the last hour", "Automation"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, clusters.map((c) => h("tr", { dataset: { cluster: c.cluster_id } },
        h("td", {}, h("a", { href: `#/cluster/${enc(c.cluster_id)}` }, h("strong", {}, c.cluster_id))),
        h("td", {}, c.known_instances),
        h("td", {}, Object.entries(c.open_remediations || {}).map(([s, n]) => h("span", {}, badge(s), ` ${n} `))),
        h("td", { class: c.tripped_at ? "bad" : "" }, `${c.blast_radius_open} / ${c.blast_radius_limit}`,
          c.tripped_at ? h("div", {}, "tripped ", rel(c.tripped_at)) : null),
        h("td", {}, budget(c.opened_last_hour, c.rate_budget_per_hour)),
        h("td", {}, c.paused
          ? h("span", { class: "bad", title: `paused by ${c.paused.paused_by}` }, `paused: ${c.paused.reason}`)
          : (c.freezes || []).length
            ? h("span", { class: "bad", title: c.freezes[0].reason }, `frozen: ${c.freezes.map((f) => f.name).join(", ")}`)
            : h("span", { class: "good" }, "on")))))));
  }

  // One render per frame however many transitions came in it (none while the tab is
  // hidden: browsers pause animation frames there).
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  function onRecord(r) {
    changedDuringLoad.set(r.id, newer(changedDuringLoad.get(r.id), r));
    if (matches(r)) records.set(r.id, newer(records.get(r.id), r));
    else records.delete(r.id);
    flashing.add(r.id);
    scheduleRender();
  }

  return {
    reload,
    onRecord,
    onTransition(t) {
      // Transitions of one remediation arrive in order (one partition); a repeat after a
      // reconnect carries a sequence already seen.
      if (t.sequence > (sequences.get(t.remediation_id) || 0)) {
        sequences.set(t.remediation_id, t.sequence);
        const trail = trails.get(t.remediation_id) || [];
        if (t.from_state && trail[trail.length - 1] !== t.from_state) trail.push(t.from_state);
        if (trail[trail.length - 1] !== t.to_state) trail.push(t.to_state);
        trails.set(t.remediation_id, trail);
      }
      onRecord(t.remediation);
      refreshClusters();
    },
  };
}

// --- one instance: its timeline ----------------------------------------------------------

function timelineOf(explanation, remediations) {
  const entries = [];
  const add = (at, kind, title, detail, rid) => at && entries.push({ at, kind, title, detail, rid });
  const decided = new Set();
  // API calls about the instance, done or refused (the audit topic has every one).
  for (const a of explanation.audit || []) {
    const refused = a.outcome !== "OK";
    add(a.at, "api", `${a.action}${refused ? ` refused (${a.status} ${a.error || ""})` : ""}`,
      `by ${a.principal} (${a.role})`, a.remediation_id);
  }
  for (const d of explanation.decisions || []) {
    decided.add(d.signal.id);
    add(d.at, "decision", `${d.signal.name} ${d.signal.status} → ${d.outcome.toLowerCase().replaceAll("_", " ")}`,
      [d.rule ? `rule ${d.rule}: ` : "", d.reason, ` (${d.signal.kind === "ACTIVE_RUN" ? "run" : "event"} ${d.signal.id})`].join(""),
      d.remediation_id);
  }
  for (const r of remediations) {
    for (const s of r.signals || []) {
      if (decided.has(s.id)) continue;
      decided.add(s.id);
      add(s.observed_at, "signal", `${s.name} ${s.status}`, `${s.kind === "ACTIVE_RUN" ? "run" : "event"} ${s.id}`, r.id);
    }
    const manual = r.trigger === "REMEDIATION_TRIGGER_MANUAL";
    add(r.create_time, "transition", manual ? "→ PENDING (requested)" : "→ PENDING_APPROVAL (proposed)",
      `${shortMode(r.mode)} by ${r.requested_by}${r.reason ? `: ${r.reason}` : ""}`, r.id);
    if (r.review_time) {
      const rejected = r.state === "CANCELLED" && !r.start_time && r.end_time === r.review_time;
      add(r.review_time, "transition", rejected ? "→ CANCELLED (rejected)" : "→ PENDING (approved)",
        `by ${r.reviewed_by}${r.review_comment ? `: “${r.review_comment}”` : ""}`, r.id);
    }
    (r.approvals || []).forEach((a, n) => add(a.at, "approval",
      `approval ${n + 1} of ${r.approvals_required || 2}`,
      `by ${a.principal} for ${shortMode(a.mode)}${a.comment ? `: “${a.comment}”` : ""}`, r.id));
    if (r.start_time) add(r.start_time, "transition", "started", shortMode(r.mode), r.id);
    for (const op of r.operations || []) {
      add(op.start_time, "step", `${op.action} started`, `operation ${op.operation_id}`, r.id);
      if (op.end_time) add(op.end_time, "step", `${op.action} ${op.state}`, op.error || "", r.id);
    }
    for (const a of r.linked_alerts || []) {
      if (a.resolved_at) add(a.resolved_at, "signal", `${a.alert_name} resolved`, `event ${a.passive_health_check_alert_id}`, r.id);
    }
    if (r.end_time && !(r.review_time === r.end_time && r.state === "CANCELLED" && !r.start_time)) {
      add(r.end_time, "transition", `→ ${r.state}`, r.error_message || "", r.id);
    }
  }
  // Newest first; at equal times, later kinds of the same moment first.
  return entries.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
}

function instanceView(main, clusterId, instanceId) {
  const base = instancePath(clusterId, instanceId);
  const head = h("div");
  const body = h("div");
  main.append(head, body);
  let generation = 0;

  async function reload() {
    const mine = ++generation;
    try {
      const [explanation, list] = await Promise.all([
        call("GET", `${base}/explain`), call("GET", `${base}/remediations?page_size=50`)]);
      if (mine !== generation) return;
      render(explanation, list.remediations);
    } catch (exc) {
      if (exc.status !== 401) showBanner(`Could not load ${instanceId}: ${exc.message}`);
    }
  }
  const soon = throttle(reload, 300);

  function render(x, listed) {
    const byId = new Map();
    for (const r of [...listed, ...(x.recent || []), x.open_remediation].filter(Boolean)) {
      byId.set(r.id, newer(byId.get(r.id), r));
    }
    const remediations = [...byId.values()].sort(byNewest);
    const name = remediations.find((r) => r.instance_name)?.instance_name;
    fill(head,
      h("div", { class: "small" }, h("a", { href: "#/" }, "Fleet"), " / ",
        h("a", { href: `#/cluster/${enc(clusterId)}` }, clusterId)),
      h("h1", {}, name ? `${name} ` : "", h("span", { class: "mono" }, instanceId)),
      freezeBanner(x.freeze ? [x.freeze] : []), optOutCard(x), holdCard(x), queuedCard(x),
      approvalCard(x.open_remediation));
    const open = x.open_remediation;
    const facts = [
      x.last_signal_at ? h("span", {}, "last signal ", rel(x.last_signal_at)) : "no signal seen yet",
      x.cooldown_until ? h("span", {}, " · cooldown until ", rel(x.cooldown_until)) : null,
      Object.keys(x.debounce || {}).length
        ? ` · debounce: ${Object.entries(x.debounce).map(([k, v]) => `${k} ${v}`).join(", ")}` : null,
    ];
    fill(body,
      h("p", { class: "muted" }, facts),
      h("h2", {}, "Open remediation"),
      open ? remediationTable([open]) : h("div", { class: "card empty" }, "None open."),
      h("h2", {}, "Timeline"),
      h("p", { class: "small muted" }, "Signals, policy decisions, transitions, executor steps and API calls, newest first."),
      timeline(timelineOf(x, remediations)),
      h("h2", {}, "Remediations"),
      remediationTable(remediations));
  }

  function timeline(entries) {
    if (!entries.length) return h("div", { class: "card empty" }, "Nothing yet.");
    return h("ol", { class: "timeline card" }, entries.map((e) => h("li", { dataset: { kind: e.kind } },
      h("span", {}, rel(e.at)),
      h("span", { class: `kind k-${e.kind}` }, e.kind),
      h("span", {}, h("strong", {}, e.title), e.detail ? h("span", { class: "muted" }, ` ${e.detail}`) : null,
        e.rid ? h("span", { class: "mono small muted", title: e.rid }, ` · ${shortId(e.rid)}`) : null))));
  }

  // Two-person approval: who approved so far, and that a different person must approve.
  function approvalCard(open) {
    if (!open || open.state !== "PENDING_APPROVAL" || !(open.approvals || []).length) return null;
    const names = open.approvals.map((a) => `${a.principal} (${shortMode(a.mode)})`).join(", ");
    const needed = (open.approvals_required || 2) - open.approvals.length;
    return h("div", { class: "card", dataset: { card: "approvals" } },
      h("strong", {}, `Approved by ${names}`),
      `: ${needed} more approval${needed === 1 ? "" : "s"} needed, from someone else.`);
  }

  // Held for a human (too many remediations carried out lately): an operator may lift it.
  function holdCard(x) {
    if (!x.held_for_human_at) return null;
    if (!may("administer")) {
      return h("div", { class: "card", dataset: { card: "hold" } },
        h("strong", { class: "bad" }, "Held for a human"), " since ", rel(x.held_for_human_at),
        ": too many remediations carried out on this instance lately (an admin may lift it).");
    }
    const error = h("p", { class: "error", role: "alert" });
    const reason = h("input", { id: "hold-reason", required: true, placeholder: "why, for the next operator" });
    return h("div", { class: "card", dataset: { card: "hold" } },
      h("strong", { class: "bad" }, "Held for a human"), " since ", rel(x.held_for_human_at),
      ": too many remediations carried out on this instance lately.",
      h("form", {
        class: "inline",
        onsubmit: async (e) => {
          e.preventDefault();
          try { await call("DELETE", `${base}/hold`, { reason: reason.value.trim() }); reload(); } catch (exc) { error.textContent = `${exc.name}: ${exc.message}`; }
        },
      }, h("div", {}, h("label", { for: "hold-reason" }, "Lift the hold, reason"), reason),
      h("button", { type: "submit", class: "secondary" }, "Lift hold")), error);
  }

  // A proposal refused for lack of room, waiting in the cluster's admission queue.
  function queuedCard(x) {
    const q = x.queued;
    if (!q) return null;
    return h("div", { class: "card", dataset: { card: "queued" } },
      h("strong", {}, `Waiting for room: ${q.place} of ${q.of} in the cluster's queue`),
      ` · ${shortMode(q.mode)} (rule ${q.rule || "fallback"}) since `, rel(q.since),
      h("div", { class: "small muted" }, q.reason));
  }

  function optOutCard(x) {
    const error = h("p", { class: "error", role: "alert" });
    const act = async (method, body) => {
      try {
        await call(method, `${base}/opt-out`, body);
        reload();
      } catch (exc) {
        error.textContent = `${exc.name}: ${exc.message}`;
      }
    };
    if (x.opt_out) {
      return h("div", { class: "card" },
        h("strong", { class: "bad" }, "Opted out of automated remediation"),
        ` by ${x.opt_out.by} `, rel(x.opt_out.at), `: ${x.opt_out.reason} `,
        may("administer") ? h("button", { type: "button", class: "secondary", onclick: () => act("DELETE") }, "Opt back in") : null, error);
    }
    if (!may("administer")) return h("div", { class: "card" }, h("span", { class: "good" }, "Automated remediation on."));
    const reason = h("input", { id: "optout-reason", required: true, placeholder: "why, for the next operator" });
    return h("div", { class: "card" }, h("span", { class: "good" }, "Automated remediation on."),
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); act("PUT", { reason: reason.value.trim() }); } },
        h("div", {}, h("label", { for: "optout-reason" }, "Opt out, reason"), reason),
        h("button", { type: "submit", class: "secondary" }, "Opt out")), error);
  }

  return {
    reload,
    onRecord: () => soon(),
    onTransition(t) {
      if (t.remediation.cluster_id === clusterId && t.remediation.instance_id === instanceId) soon();
    },
  };
}

// --- one cluster: its safety -------------------------------------------------------------

function clusterView(main, clusterId) {
  const base = `${API}/clusters/${enc(clusterId)}`;
  const body = h("div");
  main.append(h("div", { class: "small" }, h("a", { href: "#/" }, "Fleet"), " / ", clusterId),
    h("h1", {}, "Cluster ", h("span", { class: "mono" }, clusterId)), body);
  let generation = 0;

  async function reload() {
    const mine = ++generation;
    try {
      const safety = await call("GET", `${base}/safety`);
      if (mine === generation) render(safety);
    } catch (exc) {
      if (exc.status !== 401) showBanner(`Could not load ${clusterId}: ${exc.message}`);
    }
  }
  const soon = throttle(reload, 1000);

  function form(id, label, button, onsubmit, extra) {
    const error = h("p", { class: "error", role: "alert" });
    const fields = extra || [];
    const reason = h("input", { id, required: true, placeholder: "why, for the next operator" });
    return h("form", {
      class: "inline",
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = "";
        try {
          await onsubmit(reason.value.trim(), fields.map((f) => f.querySelector("input").value.trim()));
          reload();
        } catch (exc) {
          error.textContent = `${exc.name}: ${exc.message}`;
        }
      },
    }, fields, h("div", {}, h("label", { for: id }, label), reason),
    h("button", { type: "submit", class: "secondary" }, button), error);
  }

  function render(s) {
    const open = s.unhealthy_instances.length;
    const percent = s.limit ? Math.min(100, Math.round((100 * open) / s.limit)) : 100;
    const meter = h("div", { class: `meter${open >= s.limit ? " full" : ""}` }, h("span"));
    meter.firstChild.style.width = `${percent}%`;
    const resumeError = h("p", { class: "error", role: "alert" });
    const admin = may("administer");
    const pause = s.paused
      ? h("div", {}, h("div", { class: "stat bad" }, "Paused"),
        h("div", {}, `by ${s.paused.paused_by} `, rel(s.paused.paused_at), `: ${s.paused.reason}`),
        !admin ? null : h("button", {
          type: "button", onclick: async () => {
            try { await call("DELETE", `${base}/pause`); reload(); } catch (exc) { resumeError.textContent = `${exc.name}: ${exc.message}`; }
          },
        }, "Resume automated remediation"), resumeError)
      : h("div", {}, h("div", { class: "stat good" }, "Automation on"),
        admin ? form("pause-reason", "Pause, reason", "Pause", (reason) => call("PUT", `${base}/pause`, { reason })) : null);
    const optOuts = Object.entries(s.opted_out || {});
    const instanceField = h("div", {}, h("label", { for: "optout-instance" }, "Instance id"),
      h("input", { id: "optout-instance", required: true }));
    const upcoming = (s.next_freezes || []).filter((f) => !(s.freezes || []).some((g) => g.name === f.name && g.start === f.start));
    fill(body,
      freezeBanner(s.freezes),
      h("div", { class: "grid" },
        h("div", { class: "card" }, h("label", {}, "Automated remediation"), pause,
          upcoming.length ? h("div", { class: "small muted", dataset: { part: "next-freezes" } }, "Next freeze: ",
            upcoming.slice(0, 3).map((f, n) => h("span", {}, n ? " · " : "", `${f.name} `, rel(f.start), " → ", rel(f.end)))) : null),
        h("div", { class: "card" }, h("label", {}, "Blast radius (open automated / limit)"),
          h("div", { class: `stat${s.tripped_at ? " bad" : ""}` }, `${open} / ${s.limit}`), meter,
          h("div", { class: "small muted" }, `resumes at ${s.resume_at} once tripped · ${s.known_instances} known instances`),
          s.tripped_at ? h("div", { class: "bad" }, "Tripped ", rel(s.tripped_at), ": new automated remediations are held") : null),
        h("div", { class: "card" }, h("label", {}, "Budget: automated remediations opened in the last hour"),
          h("div", { class: "stat" }, budget(s.opened_last_hour, s.rate_budget_per_hour)),
          h("div", { class: "small muted" }, "as of ", rel(s.as_of), " (the cluster's event time)")),
        h("div", { class: "card" }, h("label", {}, "Executing"),
          h("div", {}, `running: ${s.running.length ? s.running.join(", ") : "none"}`),
          h("div", {}, `queued: ${s.queued.length ? s.queued.join(", ") : "none"}`))),
      h("h2", {}, "Waiting for room (admission queue)"),
      h("p", { class: "waiting" }, (s.waiting || []).length
        ? s.waiting.map((i, n) => h("a", { class: "tag", href: `#/instance/${enc(clusterId)}/${enc(i)}` }, `${n + 1}. ${i}`))
        : h("span", { class: "muted" }, "Nothing waits: every proposal the policy admitted is open.")),
      h("h2", {}, "Instances with an open automated remediation"),
      h("p", {}, open ? s.unhealthy_instances.map((i) => h("a", { class: "tag", href: `#/instance/${enc(clusterId)}/${enc(i)}` }, i)) : "None."),
      h("p", {}, h("a", { href: `#/?cluster=${enc(clusterId)}` }, "All remediations in this cluster →")),
      h("h2", {}, "Opt-outs"),
      optOuts.length
        ? h("table", { class: "optouts" }, h("thead", {}, h("tr", {}, ["Instance", "Reason", "By", "When", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, optOuts.map(([instance, o]) => h("tr", { dataset: { instance } },
            h("td", {}, h("a", { href: `#/instance/${enc(clusterId)}/${enc(instance)}` }, instance)),
            h("td", {}, o.reason), h("td", {}, o.by), h("td", {}, rel(o.at)),
            h("td", {}, !admin ? null : h("button", {
              type: "button", class: "secondary", onclick: async (e) => {
                try { await call("DELETE", `${instancePath(clusterId, instance)}/opt-out`); reload(); } catch (exc) { e.target.after(` ${exc.message}`); }
              },
            }, "Opt back in"))))))
        : h("p", { class: "muted" }, "No instance is opted out."),
      !admin ? null : form("optout-reason", "Reason", "Opt out",
        (reason, [instance]) => call("PUT", `${instancePath(clusterId, instance)}/opt-out`, { reason }), [instanceField]));
  }

  return {
    reload,
    onRecord: () => soon(),
    onTransition(t) {
      if (t.remediation.cluster_id === clusterId) soon();
    },
  };
}

// --- signing in and out ------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (live.controller) live.controller.abort();
  if ($("act").open) $("act").close();
  $("main").replaceChildren();
  $("who").textContent = "";
  $("signout").hidden = true;
  setLive(false, "○ offline");
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").focus();
}

async function signIn() {
  try {
    const me = await call("GET", "/v3/whoami");
    role = me.role || "unrestricted";
    if (!may("read")) {
      signOut(`${me.principal} has the role ${role}, which cannot read the dashboard`);
      return;
    }
    $("signin").hidden = true;
    $("who").textContent = `signed in as ${me.principal} (${role})`;
    $("signout").hidden = false;
    route();
    streamLoop();
  } catch (exc) {
    if (exc.status !== 401) {
      $("signin").hidden = false;
      $("signin-error").textContent = exc.message;
    }
  }
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  signIn();
});
$("signout").addEventListener("click", () => signOut(""));
$("act-form").addEventListener("submit", submitAction);
$("act-close").addEventListener("click", () => $("act").close());

if (token()) signIn();
else signOut("");

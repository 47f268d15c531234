// hyper's status page: what hyperd's API says, live. The token is kept in this tab's
// sessionStorage and sent as a bearer header; it never goes into a URL. Every value shown comes
// from manifests, hosts or guests, so it is put in the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "hyperToken";
const KIND_ORDER = ["Network", "Secret", "Build", "NetworkPolicy", "VM", "BrokerRule"];
const MAX_EVENTS = 200;
const MAX_DEPTH = 8;

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let stream = null;  // the events stream's AbortController
let refreshTimer = null;
let lastStatus = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") {
      node.className = v;
    } else if (k.startsWith("on")) {
      node.addEventListener(k.slice(2), v);
    } else {
      node.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined) {
      node.append(c instanceof Node ? c : String(c));
    }
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
  const res = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  const type = res.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const message = body && typeof body === "object" && body.error ? body.error : String(body);
    if (res.status === 401) {
      signOut("The token was refused: " + message);
    }
    throw new ApiError(res.status, message);
  }
  return body;
}

// --- signing in -------------------------------------------------------------------------------

function showLogin(message) {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("live").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message) {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) {
    stream.abort();
    stream = null;
  }
  showLogin(message);
}

async function signIn(candidate) {
  token = candidate.trim();
  try {
    await api("/v1/status");
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      showLogin("hyperd did not answer: " + e.message);
    }
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  // Nothing of a previous session stays on the page.
  $("events").replaceChildren();
  $("action-result").textContent = "";
  $("log-panel").hidden = true;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  await refresh();
  follow();
}

// --- what hyperd says -------------------------------------------------------------------------

function ago(ms) {
  if (!ms) {
    return "";
  }
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) {
    return s + " s ago";
  }
  if (s < 3600) {
    return Math.round(s / 60) + " min ago";
  }
  if (s < 86400) {
    return Math.round(s / 3600) + " h ago";
  }
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function renderStatus(st) {
  lastStatus = st;
  $("source").textContent = st.source || "";
  const revision = st.revision || "none applied yet";
  $("revision").replaceChildren(
    el("span", { class: "mono" }, revision),
    st.message ? el("span", { class: "message" }, " — " + st.message) : null);
  const words = [];
  words.push(st.ready ? "Ready" : "Not ready");
  if (st.suspended) {
    words.push("Suspended");
  }
  words.push(`${st.ready_objects}/${st.objects} objects ready`);
  if (st.drifted_objects) {
    words.push(`${st.drifted_objects} drifted`);
  }
  if (st.stalled_objects) {
    words.push(`${st.stalled_objects} stalled`);
  }
  $("state").textContent = words.join(" · ");
  const banners = [];
  if (st.held) {
    banners.push(el("div", { class: "banner", id: "held" },
      el("strong", {}, "Held: "),
      `revision ${st.held.revision} ${st.held.reason}`,
      st.held.message ? el("div", { class: "message" }, "commit: " + st.held.message) : null,
      (st.held.deletes || []).length
        ? el("div", { id: "held-deletes" }, "Approving it deletes: ",
          el("span", { class: "mono" }, st.held.deletes.join(", ")))
        : null));
  }
  if (st.rejectedRevision) {
    banners.push(el("div", { class: "banner bad", id: "rejected" },
      el("strong", {}, "Rejected: "), `revision ${st.rejectedRevision} (the last good one stays in force)`));
  }
  if (st.sourceError) {
    banners.push(el("div", { class: "banner bad" }, el("strong", {}, "Source: "), st.sourceError));
  }
  $("banners").replaceChildren(...banners);
  $("approve").hidden = !st.held;
  $("suspend").textContent = st.suspended ? "Resume" : "Suspend";
}

function conditionOf(obj, type) {
  return (obj.conditions || []).find((c) => c.type === type);
}

// The state words of an object, each with its class: "Ready", "Not ready", "Drifted", ...
function statesOf(obj) {
  const out = [];
  const ready = conditionOf(obj, "Ready");
  out.push(ready && ready.status === "True" ? ["Ready", "ready"] : ["Not ready", "notready"]);
  for (const [type, cls] of [["Reconciling", "reconciling"], ["Drifted", "drifted"], ["Stalled", "stalled"]]) {
    const c = conditionOf(obj, type);
    if (c && c.status === "True") {
      out.push([type, cls]);
    }
  }
  return out;
}

function lastChange(obj) {
  return Math.max(0, ...(obj.conditions || []).map((c) => c.since || 0));
}

// A drift: {reason, action, changes: [{path, before (the host now), after (the revision)}]}.
function driftTable(drift) {
  const rows = [];
  for (const ch of (drift && drift.changes) || []) {
    rows.push(el("tr", {},
      el("td", { class: "mono" }, ch.path || ""),
      ch.sensitive ? el("td", {}, "(sensitive: not shown)")
        : el("td", {}, "host: " + JSON.stringify(ch.before) + " → wanted: " + JSON.stringify(ch.after))));
  }
  return el("div", { class: "drift" },
    el("div", {}, el("strong", {}, "Drift: "), (drift && drift.reason) || ""),
    rows.length ? el("table", {}, el("tbody", {}, ...rows)) : null);
}

function nodeFor(obj, byId, dependents, seen, depth) {
  const id = obj.kind + "/" + obj.name;
  const head = el("div", { class: "node-head" },
    el("span", { class: "kind" }, obj.kind),
    el("span", { class: "node-name" }, obj.name));
  for (const [word, cls] of statesOf(obj)) {
    head.append(el("span", { class: "state " + cls }, word));
  }
  const since = lastChange(obj);
  if (since) {
    head.append(el("span", { class: "since", title: new Date(since).toISOString() }, "changed " + ago(since)));
  }
  if (obj.kind === "VM" || obj.kind === "Build") {
    head.append(el("button", { type: "button", onclick: () => showLog(obj.kind, obj.name) },
      obj.kind === "VM" ? "console" : "log"));
  }
  const li = el("li", { class: "node", "data-id": id }, head);
  const ready = conditionOf(obj, "Ready");
  const stalled = conditionOf(obj, "Stalled");
  const note = stalled && stalled.status === "True" ? stalled : ready && ready.status !== "True" ? ready : null;
  if (note && note.message) {
    li.append(el("div", { class: "message" }, note.message));
  }
  if (obj.drift) {
    li.append(driftTable(obj.drift));
  }
  const children = (dependents.get(id) || []).filter((c) => !seen.has(c));
  if (children.length && depth < MAX_DEPTH) {
    const ul = el("ul", {});
    for (const c of children) {
      seen.add(c);
      ul.append(nodeFor(byId.get(c), byId, dependents, seen, depth + 1));
      seen.delete(c);
    }
    li.append(ul);
  }
  return li;
}

function byKindThenName(a, b) {
  const ka = KIND_ORDER.indexOf(a.kind), kb = KIND_ORDER.indexOf(b.kind);
  if (ka !== kb) {
    return (ka < 0 ? 99 : ka) - (kb < 0 ? 99 : kb);
  }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// Objects as a tree by references: under each object, the ones that reference it (a Network's
// VMs and policies, a Build's VMs, a Secret's consumers). An object referencing two appears
// under both; roots reference nothing shown.
function renderObjects(objects) {
  objects = objects.slice().sort(byKindThenName);
  const byId = new Map(objects.map((o) => [o.kind + "/" + o.name, o]));
  const dependents = new Map();
  const roots = [];
  for (const o of objects) {
    const deps = (o.dependsOn || []).filter((d) => byId.has(d));
    if (!deps.length) {
      roots.push(o);
    }
    for (const d of deps) {
      if (!dependents.has(d)) {
        dependents.set(d, []);
      }
      dependents.get(d).push(o.kind + "/" + o.name);
    }
  }
  const items = roots.map((o) => nodeFor(o, byId, dependents, new Set([o.kind + "/" + o.name]), 0));
  $("tree").replaceChildren(...(items.length ? items : [el("li", { class: "message" }, "No objects yet.")]));
}

function renderPlan(plan) {
  const actions = (plan && plan.actions) || [];
  if (!actions.length) {
    $("plan").replaceChildren(el("p", { class: "message" }, "No changes planned."));
    return;
  }
  const rows = actions.map((a) => el("tr", {},
    el("td", {}, a.type || ""), el("td", { class: "mono" }, a.id || ""), el("td", {}, a.reason || "")));
  $("plan").replaceChildren(el("table", {}, el("tbody", {}, ...rows)));
}

async function refresh() {
  try {
    const [status, objects, plan] = await Promise.all(
      [api("/v1/status"), api("/v1/objects"), api("/v1/plan")]);
    renderStatus(status);
    renderObjects(objects);
    renderPlan(plan);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      $("action-result").textContent = "Could not read hyperd: " + e.message;
    }
  }
}

function scheduleRefresh() {
  if (refreshTimer === null) {
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, 250);
  }
}

// --- events, live -----------------------------------------------------------------------------

function addEvent(e) {
  const li = el("li", { class: "level-" + (e.level || "info") },
    el("span", { class: "since" }, new Date(e.at || Date.now()).toISOString().slice(11, 19) + " "),
    el("strong", {}, e.type || ""), " ",
    e.object ? el("span", { class: "mono" }, e.object + " ") : null,
    e.message || "");
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) {
    list.lastChild.remove();
  }
}

// Server-Sent Events read with fetch, so that the token goes in a header (an EventSource cannot
// send one). Reconnects after a pause, from the last event seen.
async function follow() {
  if (stream) {
    stream.abort();
  }
  const controller = new AbortController();
  stream = controller;
  let after = -1;
  while (stream === controller && token) {
    try {
      const url = after >= 0 ? "/v1/events?after=" + after : "/v1/events?limit=50";
      const res = await fetch(url, {
        headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
        signal: controller.signal,
        cache: "no-store",
      });
      if (res.status === 401) {
        signOut("The token was refused.");
        return;
      }
      if (!res.ok || !res.body) {
        throw new Error("events: HTTP " + res.status);
      }
      $("live").hidden = false;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          const idLine = block.split("\n").find((l) => l.startsWith("id: "));
          if (idLine) {
            after = Math.max(after, Number(idLine.slice(4)));
          }
          if (data) {
            try {
              addEvent(JSON.parse(data));
            } catch (ignored) {
              // a heartbeat or a line that is not an event
            }
            scheduleRefresh();
          }
        }
      }
    } catch (e) {
      if (controller.signal.aborted) {
        return;
      }
    }
    $("live").hidden = true;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// --- actions and logs -------------------------------------------------------------------------

async function act(button, path, body) {
  button.disabled = true;
  $("action-result").textContent = "";
  try {
    const options = { method: "POST" };
    if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers = { "Content-Type": "application/json" };
    }
    await api(path, options);
    $("action-result").textContent = "Done: " + button.textContent.toLowerCase() + ".";
  } catch (e) {
    $("action-result").textContent =
      (e.status === 403 ? "Not allowed with this token: " : "Failed: ") + e.message;
  } finally {
    button.disabled = false;
    scheduleRefresh();
  }
}

async function showLog(kind, name) {
  $("log-panel").hidden = false;
  $("log-title").textContent = (kind === "VM" ? "Console of " : "Log of ") + kind + "/" + name;
  $("log").textContent = "…";
  try {
    $("log").textContent = await api("/v1/logs/" + encodeURIComponent(kind) + "/" + encodeURIComponent(name) + "?bytes=32768");
  } catch (e) {
    $("log").textContent = e.message;
  }
  $("log-panel").scrollIntoView();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("token").value);
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("reconcile").addEventListener("click", (ev) => act(ev.currentTarget, "/v1/reconcile"));
  $("suspend").addEventListener("click", (ev) =>
    act(ev.currentTarget, lastStatus && lastStatus.suspended ? "/v1/resume" : "/v1/suspend"));
  $("approve").addEventListener("click", (ev) => {
    if (lastStatus && lastStatus.held) {
      act(ev.currentTarget, "/v1/approve", { revision: lastStatus.held.revision });
    }
  });
  $("log-close").addEventListener("click", () => { $("log-panel").hidden = true; });
  setInterval(() => { if (token && !$("app").hidden) scheduleRefresh(); }, 15000);
  if (token) {
    signIn(token);
  } else {
    showLogin("");
  }
});

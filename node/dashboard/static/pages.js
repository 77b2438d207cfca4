/* Pages, part 1: Overview, Agents (list and one agent), Consensus. Each page has
   `kinds` (the documents it draws from), `shell(arg)` (drawn once per route) and
   `update(arg, kind)` (drawn on every matching document). Stable data-testid hooks are
   for the browser tests (tests/browser). */
"use strict";

const Pages = {};

/* ---- Overview ---- */
function lastKnown(v) {  // a node that is not up: its last report, not a current fact
  return `<span class="muted" title="last reported before it stopped reporting">${dash(v)}</span>`;
}

Pages.overview = {
  kinds: ["cluster"],
  shell: () => `<div id="page-error"></div>
    <div class="cards" id="totals"></div>
    <h2>Nodes</h2><div id="nodes" class="panel"></div>
    <h2>Alerts firing</h2><div id="alerts" class="panel"></div>
    <h2>NATS servers</h2><div id="nats" class="panel"></div>`,
  update() {
    const doc = state.cluster;
    if (!doc) return setHTML("nodes", `<div class="empty">waiting for the cluster…</div>`);
    const t = doc.totals || {};
    const card = (id, n, label) => `<div class="card" data-testid="total-${id}">
      <div class="n">${dash(n)}</div><div class="l">${esc(label)}</div></div>`;
    setHTML("totals", [card("nodes-up", t.nodes_up, "nodes up"),
      card("nodes-down", t.nodes_down, "nodes down"), card("agents", t.agents, "agents"),
      card("groups", t.groups, "Raft groups"),
      card("auctions-open", t.auctions_open, "auctions open"),
      card("alerts", (doc.alerts || []).length, "alerts firing")].join(""));
    setHTML("nodes", table(["node", "state", "healthy", "ready", "version", "uptime",
                            "last seen", "agents", "problems"],
      (doc.nodes || []).map(n => `<tr data-testid="node-row" data-node-id="${esc(n.id)}"
          data-state="${esc(n.state)}">
        <td><b>${esc(n.id)}</b></td><td>${badge(n.state)}</td>
        <td>${n.state === "up" ? badge(n.healthy) : lastKnown(n.healthy)}</td>
        <td>${n.state === "up" ? badge(n.ready) : lastKnown(n.ready)}</td><td>${dash(n.version)}</td>
        <td>${n.state === "up" ? duration(n.uptime_s) : "—"}</td><td>${when(n.last_seen)}</td>
        <td>${(n.agents || []).length} <span class="muted">${(n.agents || []).map(a =>
          `<a href="#/agents/${encodeURIComponent(a)}">${esc(a)}</a>`).join(", ")}</span></td>
        <td>${Object.entries(n.problems || {}).map(([k, v]) =>
          `<div class="err">${esc(k)}: ${esc(v)}</div>`).join("") || "—"}</td></tr>`),
      "no nodes seen yet"));
    setHTML("alerts", table(["alert", "severity", "summary", "since"],
      (doc.alerts || []).map(a => `<tr data-testid="alert-row" data-alert="${esc(a.name)}">
        <td><b>${esc(a.name)}</b></td><td>${badge(a.severity)}</td><td>${esc(a.summary)}</td>
        <td>${when(a.since)}</td></tr>`), "no alerts firing"));
    setHTML("nats", table(["server", "connected", "version"],
      (doc.nats || []).map(s => `<tr data-testid="nats-row" data-url="${esc(s.url)}">
        <td>${esc(s.url)}</td><td>${badge(s.connected)}</td><td>${dash(s.version)}</td></tr>`),
      "no NATS server reported yet"));
  },
};

/* ---- Agents ---- */
const agentFilter = {capability: "", health: "", node: ""};

function options(values, chosen) {
  return [`<option value="">any</option>`, ...[...new Set(values)].filter(Boolean).sort()
    .map(v => `<option${v === chosen ? " selected" : ""}>${esc(v)}</option>`)].join("");
}

Pages.agents = {
  kinds: ["agents"],
  shell: id => (id ? Pages.agent.shell(id) : `<div id="page-error"></div>
    <div class="filters">
      <label>capability <select id="f-capability" data-testid="filter-capability"></select></label>
      <label>health <select id="f-health" data-testid="filter-health"></select></label>
      <label>node <select id="f-node" data-testid="filter-node"></select></label>
      <span id="agent-count" class="muted"></span>
    </div><div id="agents" class="panel"></div>`),
  update(id, kind) {
    if (id) return Pages.agent.update(id, kind);
    const rows = (state.agents || {}).agents || [];
    for (const key of Object.keys(agentFilter)) {
      const el = document.getElementById(`f-${key}`);
      if (!el) continue;
      const values = key === "capability" ? rows.flatMap(a => a.capabilities || [])
        : rows.map(a => a[key]);
      const html = options(values, agentFilter[key]);
      if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
      el.onchange = () => { agentFilter[key] = el.value; render(null); };
    }
    const shown = rows.filter(a =>
      (!agentFilter.capability || (a.capabilities || []).includes(agentFilter.capability)) &&
      (!agentFilter.health || a.health === agentFilter.health) &&
      (!agentFilter.node || a.node === agentFilter.node));
    setHTML("agent-count", `${shown.length} of ${rows.length}`);
    setHTML("agents", table(["agent", "node", "class", "capabilities", "health", "#in",
                             "#out", "#errors", "#restarts", "#p50 ms", "last heartbeat"],
      shown.map(a => `<tr data-testid="agent-row" data-agent-id="${esc(a.id)}"
          data-health="${esc(a.health)}">
        <td><a href="#/agents/${encodeURIComponent(a.id)}">${esc(a.id)}</a></td>
        <td>${dash(a.node)}</td><td class="muted">${dash(a.class)}</td>
        <td>${(a.capabilities || []).map(c => badge(c, "")).join(" ")}</td>
        <td>${badge(a.health, a.health === "healthy" ? "ok" : a.health ? "bad" : "")}</td>
        <td class="num">${num(a.messages_in)}</td><td class="num">${num(a.messages_out)}</td>
        <td class="num">${num(a.errors)}</td><td class="num">${num(a.restarts)}</td>
        <td class="num">${num(a.latency_ms_p50)}</td><td>${when(a.last_heartbeat)}</td></tr>`),
      rows.length ? "no agent matches the filters" : "no agents registered yet"));
  },
};

/* One agent's page: its document is not streamed, so it is fetched on each agents event
   (at most one request in flight). */
let agentFetch = null;
Pages.agent = {
  kinds: ["agents"],
  shell: id => `<div id="page-error"></div><p><a href="#/agents">← all agents</a></p>
    <h2 data-testid="agent-title">${esc(id)}</h2><div id="agent-detail" class="panel"></div>
    <div class="charts"><div class="chart" id="chart-latency"></div>
      <div class="chart" id="chart-messages"></div></div>`,
  update(id) {
    if (agentFetch) return;
    agentFetch = getJSON(`/agents/${encodeURIComponent(id)}`).then(doc => {
      if (current.arg !== id) return;
      const a = doc.agent;
      setHTML("agent-detail", `<table data-testid="agent-detail" data-agent-id="${esc(a.id)}">
        <tr><th>node</th><td>${dash(a.node)}</td><th>class</th><td>${dash(a.class)}</td></tr>
        <tr><th>health</th><td>${badge(a.health)}</td><th>capabilities</th>
          <td>${esc((a.capabilities || []).join(", "))}</td></tr>
        <tr><th>messages in / out</th><td>${num(a.messages_in)} / ${num(a.messages_out)}</td>
          <th>errors / restarts</th><td>${num(a.errors)} / ${num(a.restarts)}</td></tr>
        <tr><th>latency p50</th><td>${num(a.latency_ms_p50)} ms</td><th>registered</th>
          <td>${when(a.registered_at)}</td></tr></table>`);
      const h = doc.latency_histogram || {};
      Charts.histogram("chart-latency", "handling latency (requests per bucket)",
                       h.le || [], h.counts || []);
      const s = doc.series || {};
      Charts.lines("chart-messages", "messages (cumulative)", [
        {label: "in", points: s.messages_in || []},
        {label: "out", points: s.messages_out || []},
        {label: "errors", points: s.errors || []}]);
    }).catch(err => setHTML("agent-detail", `<p class="err" data-testid="agent-error">${
      esc(err.message)}</p>`)).finally(() => { agentFetch = null; });
  },
};

/* ---- Consensus ---- */
Pages.consensus = {
  kinds: ["groups"],
  shell: () => `<div id="page-error"></div><div class="charts">
      <div class="chart" id="chart-elections"></div></div><div id="groups"></div>`,
  update() {
    const groups = (state.groups || {}).groups || [];
    setHTML("groups", groups.length ? groups.map(g => `<div class="panel"
        data-testid="group-card" data-group="${esc(g.group)}" data-leader="${esc(g.leader)}">
      <h3>${esc(g.group)} — leader <b data-testid="group-leader">${dash(g.leader)}</b>,
        term ${dash(g.term)}, commit ${dash(g.commit_index)}, applied ${dash(g.applied_index)}</h3>
      ${table(["member", "role", "up", "#term", "#commit", "#applied"], (g.members || []).map(m =>
        `<tr data-testid="member-row" data-member="${esc(m.id)}" data-role="${esc(m.role)}">
          <td>${esc(m.id)}</td><td>${badge(m.role)}</td><td>${badge(m.up)}</td>
          <td class="num">${dash(m.term)}</td><td class="num">${dash(m.commit_index)}</td>
          <td class="num">${dash(m.applied_index)}</td></tr>`))}
      <details data-key="elections-${esc(g.group)}"><summary>${(g.elections || []).length} election(s)</summary>
      ${table(["at", "#term", "leader"], (g.elections || []).slice().reverse().map(e =>
        `<tr><td>${when(e.at)}</td><td class="num">${dash(e.term)}</td>
         <td>${dash(e.leader)}</td></tr>`))}</details></div>`).join("")
      : `<div class="empty">no Raft group reported yet</div>`);
    Charts.lines("chart-elections", "elections over time (term)", groups.map(g => ({
      label: g.group, points: (g.elections || []).map(e => [e.at, e.term])})), {points: true});
  },
};

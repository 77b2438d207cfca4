/* Pages, part 2: Auctions, Money, Coordination, Variables (see pages.js for the shape).
   Balances over time are sampled here from the accounts documents as they arrive: the
   API gives the current balances, the page keeps their trajectory since it opened. */
"use strict";

/* ---- Auctions ---- */
function bidsCell(a) {
  const bids = a.bids || [];
  if (a.sealed && a.state === "open") return `<span class="muted">sealed until close</span>`;
  if (!bids.length) return "—";
  return `<details data-key="bids-${esc(a.id)}"><summary>${bids.length} bid(s)</summary>${table(["bidder", "#amount", "at"],
    bids.map(b => `<tr data-testid="bid-row"><td>${esc(b.bidder)}</td>
      <td class="num">${num(b.amount)}</td><td>${when(b.at)}</td></tr>`))}</details>`;
}

Pages.auctions = {
  kinds: ["auctions"],
  shell: () => `<div id="page-error"></div><h2>Live</h2><div id="auctions-live" class="panel"></div>
    <h2>Recent</h2><div id="auctions-done" class="panel"></div>`,
  update() {
    const rows = (state.auctions || {}).auctions || [];
    const row = a => `<tr data-testid="auction-row" data-auction-id="${esc(a.id)}"
        data-state="${esc(a.state)}" data-winner="${esc(a.winner)}">
      <td title="${esc(a.id)}">${esc(String(a.id ?? "").slice(0, 12))}</td><td>${dash(a.kind)}
        ${a.sealed ? `<span class="muted">sealed</span>` : ""}</td><td>${dash(a.item)}</td>
      <td>${dash(a.seller)}</td><td>${badge(a.state)}</td><td>${when(a.opened_at)}</td>
      <td>${when(a.closed_at)}</td><td class="num">${dash(a.rounds)}</td><td>${bidsCell(a)}</td>
      <td data-testid="auction-winner">${dash(a.winner)}</td><td class="num">${num(a.price)}</td>
      <td>${a.settlement ? badge(a.settlement) : "—"}${a.failure
        ? `<div class="err">${esc(typeof a.failure === "string" ? a.failure
                                  : JSON.stringify(a.failure))}</div>` : ""}</td></tr>`;
    const heads = ["auction", "kind", "item", "seller", "state", "opened", "closed",
                   "#rounds", "bids", "winner", "#price", "settlement"];
    setHTML("auctions-live", table(heads, rows.filter(a => a.state === "open").map(row),
                                   "no auction open"));
    setHTML("auctions-done", table(heads, rows.filter(a => a.state !== "open").map(row),
                                   "no finished auction yet"));
  },
};

/* ---- Money ---- */
const balanceHistory = new Map();  // account -> [[t, balance], ...] since the page opened
const HISTORY_MAX = 600;

Pages.observe = (kind, doc) => {
  if (kind !== "accounts") return;
  const t = Date.now() / 1000;
  for (const a of doc.accounts || []) {
    const points = balanceHistory.get(a.id) || [];
    points.push([t, a.balance]);
    if (points.length > HISTORY_MAX) points.shift();
    balanceHistory.set(a.id, points);
  }
};

Pages.money = {
  kinds: ["accounts"],
  shell: () => `<div id="page-error"></div><div class="cards" id="money-totals"></div>
    <div class="charts"><div class="chart" id="chart-balances"></div></div>
    <h2>Accounts</h2><div id="accounts" class="panel"></div>
    <h2>Recent transfers</h2><div id="transfers" class="panel"></div>`,
  update() {
    const doc = state.accounts;
    if (!doc) return setHTML("accounts", `<div class="empty">waiting for accounts…</div>`);
    const c = doc.conserved;
    setHTML("money-totals", `
      <div class="card"><div class="n">${num(doc.total_balance)}</div><div class="l">total balance</div></div>
      <div class="card"><div class="n">${num(doc.total_held)}</div><div class="l">held in escrow</div></div>
      <div class="card"><div class="n">${num(doc.issued)}</div><div class="l">issued (deposits − withdrawals)</div></div>
      <div class="card" data-testid="conservation" data-conserved="${esc(c)}"><div class="n">${
        c === null || c === undefined ? "—" : c ? "conserved" : "MISMATCH"}</div>
        <div class="l">money conservation</div></div>`);
    setHTML("accounts", table(["account", "#balance", "#held"], (doc.accounts || []).map(a =>
      `<tr data-testid="account-row" data-account="${esc(a.id)}"><td>${esc(a.id)}</td>
       <td class="num">${num(a.balance)}</td><td class="num">${num(a.held)}</td></tr>`),
      "no accounts yet"));
    setHTML("transfers", table(["at", "from", "to", "#amount", "auction"],
      (doc.transfers || []).map(x => `<tr data-testid="transfer-row"><td>${when(x.at)}</td>
        <td>${dash(x.from)}</td><td>${dash(x.to)}</td><td class="num">${num(x.amount)}</td>
        <td class="muted">${dash(x.auction)}</td></tr>`), "no transfers yet"));
    const now = Date.now() / 1000;  // each balance holds until the next document: draw it so
    Charts.lines("chart-balances", "balances since this page opened",
      [...balanceHistory].map(([id, points]) => ({
        label: id, points: [...points, [now, points[points.length - 1][1]]]})));
  },
};

/* ---- Coordination ---- */
function answerItem(a) {
  const what = a.error ? `<span class="err">${esc(a.error)}</span>`
    : a.answer === null || a.answer === undefined ? `<span class="muted">no answer</span>`
    : esc(typeof a.answer === "string" ? a.answer : JSON.stringify(a.answer));
  return `<li data-testid="answer" data-participant="${esc(a.participant)}"
    data-status="${esc(a.status)}"><b>${esc(a.participant)}</b>: ${what}</li>`;
}

/** Answers as a list; hierarchical runs (answers carry level and cluster) as a tree. */
function answersList(run) {
  const answers = run.answers || [];
  if (!answers.length) return "—";
  if (!answers.some(a => a.level !== undefined && a.level !== null)) {
    return `<ul class="tree">${answers.map(answerItem).join("")}</ul>`;
  }
  const levels = new Map();  // level -> cluster -> answers
  for (const a of answers) {
    if (!levels.has(a.level)) levels.set(a.level, new Map());
    const clusters = levels.get(a.level);
    if (!clusters.has(a.cluster)) clusters.set(a.cluster, []);
    clusters.get(a.cluster).push(a);
  }
  return `<ul class="tree" data-testid="hierarchy">${[...levels].map(([level, clusters]) =>
    `<li>level ${esc(level)}<ul class="tree">${[...clusters].map(([cluster, items]) =>
      `<li>cluster ${esc(cluster)}<ul class="tree">${items.map(answerItem).join("")}</ul></li>`)
      .join("")}</ul></li>`).join("")}</ul>`;
}

const GOOD = new Set(["ok", "decided", "committed", "accepted", "agreed"]);

function runsTable(runs, emptyText) {
  return table(["at", "run", "proposal", "outcome", "#ms", "answers"], runs.map(r =>
    `<tr data-testid="coord-run" data-protocol="${esc(r.protocol)}" data-outcome="${esc(r.outcome)}">
      <td>${when(r.at)}</td><td class="muted" title="${esc(r.id)}">${esc(String(r.id ?? "")
        .slice(0, 12))}${r.coordinator ? `<br>by ${esc(r.coordinator)}` : ""}</td>
      <td>${esc(typeof r.proposal === "string" ? r.proposal : JSON.stringify(r.proposal ?? null))}</td>
      <td>${badge(r.outcome, GOOD.has(r.outcome) ? "ok" : r.outcome ? "bad" : "")}</td>
      <td class="num">${num(r.duration_ms, 1)}</td><td>${answersList(r)}</td></tr>`), emptyText);
}

Pages.coordination = {
  kinds: ["coordination"],
  shell: () => `<div id="page-error"></div><h2>Votes</h2><div id="votes" class="panel"></div>
    <h2>PBFT runs</h2><div id="pbft" class="panel"></div>
    <h2>Hierarchical</h2><div id="hierarchical" class="panel"></div>`,
  update() {
    const doc = state.coordination || {};
    setHTML("votes", runsTable(doc.votes || [], "no vote yet"));
    setHTML("pbft", runsTable(doc.pbft || [], "no PBFT run yet"));
    setHTML("hierarchical", runsTable(doc.hierarchical || [], "no hierarchical run yet"));
  },
};

/* ---- Variables ---- */
Pages.variables = {
  kinds: ["variables"],
  shell: () => `<div id="page-error"></div><div id="spaces"></div>`,
  update() {
    const spaces = (state.variables || {}).spaces || [];
    setHTML("spaces", spaces.length ? spaces.map((s, i) => `<div class="panel"
        data-testid="space-card" data-space="${esc(s.space)}"><h3>${esc(s.space)}</h3>
      ${table(["variable", "value", "frozen"], (s.variables || []).map(v =>
        `<tr data-testid="variable-row" data-variable="${esc(v.name)}"><td>${esc(v.name)}</td>
         <td>${esc(JSON.stringify(v.value))}</td><td>${v.frozen ? badge("frozen", "warning")
           : "—"}</td></tr>`), "no variables")}
      <div class="charts"><div class="chart" id="chart-history-${i}"></div>
        <div class="chart" id="chart-trials-${i}"></div></div></div>`).join("")
      : `<div class="empty">no variable space yet</div>`);
    spaces.forEach((s, i) => {
      Charts.lines(`chart-history-${i}`, "variable history", (s.variables || []).map(v =>
        ({label: v.name, points: v.history || []})));
      const byVar = new Map();
      for (const t of s.trials || []) {
        if (!byVar.has(t.variable)) byVar.set(t.variable, []);
        byVar.get(t.variable).push([t.at, t.score]);
      }
      Charts.lines(`chart-trials-${i}`, "adaptation trials (score)",
        [...byVar].map(([label, points]) => ({label, points})), {points: true});
    });
  },
};

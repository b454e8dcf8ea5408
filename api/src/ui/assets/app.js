// Ork web UI: plain modern JavaScript, no build step, no dependencies.
// Pages (hash routes): #/runs, #/runs/<id>, #/workflows, #/workflows/<name>, #/login.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
const STATUSES = ["pending", "running", "success", "failed", "cancelled"];
const TRIGGERS = ["manual", "http", "schedule", "backfill"];
const TASK_STATUSES = ["pending", "dispatched", "running", "success", "failed", "skipped", "cancelled"];
let live = null; // what the current page runs in the background (timer, EventSource)

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function h(html) { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content; }
function badge(status) { return `<span class="badge s-${esc(status)}">${esc(status)}</span>`; }
function toast(msg) { const t = $("#toast"); t.textContent = msg; t.hidden = false; clearTimeout(toast.t); toast.t = setTimeout(() => (t.hidden = true), 4000); }

class AuthError extends Error {}
async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts,
    headers: { "Content-Type": "application/json", ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (r.status === 401) throw new AuthError(body?.error || "log in first");
  if (!r.ok) throw new Error(body?.error || `${r.status} ${r.statusText}`);
  return body;
}

// ---- times ----
function time(t) {
  if (!t) return "";
  const d = new Date(t), s = (Date.now() - d) / 1000;
  const rel = s < 60 ? `${Math.max(0, Math.round(s))}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago`
    : s < 86400 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`;
  return `<span title="${esc(d.toLocaleString())}">${esc(rel)}</span>`;
}
function duration(a, b) {
  if (!a) return "";
  let s = ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
  if (s < 0) s = 0;
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 60) return `${s.toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
}
// A cost in USD, as the run page and the runs list show it; "—" while open.
function usd(v) { return v == null ? "—" : `$${v.toFixed(6)}`; }
function progress(run) {
  const done = run.tasks_total - run.tasks_open, pct = run.tasks_total ? (100 * done) / run.tasks_total : 0;
  return `<span class="progress"><span style="width:${pct}%"></span></span>${done}/${run.tasks_total}`;
}

// ---- session ----
let session = { auth_required: false, authenticated: true };
async function refreshSession() {
  session = await api("/api/session");
  const el = $("#session");
  if (!session.auth_required) el.innerHTML = `<span class="muted">no API key set</span>`;
  else if (session.authenticated) el.innerHTML = `<button id="logout-btn">Log out</button>`;
  else el.innerHTML = `<a href="#/login" id="login-link">Log in</a>`;
  const out = $("#logout-btn");
  if (out) out.onclick = async () => { await api("/logout", { method: "POST" }); await refreshSession(); location.hash = "#/login"; };
}

function loginPage(next) {
  main().innerHTML = `<form class="card login" id="login-form">
    <h1>Log in</h1><p class="muted">This server requires its API key (ORK_API_KEY).</p>
    <label>API key<input type="password" id="login-key" autocomplete="current-password" required></label>
    <button type="submit" id="login-btn">Log in</button> <span id="login-error" class="muted"></span></form>`;
  $("#login-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      await api("/login", { method: "POST", body: JSON.stringify({ key: $("#login-key").value }) });
      await refreshSession();
      const target = next && next !== "#/login" ? next : "#/runs";
      if (location.hash === target) route(); else location.hash = target;
    } catch (err) { $("#login-error").textContent = err.message; }
  };
}

// ---- runs list ----
async function runsPage(params) {
  const q = new URLSearchParams(params);
  const page = Number(q.get("page") || 0), size = 25;
  let workflows = [];
  try { workflows = await api("/api/workflows"); } catch (e) { if (e instanceof AuthError) throw e; }
  const opt = (list, cur) => `<option value="">all</option>` + list.map((v) => `<option ${v === cur ? "selected" : ""}>${esc(v)}</option>`).join("");
  main().innerHTML = `<h1>Runs</h1>
    <div class="filters">
      <label>Workflow <select id="f-workflow">${opt(workflows.map((w) => w.name), q.get("workflow"))}</select></label>
      <label>Status <select id="f-status">${opt(STATUSES, q.get("status"))}</select></label>
      <label>Trigger <select id="f-trigger">${opt(TRIGGERS, q.get("trigger"))}</select></label>
    </div>
    <div class="card"><table id="runs"><thead><tr><th>Run</th><th>Workflow</th><th>Status</th><th>Trigger</th>
      <th>Progress</th><th>Started</th><th>Duration</th><th>Cost</th></tr></thead><tbody></tbody></table>
      <div class="pager"><button class="secondary" id="prev">‹ Newer</button><span id="page-no" class="muted"></span>
      <button class="secondary" id="next">Older ›</button></div></div>`;
  const go = (changes) => {
    const n = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) v === "" || v === null ? n.delete(k) : n.set(k, v);
    location.hash = "#/runs?" + n.toString();
  };
  for (const f of ["workflow", "status", "trigger"]) $(`#f-${f}`).onchange = (e) => go({ [f]: e.target.value, page: null });
  $("#prev").onclick = () => go({ page: Math.max(0, page - 1) || null });
  $("#next").onclick = () => go({ page: page + 1 });
  const load = async () => {
    const a = new URLSearchParams({ limit: size + 1, offset: page * size });
    for (const f of ["workflow", "status", "trigger"]) if (q.get(f)) a.set(f, q.get(f));
    const runs = await api("/api/runs?" + a);
    $("#runs tbody").innerHTML = runs.slice(0, size).map((r) => `<tr class="link run" data-id="${r.id}" data-status="${r.status}">
      <td><a href="#/runs/${r.id}">${r.id.slice(-8)}</a></td><td>${esc(r.workflow)} <span class="muted">v${r.version}</span></td>
      <td>${badge(r.status)}</td><td>${esc(r.trigger)}</td><td>${progress(r)}</td><td>${time(r.created_at)}</td>
      <td>${duration(r.created_at, r.finished_at)}</td>
      <td class="cost" title="${r.cost_usd != null ? "what the run cost (its attempts and control-plane invocations)"
        : ["pending", "running"].includes(r.status) ? "known when the run ends" : "not stored (the run ended before costs were): see the run's page"}">${usd(r.cost_usd)}</td></tr>`).join("") || `<tr><td colspan="8" class="muted">No runs.</td></tr>`;
    for (const tr of document.querySelectorAll("#runs tr.run")) tr.onclick = () => (location.hash = `#/runs/${tr.dataset.id}`);
    $("#prev").disabled = page === 0; $("#next").disabled = runs.length <= size;
    $("#page-no").textContent = `page ${page + 1}`;
  };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 3000);
  live = { stop: () => clearInterval(timer) };
}

// ---- the DAG ----
function dagSvg(graph, counts) {
  const { nodes, edges, width, height, node_w: w, node_h: nh } = graph;
  const at = Object.fromEntries(nodes.map((n) => [n.name, n]));
  const paths = edges.map(([a, b]) => {
    const p = at[a], c = at[b]; if (!p || !c) return "";
    const x1 = p.x + w, y1 = p.y + nh / 2, x2 = c.x, y2 = c.y + nh / 2, mx = (x1 + x2) / 2;
    return `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}" marker-end="url(#arrow)"/>`;
  }).join("");
  const boxes = nodes.map((n) => {
    const total = n.task_count || 1, c = counts ? n.counts || {} : {};
    let bar = "", x = 0;
    if (counts) for (const s of TASK_STATUSES) {
      const k = c[s] || 0; if (!k) continue;
      const bw = (w * k) / total;
      bar += `<rect x="${x}" y="${nh - 6}" width="${bw}" height="6" fill="var(--${s})"><title>${s}: ${k}</title></rect>`; x += bw;
    }
    const status = counts ? n.status : "pending";
    const sub = total > 1
      ? `×${total}` + (counts ? " · " + TASK_STATUSES.filter((s) => c[s]).map((s) => `${c[s]} ${s}`).join(", ") : "")
      : (counts ? status : n.executor || "");
    return `<g class="node" data-name="${esc(n.name)}" data-status="${esc(status)}" data-count="${total}" transform="translate(${n.x},${n.y})">
      <rect class="box" width="${w}" height="${nh}"/>
      <rect x="0" y="0" width="6" height="${nh}" rx="3" fill="var(--${counts ? status : "line"})"/>
      <text x="14" y="22" font-weight="600">${esc(n.name.length > 22 ? n.name.slice(0, 21) + "…" : n.name)}</text>
      <text x="14" y="40" class="muted" fill="#6b7280">${esc(sub.length > 28 ? sub.slice(0, 27) + "…" : sub)}</text>
      ${bar}<title>${esc(n.name)}: ${esc(sub)}</title></g>`;
  }).join("");
  return `<svg id="dag" style="max-width:100%;height:auto" width="${Math.max(width, 200)}" height="${Math.max(height, 80)}" viewBox="0 0 ${Math.max(width, 200)} ${Math.max(height, 80)}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="4" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>${paths}${boxes}</svg>`;
}

// ---- the Gantt ----
function ganttSvg(rows, t0, t1) {
  const W = Math.max(480, ($("#gantt-box")?.clientWidth || 860) - 4), L = 170, RH = 22, span = Math.max(1, t1 - t0);
  const X = (t) => L + ((W - L - 10) * (t - t0)) / span;
  let body = "";
  rows.forEach((r, i) => {
    const y = 20 + i * RH;
    body += `<text class="gantt-label" x="4" y="${y + 14}">${esc(r.label.length > 24 ? r.label.slice(0, 23) + "…" : r.label)}</text>`;
    for (const a of r.segments) {
      const q = a.queued ?? a.started ?? a.ended; if (q == null) continue;
      const s = a.started ?? a.ended ?? t1, e = a.ended ?? t1;
      body += `<rect class="queued" x="${X(q)}" y="${y + 5}" width="${Math.max(1, X(s) - X(q))}" height="10" fill="#e5e7eb"/>`;
      if (a.started != null) body += `<rect class="attempt" data-status="${esc(a.status)}" x="${X(s)}" y="${y + 3}" width="${Math.max(2, X(e) - X(s))}" height="14" rx="3" fill="var(--${a.status === "retried" ? "cancelled" : a.status})"><title>${esc(r.label)} attempt ${a.attempt ?? ""}: ${esc(a.status)} ${duration(new Date(s), new Date(e))}</title></rect>`;
    }
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${L + (W - L - 10) * f - 10}" y="12" fill="#6b7280">+${duration(new Date(t0), new Date(t0 + span * f))}</text>`).join("");
  return `<svg id="gantt" width="${W}" height="${30 + rows.length * RH}">${ticks}${body}</svg>`;
}

async function ganttRows(run, summary) {
  const ts = (v) => (v ? new Date(v).getTime() : null);
  if (run.tasks_total <= 200) {
    const [{ tasks }, events] = [await api(`/api/runs/${run.id}/tasks?limit=200`), []];
    let after = 0;
    for (let i = 0; i < 10; i++) {
      const page = (await api(`/api/runs/${run.id}/events?after=${after}&limit=1000`)).events;
      events.push(...page); if (page.length < 1000) break; after = page[page.length - 1].id;
    }
    const label = Object.fromEntries(tasks.map((t) => [t.id, t.task_count > 1 ? `${t.name}[${t.task_index}]` : t.name]));
    const rows = {};
    for (const e of events) {
      if (!e.task_id || !e.attempt) continue;
      const r = (rows[e.task_id] ||= { label: label[e.task_id] || e.task_id.slice(-8), attempts: {} });
      const a = (r.attempts[e.attempt] ||= { attempt: e.attempt, status: "dispatched" });
      if (e.status === "dispatched") a.queued = ts(e.at);
      else if (e.status === "running") { a.started = ts(e.at); a.status = "running"; }
      else { a.ended = ts(e.at); a.status = e.status === "pending" ? "retried" : e.status; }
    }
    const first = (id) => Math.min(...Object.values(rows[id].attempts).map((a) => a.queued ?? a.started ?? Infinity));
    const order = tasks.map((t) => t.id).filter((id) => rows[id]).sort((a, b) => first(a) - first(b));
    return order.map((id) => ({ label: rows[id].label, segments: Object.values(rows[id].attempts) }));
  }
  // Large runs: one bar per task name, from its first queued to its last end.
  return summary.nodes.filter((n) => n.ready_at).map((n) => ({
    label: `${n.name}${n.task_count > 1 ? " ×" + n.task_count : ""}`,
    segments: [{ queued: ts(n.ready_at), started: ts(n.started_at), ended: ts(n.finished_at), status: n.status }],
  }));
}

// ---- run detail ----
async function runPage(id) {
  main().innerHTML = `<div id="run-head"></div><div class="grid"><div>
      <div class="card"><h2 style="margin-top:0">Graph</h2><div id="dag-box"></div></div>
      <div class="card"><h2 style="margin-top:0">Timeline</h2><div id="gantt-box"><span class="muted">…</span></div></div>
      <div class="card"><h2 style="margin-top:0">Events</h2><div id="events-box"></div></div>
    </div><div><div class="card" id="panel"><p class="muted">Select a task in the graph.</p></div></div></div>`;
  let selected = null, lastGantt = 0, summary = null, stopped = false;
  const render = async () => {
    summary = await api(`/api/runs/${id}/summary`);
    const run = summary.run, final = ["success", "failed", "cancelled"].includes(run.status);
    $("#run-head").innerHTML = `<h1>${esc(run.workflow)} <span class="muted">v${run.version}</span> · run ${run.id.slice(-8)}
      <span id="run-status" data-status="${run.status}">${badge(run.status)}</span></h1>
      <div class="muted">trigger ${esc(run.trigger)} · started ${time(run.created_at)} · ${duration(run.created_at, run.finished_at)} · ${progress(run)}
      · cost <span id="run-cost" title="${summary.cost.invocations} control-plane invocations">${usd(summary.cost.total_usd)}</span>
      ${run.error ? ` · <span style="color:var(--failed)">${esc(run.error)}</span>` : ""}</div>
      <div class="actions"><button class="danger" id="cancel-btn" ${final ? "disabled" : ""}>Cancel run</button>
      <button class="secondary" id="retry-btn" ${["failed", "cancelled"].includes(run.status) ? "" : "disabled"} title="Run the failed, cancelled and skipped tasks again; successes are kept">Retry failed tasks</button>
      <a href="#/workflows/${encodeURIComponent(run.workflow)}">workflow</a></div>`;
    $("#cancel-btn").onclick = async () => {
      if (!confirm("Cancel this run?")) return;
      try { await api(`/api/runs/${id}/cancel`, { method: "POST" }); toast("run cancelled"); await render(); }
      catch (e) { toast(e.message); }
    };
    $("#retry-btn").onclick = async () => {
      try {
        const r = await api(`/api/runs/${id}/retry`, { method: "POST" });
        toast(`run reopened: ${r.tasks} task(s) to run again`);
        // The page follows a live run from its start: open it again.
        if (live) live.stop();
        await runPage(id);
      } catch (e) { toast(e.message); }
    };
    $("#dag-box").innerHTML = dagSvg(summary, true);
    for (const g of document.querySelectorAll("#dag .node")) {
      g.classList.toggle("selected", g.dataset.name === selected);
      g.onclick = () => { selected = g.dataset.name; showGroup(id, selected, summary); render(); };
    }
    if (Date.now() - lastGantt > 1500 || final) {
      lastGantt = Date.now();
      const rows = await ganttRows(run, summary);
      const starts = rows.flatMap((r) => r.segments.map((s) => s.queued ?? s.started)).filter((x) => x != null);
      const t0 = Math.min(new Date(run.created_at).getTime(), ...starts);
      const t1 = run.finished_at ? new Date(run.finished_at).getTime() : Date.now();
      $("#gantt-box").innerHTML = rows.length ? ganttSvg(rows, t0, Math.max(t1, t0 + 1)) : `<span class="muted">Nothing has started yet.</span>`;
      const ev = (await api(`/api/runs/${id}/events?limit=50`)).events;
      $("#events-box").innerHTML = `<table><tbody>${ev.filter((e) => !e.task_id).concat(ev.filter((e) => e.task_id).slice(-20))
        .sort((a, b) => a.id - b.id).map((e) => `<tr><td>${time(e.at)}</td><td>${badge(e.status)}</td><td>${e.task_id ? "task " + e.task_id.slice(-8) + " #" + e.attempt : "run"}</td><td>${esc(e.detail || "")}</td></tr>`).join("")}</tbody></table>`;
    }
    return final;
  };
  const final = await render();
  let es = null, pending = false, poll = null;
  main().dataset.live = final ? "done" : "streaming";
  if (!final) {
    es = new EventSource(`/api/runs/${id}/stream`);
    const refresh = async () => {
      if (pending || stopped) return; pending = true;
      try { await render(); if (selected) showGroup(id, selected, summary, true); } finally { pending = false; }
    };
    // Behind a proxy that buffers responses (a Lambda Function URL), the
    // stream delivers nothing until it ends: poll while it is silent.
    let heard = Date.now();
    poll = setInterval(() => { if (Date.now() - heard > 4000 && main().dataset.live !== "done") refresh(); }, 4000);
    es.addEventListener("change", () => { heard = Date.now(); refresh(); });
    es.addEventListener("end", () => clearInterval(poll));
    es.addEventListener("end", async () => {
      es.close(); lastGantt = 0;
      while (pending) await new Promise((r) => setTimeout(r, 50));
      await refresh(); main().dataset.live = "done";
    });
  }
  live = { stop: () => { stopped = true; clearInterval(poll); if (es) es.close(); } };
}

let groupPage = 0;
async function showGroup(runId, name, summary, quiet) {
  const node = summary.nodes.find((n) => n.name === name);
  if (!node) return;
  if (!quiet) groupPage = 0;
  const size = 50, statusSel = $("#g-status")?.value || "";
  const page = await api(`/api/runs/${runId}/tasks?name=${encodeURIComponent(name)}&limit=${size}&offset=${groupPage * size}${statusSel ? "&status=" + statusSel : ""}`);
  if (node.task_count <= 1 && page.tasks.length === 1) {
    if (!quiet || $("#panel").dataset.task === page.tasks[0].id) return showTask(runId, page.tasks[0].id, summary.run, quiet);
    return;
  }
  $("#panel").dataset.task = "";
  $("#panel").innerHTML = `<h2 style="margin-top:0">${esc(name)} <span class="muted">×${node.task_count}</span></h2>
    <div class="muted">${TASK_STATUSES.filter((s) => node.counts[s]).map((s) => `${badge(s)} ${node.counts[s]}`).join(" ")}</div>
    <div class="filters" style="margin-top:10px"><label>Status <select id="g-status"><option value="">all</option>${TASK_STATUSES.map((s) => `<option ${s === statusSel ? "selected" : ""}>${s}</option>`).join("")}</select></label></div>
    <table id="instances"><thead><tr><th>#</th><th>Status</th><th>Attempt</th><th>Duration</th></tr></thead><tbody>
    ${page.tasks.map((t) => `<tr class="link instance" data-id="${t.id}"><td>${t.task_index}</td><td>${badge(t.status)}</td><td>${t.attempt}/${t.max_attempts}</td><td>${duration(t.started_at, t.finished_at)}</td></tr>`).join("")}
    </tbody></table><div class="pager"><button class="secondary" id="g-prev" ${groupPage ? "" : "disabled"}>‹</button>
    <span class="muted">${page.total ? page.offset + 1 : 0}–${page.offset + page.tasks.length} of ${page.total}</span>
    <button class="secondary" id="g-next" ${page.offset + page.tasks.length < page.total ? "" : "disabled"}>›</button></div>`;
  $("#g-status").onchange = () => { groupPage = 0; showGroup(runId, name, summary, true); };
  $("#g-prev").onclick = () => { groupPage--; showGroup(runId, name, summary, true); };
  $("#g-next").onclick = () => { groupPage++; showGroup(runId, name, summary, true); };
  for (const tr of document.querySelectorAll("#instances tr.instance")) tr.onclick = () => showTask(runId, tr.dataset.id, summary.run);
}

async function showTask(runId, taskId, run, quiet) {
  const d = await api(`/api/runs/${runId}/tasks/${taskId}`);
  const t = d.task, panel = $("#panel");
  const keepAttempt = quiet && panel.dataset.task === taskId ? Number($("#log-attempt")?.value) : null;
  const attempt = keepAttempt || t.attempt;
  panel.dataset.task = taskId;
  panel.innerHTML = `<h2 style="margin-top:0" id="task-title">${esc(d.label)} ${badge(t.status)}</h2>
    <table class="kv"><tbody><tr><td>executor</td><td>${esc(t.executor)}</td></tr>
    <tr><td>attempt</td><td>${t.attempt} of ${t.max_attempts}</td></tr>
    <tr><td>exit code</td><td>${t.exit_code ?? ""}</td></tr>
    ${t.error ? `<tr><td>error</td><td style="white-space:normal;color:var(--failed)">${esc(t.error)}</td></tr>` : ""}
    <tr><td>duration</td><td>${duration(t.started_at, t.finished_at)}</td></tr></tbody></table>
    <h2>Attempts</h2><table id="attempts"><thead><tr><th>#</th><th>Status</th><th>Queued</th><th>Ran</th><th>Exit</th><th>Error</th></tr></thead><tbody>
    ${d.attempts.map((a) => `<tr><td>${a.attempt}</td><td>${badge(a.status)}</td><td>${time(a.queued_at)}</td><td>${duration(a.started_at, a.ended_at)}</td><td>${a.exit_code ?? ""}</td><td style="white-space:normal">${esc(a.error || "")}</td></tr>`).join("")}
    </tbody></table>
    <h2>Log <select id="log-attempt">${d.attempts.map((a) => `<option ${a.attempt === attempt ? "selected" : ""}>${a.attempt}</option>`).join("")}</select></h2>
    <div id="log-box"><span class="muted">${t.attempt ? "…" : "not started"}</span></div>
    <h2>Input</h2><pre id="task-input">${esc(JSON.stringify(d.input ?? { params: run.params }, null, 2))}</pre>
    <h2>Output ${d.download ? `<a id="output-download" class="small" href="${esc(d.download)}" download>download</a>` : ""}</h2>
    ${d.output_ref ? `<p class="muted" id="output-ref">A large output, kept by reference: ${esc(bytes(d.output_ref.size))}, sha256 <code>${esc(d.output_ref.sha256.slice(0, 16))}…</code></p>`
      : `<pre id="task-output">${esc(t.output == null ? "—" : JSON.stringify(t.output, null, 2))}</pre>`}
    <h2>Events</h2><table><tbody>${d.events.map((e) => `<tr><td>${time(e.at)}</td><td>#${e.attempt ?? ""}</td><td>${badge(e.status)}</td><td style="white-space:normal">${esc(e.detail || "")}</td></tr>`).join("")}</tbody></table>`;
  const showLog = async (n) => {
    if (!n) return;
    const l = await api(`/api/runs/${runId}/tasks/${taskId}/log?attempt=${n}`);
    $("#log-box").innerHTML = l.log != null ? `${l.truncated ? '<div class="muted">(the end of the log)</div>' : ""}<pre id="log">${esc(l.log) || "(empty)"}</pre>`
      : `<p class="muted" id="log-note">${esc(l.note)}${l.execution_id ? ` <code>${esc(l.execution_id)}</code>` : ""}
         ${l.console_url ? `<br><a id="log-console" href="${esc(l.console_url)}" target="_blank" rel="noopener">open the log in ${l.executor === "cloudrun" ? "Cloud Logging" : "the AWS console (CloudWatch Logs)"}</a>` : ""}</p>`;
  };
  $("#log-attempt").onchange = (e) => showLog(Number(e.target.value));
  if (t.attempt) await showLog(attempt);
}

// ---- workflows ----
async function workflowsPage() {
  const list = await api("/api/workflows");
  main().innerHTML = `<h1>Workflows</h1><div class="card"><table id="workflows"><thead><tr><th>Name</th><th>Version</th>
    <th>Tasks</th><th>Schedule</th><th>Next run</th><th>Updated</th></tr></thead><tbody>
    ${list.map((w) => `<tr class="link wf" data-name="${esc(w.name)}"><td><a href="#/workflows/${encodeURIComponent(w.name)}">${esc(w.name)}</a>${w.paused ? ' <span class="badge paused">paused</span>' : ""}
      <div class="muted">${esc(w.description || "")}</div></td><td>v${w.latest_version}</td><td>${w.tasks}</td>
      <td>${w.schedule ? `<code>${esc(w.schedule.cron)}</code> ${esc(w.schedule.timezone || "")}` : '<span class="muted">—</span>'}</td>
      <td>${w.schedule?.next?.[0] ? esc(new Date(w.schedule.next[0]).toLocaleString()) : ""}</td><td>${time(w.updated_at)}</td></tr>`).join("")
      || `<tr><td colspan="6" class="muted">No workflows: apply one with <code>ork apply</code>.</td></tr>`}</tbody></table></div>`;
  for (const tr of document.querySelectorAll("#workflows tr.wf")) tr.onclick = () => (location.hash = `#/workflows/${encodeURIComponent(tr.dataset.name)}`);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// A JSON Schema's type as one short text: `list[User]`, `str | null`, `User`.
function typeName(s, root, depth = 0) {
  if (!s || depth > 8) return "any";
  if (s.$ref) {
    const name = s.$ref.split("/").pop();
    return name;
  }
  const alts = s.anyOf || s.oneOf;
  if (alts) return alts.map((a) => typeName(a, root, depth + 1)).join(" | ");
  const t = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (t === "array") return `list[${typeName(s.items, root, depth + 1)}]`;
  if (t === "object" && s.title) return s.title;
  return t || s.title || "any";
}

// A model's fields as rows: name, type, required.
function fieldsHtml(schema) {
  if (!schema) return '<span class="muted">unknown</span>';
  let obj = schema;
  if (obj.$ref) obj = obj.$ref.split("/").slice(1).reduce((o, k) => o?.[k], schema) || obj;
  const props = obj.properties || {};
  const req = new Set(obj.required || []);
  const rows = Object.entries(props).map(([k, v]) => `<tr><td><code>${esc(k)}</code>${req.has(k) && v.default === undefined ? "" : ' <span class="muted">optional</span>'}</td><td>${esc(typeName(v, schema))}</td></tr>`);
  return rows.length ? `<table class="kv"><tbody>${rows.join("")}</tbody></table>` : `<code>${esc(typeName(schema, schema))}</code>`;
}

function schemasHtml(schemas) {
  const names = Object.keys(schemas || {});
  if (!names.length) return '<span class="muted">No task declares its types (see docs/type_schemas.md).</span>';
  return names.map((n) => `<div class="schema" data-task="${esc(n)}"><h3>${esc(n)}</h3>
    <div class="grid"><div><div class="muted">input</div>${fieldsHtml(schemas[n].input)}</div><div><div class="muted">output</div>${fieldsHtml(schemas[n].output)}</div></div>
    <details><summary class="muted">JSON Schema</summary><pre>${esc(JSON.stringify(schemas[n], null, 2))}</pre></details></div>`).join("");
}

async function workflowPage(name, params) {
  const v = new URLSearchParams(params).get("version");
  const w = await api(`/api/workflows/${encodeURIComponent(name)}${v ? "?version=" + v : ""}`);
  const sched = w.schedule;
  main().innerHTML = `<h1>${esc(w.name)} <span class="muted">v${w.version}</span>${w.paused ? ' <span class="badge paused" id="wf-paused">paused</span>' : ""}</h1>
    <div class="grid"><div>
      <div class="card"><h2 style="margin-top:0">Graph</h2>${dagSvg(w.graph, false)}</div>
      <div class="card" id="schemas"><h2 style="margin-top:0">Types</h2>${schemasHtml(w.schemas)}</div>
      <div class="card"><h2 style="margin-top:0">Source</h2>${w.applied_from ? `<p class="muted">applied from <code>${esc(w.applied_from)}</code></p>` : ""}<pre id="wf-source">${esc(w.yaml ?? JSON.stringify(w.spec, null, 2))}</pre></div>
    </div><div>
      <form class="card" id="trigger-form"><h2 style="margin-top:0">Trigger a run</h2>
        <label>Params (JSON object)<br><textarea id="trigger-params" rows="5" style="width:100%">{}</textarea></label><br>
        <button type="submit" id="trigger-btn">Trigger</button> <span id="trigger-error" style="color:var(--failed)"></span></form>
      <div class="card"><h2 style="margin-top:0">Schedule</h2>${w.paused ? '<p class="muted">Paused: the schedule does not fire (<code>ork unpause</code>).</p>' : ""}${sched ? `<code>${esc(sched.cron)}</code> (${esc(sched.timezone || "UTC")})
        ${sched.error ? `<p style="color:var(--failed)">${esc(sched.error)}</p>` : ""}
        <ul id="next-fires">${sched.next.map((t) => `<li>${esc(new Date(t).toLocaleString())}</li>`).join("")}</ul>` : '<span class="muted">No schedule.</span>'}</div>
      <div class="card"><h2 style="margin-top:0">Versions</h2><table id="versions"><tbody>
        ${w.versions.map((x) => `<tr><td><a href="#/workflows/${encodeURIComponent(name)}?version=${x.version}">v${x.version}</a>${x.version === w.version ? " ←" : ""}</td>
          <td><code>${esc(x.hash.slice(0, 12))}</code></td><td>${time(x.created_at)}</td></tr>`).join("")}</tbody></table>
        <p><a href="#/runs?workflow=${encodeURIComponent(name)}">runs of ${esc(name)}</a></p></div>
    </div></div>`;
  $("#trigger-form").onsubmit = async (e) => {
    e.preventDefault();
    let params;
    try { params = JSON.parse($("#trigger-params").value || "{}"); } catch (err) { $("#trigger-error").textContent = "params: " + err.message; return; }
    try {
      const r = await api("/trigger", { method: "POST", body: JSON.stringify({ workflow: name, params }) });
      location.hash = `#/runs/${r.run_id}`;
    } catch (err) {
      if (err instanceof AuthError) { location.hash = "#/login"; return; }
      $("#trigger-error").textContent = err.message;
    }
  };
}

// ---- routing ----
let previous = "#/runs";
async function route() {
  if (live) { live.stop(); live = null; }
  const hash = location.hash || "#/runs";
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  try {
    if (parts[0] === "login") return loginPage(previous);
    previous = hash;
    if (session.auth_required && !session.authenticated) throw new AuthError();
    if (parts[0] === "workflows" && parts[1]) await workflowPage(parts[1], query);
    else if (parts[0] === "workflows") await workflowsPage();
    else if (parts[0] === "runs" && parts[1]) await runPage(parts[1]);
    else await runsPage(query);
  } catch (e) {
    if (e instanceof AuthError) { await refreshSession().catch(() => {}); loginPage(hash); return; }
    main().innerHTML = `<div class="card"><p style="color:var(--failed)" id="page-error">${esc(e.message)}</p></div>`;
  }
}
window.addEventListener("hashchange", route);
refreshSession().catch(() => {}).finally(route);

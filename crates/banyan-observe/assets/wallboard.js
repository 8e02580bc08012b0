// The wallboard: one picture from /api/wallboard, then a new one every second from the
// server-sent events of /api/wallboard/stream. No libraries.
"use strict";

let updates = 0;

function secs(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  const m = Math.floor(s / 60);
  return m + ":" + String(Math.floor(s % 60)).padStart(2, "0");
}

function pct(p) {
  return p === null || p === undefined ? "–" : p.toFixed(1) + " %";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty, "muted");
    td.colSpan = columns;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    tbody.append(tr);
  }
}

function render(s) {
  const node = s.node;
  document.getElementById("node").textContent =
    `${node.role} node ${node.id}` + (node.site ? ` (site ${node.site})` : "");

  fill(document.getElementById("queue-rows"), s.queues.map((q) => {
    const sl = q.service_level_pct;
    const slClass = sl === null ? "" : sl >= q.service_level_goal_pct ? "good" : sl >= q.service_level_goal_pct - 10 ? "warn" : "bad";
    const waitClass = q.longest_wait_ms > q.service_level_target_ms ? "bad" : "";
    const row = [
      cell(q.name || q.id),
      cell(String(q.waiting), q.waiting > 0 ? "warn" : ""),
      cell(secs(q.waiting > 0 ? q.longest_wait_ms : null), waitClass),
      cell(pct(sl) + " / " + q.service_level_goal_pct + " %", slClass),
      cell(secs(q.asa_ms)),
      cell(secs(q.aht_ms)),
      cell(pct(q.abandonment_pct)),
      cell(String(q.answered)),
      cell(String(q.entered)),
    ];
    row[0].dataset.queue = q.id;
    return row;
  }), "no queues yet", 9);

  fill(document.getElementById("agent-rows"), s.agents.map((a) => [
    cell(a.site || "(no site)"),
    cell(String(a.available), a.available > 0 ? "good" : ""),
    cell(String(a.on_contact)),
    cell(String(a.wrap_up)),
    cell(String(a.on_break)),
    cell(String(a.offline), "muted"),
  ]), "no agents yet", 6);

  const c = s.cluster;
  document.getElementById("term").textContent = c.term;
  document.getElementById("leader").textContent = c.leader === null ? "none" : "node " + c.leader;
  document.getElementById("leader").className = "big " + (c.leader === null ? "bad" : "");
  document.getElementById("committed").textContent = c.committed === null ? "–" : c.committed;
  document.getElementById("applied").textContent = c.applied;

  fill(document.getElementById("member-rows"), c.members.map((m) => [
    cell("node " + m.id + (m.id === node.id ? " (this)" : "")),
    cell(m.leader ? "leader" : m.voter ? "voter" : "learner", m.leader ? "good" : ""),
    cell(m.addr, "muted"),
    cell(m.lag === null ? "–" : String(m.lag), m.lag > 1000 ? "warn" : ""),
  ]), "not a member yet", 4);

  fill(document.getElementById("branch-rows"), s.branches.map((b) => [
    cell(b.site),
    cell(b.node_id === null ? "–" : String(b.node_id)),
    cell(b.lease, b.lease === "lapsed" ? "bad" : b.lease === "leased" ? "good" : ""),
    cell(b.mode, b.mode === "alone" ? "warn" : ""),
    cell(String(b.journal_backlog)),
    cell(b.lag === null ? "–" : String(b.lag)),
  ]), "no branches", 6);

  document.getElementById("status").textContent =
    "as of " + new Date(s.at_ms).toLocaleTimeString() + " · node up " + secs(node.uptime_s * 1000);
}

function live() {
  const indicator = document.getElementById("live");
  const source = new EventSource("api/wallboard/stream");
  source.addEventListener("wallboard", (e) => {
    updates += 1;
    document.getElementById("updates").textContent = updates;
    indicator.classList.add("on");
    render(JSON.parse(e.data));
  });
  source.onerror = () => indicator.classList.remove("on");
}

fetch("api/wallboard")
  .then((r) => r.json())
  .then(render)
  .catch(() => {})
  .finally(live);

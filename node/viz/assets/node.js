// p2pnode live view: the state of the node serving this page (p2pnode
// --http), polled from /api/node, beside the replay of its own event log.
// A replay of logs (p2pnode viz) answers 404 there and the section stays
// hidden. Everything a peer sent (agents, IDs, errors, params) goes into the
// page as text, never as HTML. window.vizNode mirrors what is shown, for tests.
(function () {
  "use strict";
  const POLL_MS = 1000;
  const MAX_JOB_ROWS = 50;
  const box = document.getElementById("nodeview");
  window.vizNode = { loaded: false, state: null };

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function short(id) { return id && id.length > 12 ? "…" + id.slice(-10) : (id || "-"); }
  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 90 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(0) + " min ago";
  }
  function table(id, head, rows) {
    const t = el("table", { id });
    t.append(el("tr", {}, ...head.map((h) => el("th", {}, h))));
    for (const r of rows) t.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
    return t;
  }
  function paramsText(p) {
    return p ? Object.keys(p).sort().map((k) => k + "=" + p[k]).join(" ") : "-";
  }

  function render(st) {
    const kids = [];
    kids.push(el("h2", {}, "This node · live"));
    kids.push(el("div", {}, el("code", { title: st.peer_id }, short(st.peer_id)), " ", (st.roles || []).join(","),
      " · ", st.version, " · ", st.reachability));
    const relay = st.relay_service || {};
    kids.push(el("div", { id: "node-relay" }, relay.on
      ? `relay service on: ${relay.reservations} of ${relay.max_reservations} reservations held`
      : "relay service off"));

    if ((st.roles || []).includes("authority")) {
      const ws = st.workers || [];
      kids.push(el("h3", {}, `Registered workers (${ws.length})`));
      kids.push(table("node-workers", ["worker", "path", "load", "price", "capacity", "heartbeat"],
        ws.map((w) => [el("code", { title: w.id + (w.agent ? " · " + w.agent : "") }, short(w.id)), w.conn,
          `${w.busy}/${w.slots}`, String(w.price), Number(w.capacity).toFixed(3), ago(w.last_heartbeat)])));
      if (st.ledger) {
        const l = st.ledger;
        kids.push(el("h3", {}, "Ledger"));
        kids.push(table("node-ledger", ["accounts", "blocks", "minted", "balances", "escrow"],
          [[String(l.accounts), String(l.blocks), String(l.minted), String(l.balances),
            `${l.escrow} (${l.open_escrows} open)`]]));
      }
    }
    if ((st.roles || []).includes("client")) {
      const ss = st.series || [];
      kids.push(el("h3", {}, `Series (${ss.length})`));
      if (ss.length === 0) kids.push(el("div", { class: "muted" }, "none yet: p2pnode submit SERIES.yaml hands one to this node"));
      ss.forEach((s, i) => {
        const ended = s.done + s.failed;
        const pct = s.jobs ? Math.round(100 * ended / s.jobs) : 100;
        const state = s.error ? "stopped: " + s.error : s.finished ? "finished" : "running";
        const sec = el("div", { class: "series", "data-series": s.name });
        sec.append(el("div", {}, el("b", {}, s.name), ` · ${ended}/${s.jobs} jobs · ${s.done} done · `,
          el("span", { class: s.failed ? "bad" : "" }, `${s.failed} failed`), ` · ${s.jobs - ended} pending · ${state}`));
        sec.append(el("div", { class: "progress" }, el("i", { style: `width:${pct}%` })));
        if (i === 0) { // the newest series: its jobs, latest first
          const jobs = (s.job_list || []).slice(-MAX_JOB_ROWS).reverse();
          sec.append(table("node-jobs", ["job", "params", "status", "worker"],
            jobs.map((j) => [j.job, paramsText(j.params),
              el("span", { class: j.status === "done" ? "" : "bad", title: j.error || "" }, j.status), short(j.worker)])));
        }
        kids.push(sec);
      });
    }
    box.replaceChildren(...kids);
  }

  async function poll() {
    let r;
    try {
      r = await fetch("api/node", { cache: "no-store" });
    } catch (e) {
      setTimeout(poll, POLL_MS * 3); // the node restarting, or gone
      return;
    }
    if (r.status === 404) return; // a replay: no node behind this page
    if (r.ok) {
      const st = await r.json();
      box.hidden = false;
      render(st);
      window.vizNode = { loaded: true, state: st };
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();

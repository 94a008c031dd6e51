// p2pnode visualiser: replays merged event logs and follows them live.
//
// Data flow: /api/events pages (then /api/stream messages) are ingested once
// into per-entity timelines — for each node its neighbour sets, ledger
// blocks, jobs and life events; for each node pair its connection events;
// global lists of messages, transfers and errors — each a sorted list of
// event positions. The state at any moment is then a handful of binary
// searches ("the last entry before position N"), so jumping anywhere in
// 100,000 events costs the same as stepping, and nothing rescans the log.
// Drawing happens in requestAnimationFrame, only when something changed.
// window.vizState mirrors what is drawn, for tests.
(function () {
  "use strict";

  // ---- data ----------------------------------------------------------------
  const D = {
    t0: null,        // Date of the first event
    T: [],           // T[i]: ms after t0 of event i (non-decreasing)
    E: [],           // E[i]: the compact event (see server.go wireEvent)
    nodes: [],       // {id, role, addrs, logs, x, y, pinned, first, nb[], led[], jobs[], life[], evs[]}
    pairs: new Map(),// "a,b" (a<b) -> {a, b, ev: [[], []]} connection events reported by a, by b
    pairList: [],
    msgs: [],        // positions of messages to draw
    xfers: [],       // positions of ledger blocks drawn as transfers
    errs: [],        // positions of error events
    nbChanged: [],   // nbChanged[i] true when neighbours event i changed its node's set
    names: new Map(),// log name -> how many nodes have it
    unmatched: new Map(), // "from>to:proto" -> msg_sent events not yet received
    skipped: 0,
    files: [],
  };

  // ---- view state ----------------------------------------------------------
  const S = {
    time: 0,         // ms after t0
    view: "network",
    playing: false,
    speed: 1,
    follow: true,    // stay at the end while logs grow
    hover: -1,
    selected: -1,
    live: false,
    loaded: false,
  };

  const WINDOW_MSG = 700;   // ms of log time a message arrow stays visible
  const WINDOW_XFER = 1500; // ms a transfer coin travels
  const WINDOW_FLASH = 1000;// ms a neighbour-change ring lasts
  const MAX_ARROWS = 300;

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const slider = $("slider");

  // ---- helpers -------------------------------------------------------------
  // lastBefore returns the last element of the sorted list that is < n, or -1.
  function lastBefore(list, n) {
    let lo = 0, hi = list.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (list[m] < n) lo = m + 1; else hi = m; }
    return lo > 0 ? list[lo - 1] : -1;
  }
  // lowerIdx returns the first position in the sorted list whose value >= n.
  function lowerIdx(list, n) {
    let lo = 0, hi = list.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (list[m] < n) lo = m + 1; else hi = m; }
    return lo;
  }
  // countAt returns how many events happened at or before time t.
  function countAt(t) {
    const T = D.T;
    let lo = 0, hi = T.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (T[m] <= t) lo = m + 1; else hi = m; }
    return lo;
  }
  // firstAfterTime returns the first position whose time > t.
  const firstAfterTime = countAt;
  function firstAtOrAfterTime(t) {
    const T = D.T;
    let lo = 0, hi = T.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (T[m] < t) lo = m + 1; else hi = m; }
    return lo;
  }
  const endTime = () => (D.T.length ? D.T[D.T.length - 1] : 0);
  // short is a peer ID as the CLI prints it (its last 8 characters).
  const short = (id) => (id && id.length > 12 ? "…" + id.slice(-8) : id || "?");
  // nameOf is a node's log name ("worker-1") when no other node has it.
  const nameOf = (nd) => (nd.name && D.names.get(nd.name) === 1 && nd.name !== nd.id ? nd.name : "");
  // title is how the page names a node: "worker-1 …Xy12AbCd" or the short ID.
  const title = (nd) => (nameOf(nd) ? nameOf(nd) + " " : "") + short(nd.id);
  function protoName(p) {
    if (!p) return "";
    const parts = p.split("/").filter(Boolean);
    let i = parts.length - 1;
    if (i > 0 && /^v?\d+(\.\d+)*$/.test(parts[i])) i--;
    return parts[i] || p;
  }
  function roleOf(n) {
    const r = n.role || "";
    if (r.includes("authority")) return "authority";
    if (r.includes("client")) return "client";
    if (r.includes("worker")) return "worker";
    return "";
  }
  const COLORS = { authority: "#2f6fdb", worker: "#8a8f98", client: "#d64545", "": "#b8bcc4" };
  function fmtRel(ms) { return (ms >= 0 ? "+" : "") + (ms / 1000).toFixed(3) + " s"; }
  function fmtWall(ms) {
    if (!D.t0) return "";
    const d = new Date(D.t0.getTime() + ms);
    const p = (x, n) => String(x).padStart(n || 2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function parseTime(s) {
    // Date.parse copes with milliseconds; trim nanoseconds.
    return new Date(String(s).replace(/(\.\d{3})\d+/, "$1"));
  }

  // ---- ingest --------------------------------------------------------------
  function ensureNode(i, info) {
    while (D.nodes.length <= i) {
      D.nodes.push({ id: "", name: "", role: "", addrs: [], logs: false, x: NaN, y: NaN, pinned: false, first: -1,
        home: -1, nb: [], led: [], jobs: [], life: [], evs: [] });
    }
    const n = D.nodes[i];
    if (info) {
      n.id = info.id;
      if (info.name) n.name = info.name;
      if (info.role) n.role = info.role;
      if (info.addrs) n.addrs = info.addrs;
      n.logs = !!info.logs;
    }
    return n;
  }
  function pairOf(a, b) {
    const lo = Math.min(a, b), hi = Math.max(a, b), key = lo + "," + hi;
    let p = D.pairs.get(key);
    if (!p) { p = { a: lo, b: hi, ev: [[], []] }; D.pairs.set(key, p); D.pairList.push(p); }
    return p;
  }
  function seen(n, i) { const nd = ensureNode(n); if (nd.first < 0) nd.first = i; }

  function ingest(page) {
    page.nodes = page.nodes || [];
    page.events = page.events || [];
    if (page.t0 && page.total > 0 && !D.t0) D.t0 = parseTime(page.t0);
    const newNodes = D.nodes.length < page.nodes.length;
    page.nodes.forEach((info, i) => ensureNode(i, info));
    D.names = new Map();
    for (const nd of D.nodes) if (nd.name) D.names.set(nd.name, (D.names.get(nd.name) || 0) + 1);
    D.skipped = page.skipped || 0;
    D.files = page.files || [];
    let i = D.E.length;
    const evs = page.from < i ? page.events.slice(i - page.from) : page.events;
    if (page.from > i) return; // a gap: the stream resends from our count on reconnect
    for (const e of evs) {
      D.E.push(e); D.T.push(e.t);
      const n = e.n, p = (e.p || 0) - 1;
      const nd = ensureNode(n);
      seen(n, i);
      nd.evs.push(i);
      if (p >= 0) seen(p, i);
      if (e.e && e.k !== "decline" || e.k === "error") D.errs.push(i);
      switch (e.k) {
        case "started": case "stopped": nd.life.push(i); break;
        case "connected": case "disconnected":
          if (p >= 0 && p !== n) { const pr = pairOf(n, p); pr.ev[n === pr.a ? 0 : 1].push(i); }
          break;
        case "msg_sent":
          if (p >= 0) {
            D.msgs.push(i);
            const key = n + ">" + p + ":" + e.pr;
            D.unmatched.set(key, (D.unmatched.get(key) || 0) + 1);
          }
          break;
        case "msg_recv": {
          // A message is drawn once, from its msg_sent. A receive is drawn
          // when it failed, or when the sender logged no msg_sent for it
          // (no log here, or a call its tracer does not see).
          if (p < 0) break;
          const key = p + ">" + n + ":" + e.pr, k = D.unmatched.get(key) || 0;
          if (k > 0) D.unmatched.set(key, k - 1);
          if (e.e || k === 0) D.msgs.push(i);
          break;
        }
        case "neighbours": {
          const set = (e.nb || []).slice().sort((a, b) => a - b);
          e.nb = set;
          for (const q of set) seen(q, i);
          const prev = nd.nb.length ? D.E[nd.nb[nd.nb.length - 1]].nb : [];
          D.nbChanged[i] = prev.length !== set.length || prev.some((v, k) => v !== set[k]);
          nd.nb.push(i);
          break;
        }
        case "ledger_block": {
          const prevBal = nd.led.length ? D.E[nd.led[nd.led.length - 1]].bal : null;
          nd.led.push(i);
          e.bal = balanceAfter(e, prevBal);
          const cp = (e.cp || 0) - 1;
          // The home authority: named by a resync or a hand-over's arrival,
          // else whoever granted the account its first points.
          if (e.a && (e.a.resync || e.a.arrived) && p >= 0) nd.home = p;
          if (nd.home < 0 && cp >= 0 && roleOf(D.nodes[cp]) === "authority" && ledgerKind(e) === "transfer_in") nd.home = cp;
          if (cp >= 0 && cp !== n) {
            seen(cp, i);
            const f = flowOf(e, prevBal);
            e.flow = f;
            // Escrow is held by the client's home authority: draw the
            // lock going there (the counterparty is the worker it is for).
            let other = cp;
            if (ledgerKind(e) === "escrow_lock") other = homeOf(n, cp);
            f.from = f.out ? n : other; f.to = f.out ? other : n;
            // Both sides of a transfer may log a block: draw the payer's,
            // or the receiver's when the payer has no log here.
            if (f.out || !D.nodes[cp].logs) D.xfers.push(i);
          }
          break;
        }
        case "job_started": case "job_finished": case "job_failed": nd.jobs.push(i); break;
      }
      i++;
    }
    if (newNodes) placeNew();
    const end = endTime();
    slider.max = String(end);
    if (S.follow) S.time = end;
    if (evs.length || newNodes) { panelKey = ""; dirty(); }
  }

  // ---- state at a moment ---------------------------------------------------
  function visible(nd, cur) {
    if (nd.first < 0 || nd.first >= cur) return false;
    return true;
  }
  function stopped(nd, cur) {
    const j = lastBefore(nd.life, cur);
    return j >= 0 && D.E[j].k === "stopped";
  }
  function overlayLinks(cur) {
    const out = [], have = new Set();
    D.nodes.forEach((nd, a) => {
      const j = lastBefore(nd.nb, cur);
      if (j < 0 || stopped(nd, cur)) return;
      for (const b of D.E[j].nb) {
        if (b === a) continue;
        const k = a < b ? a * 100000 + b : b * 100000 + a;
        if (have.has(k)) continue;
        have.add(k);
        out.push({ a: Math.min(a, b), b: Math.max(a, b), kind: "overlay" });
      }
    });
    return out;
  }
  function connLinks(cur) {
    const out = [];
    for (const p of D.pairList) {
      let up = false, relayed = false;
      for (const side of p.ev) {
        const j = lastBefore(side, cur);
        if (j >= 0 && D.E[j].k === "connected") { up = true; if (D.E[j].c === "relayed") relayed = true; }
      }
      if (!up) continue;
      if (stopped(D.nodes[p.a], cur) || stopped(D.nodes[p.b], cur)) continue;
      out.push({ a: p.a, b: p.b, kind: relayed ? "relayed" : "direct" });
    }
    return out;
  }
  function recentMsgs(t) {
    // Messages in (t - WINDOW_MSG, t], newest MAX_ARROWS.
    const lo = firstAfterTime(t - WINDOW_MSG), hi = firstAfterTime(t);
    const a = lowerIdx(D.msgs, lo), b = lowerIdx(D.msgs, hi);
    const out = [];
    for (let k = Math.max(a, b - MAX_ARROWS); k < b; k++) {
      const i = D.msgs[k], e = D.E[i];
      const recv = e.k === "msg_recv";
      const from = recv ? e.p - 1 : e.n, to = recv ? e.n : e.p - 1;
      out.push({ i, from, to, proto: protoName(e.pr), err: !!e.e, age: t - D.T[i] });
    }
    return out;
  }
  // flowOf tells which way a ledger block moves points, and how many, from
  // the block's kind (package ledger's names), else the sign of amount, else
  // the change of the node's balance.
  const OUT = { transfer_out: "", escrow_lock: "locked", escrow_release: "paid", escrow_refund: "refunded" };
  const IN = { transfer_in: "", mint: "minted" };
  const ledgerKind = (e) => String((e.a || {}).kind || "").toLowerCase().replace(/^block_/, "");
  function balanceOf(e) { const b = (e.a || {}).balance; return b === undefined ? null : Number(b); }
  // balanceAfter is the chain's balance after block e: its "balance"
  // attribute, else (an authority's own chain logs none) the previous
  // balance moved by the block's kind and amount, as viz.BalanceChange.
  function balanceAfter(e, prevBal) {
    const b = balanceOf(e);
    if (b !== null) return b;
    const k = ledgerKind(e), amount = Number((e.a || {}).amount || 0);
    if (!k) return prevBal;
    const d = k === "mint" || k === "transfer_in" ? amount : k === "transfer_out" || k === "escrow_lock" ? -amount : 0;
    return (prevBal || 0) + d;
  }
  // homeOf guesses node n's home authority: known from its blocks, else
  // the only authority in the logs, else fallback.
  function homeOf(n, fallback) {
    if (D.nodes[n].home >= 0) return D.nodes[n].home;
    let only = -1;
    for (let k = 0; k < D.nodes.length; k++) {
      if (roleOf(D.nodes[k]) !== "authority") continue;
      if (only >= 0) return fallback;
      only = k;
    }
    return only >= 0 ? only : fallback;
  }
  function flowOf(e, prevBal) {
    const a = e.a || {}, kind = ledgerKind(e);
    let amount = Number(a.amount || 0), out;
    if (kind in OUT) out = true;
    else if (kind in IN) out = false;
    else if (amount < 0) out = true;
    else if (prevBal !== null && balanceOf(e) !== null && balanceOf(e) !== prevBal) {
      out = balanceOf(e) < prevBal;
      if (!amount) amount = Math.abs(balanceOf(e) - prevBal);
    } else out = false;
    return { out, amount: Math.abs(amount), note: OUT[kind] || IN[kind] || "" };
  }
  function recentXfers(t) {
    const lo = firstAfterTime(t - WINDOW_XFER), hi = firstAfterTime(t);
    const a = lowerIdx(D.xfers, lo), b = lowerIdx(D.xfers, hi);
    const out = [];
    for (let k = Math.max(a, b - 100); k < b; k++) {
      const i = D.xfers[k], e = D.E[i], f = e.flow;
      out.push({ i, from: f.from, to: f.to, amount: f.amount, note: f.note, age: t - D.T[i] });
    }
    return out;
  }
  function flashes(t, cur) {
    const out = [];
    D.nodes.forEach((nd, n) => {
      const j = lastBefore(nd.nb, cur);
      if (j >= 0 && D.nbChanged[j] && t - D.T[j] < WINDOW_FLASH) out.push({ n, age: t - D.T[j] });
    });
    return out;
  }
  function balanceAt(nd, cur) {
    const j = lastBefore(nd.led, cur);
    return j < 0 ? null : D.E[j].bal;
  }

  // ---- layout --------------------------------------------------------------
  // Positions are normalised to [0,1]²; ringLayout places nodes that were
  // not dragged by role: workers on a ring (the overlay's links are its
  // chords), authorities outside it on the left, clients on the right, so
  // that no link runs through a node that is not one of its ends (an
  // authority in the middle would sit on every chord through the centre).
  // The ring's rotation is the one that keeps links furthest from other
  // nodes.
  function ringLayout() {
    const groups = { authority: [], worker: [], client: [], "": [] };
    D.nodes.forEach((nd) => groups[roleOf(nd)].push(nd));
    const arc = (list, r, centre, maxStep) => {
      const step = Math.min((2 * Math.PI) / Math.max(list.length, 1), maxStep);
      list.forEach((nd, k) => {
        if (nd.pinned) return;
        const a = centre + (k - (list.length - 1) / 2) * step;
        nd.x = 0.5 + r * Math.cos(a); nd.y = 0.5 + r * Math.sin(a);
      });
    };
    const workers = groups.worker.concat(groups[""]);
    arc(groups.authority, 0.5, Math.PI, Math.PI / 6);
    arc(groups.client, 0.5, 0, Math.PI / 6);
    if (workers.length <= 36) {
      const outer = groups.authority.concat(groups.client);
      const place = (phase) => workers.forEach((nd, k) => {
        if (nd.pinned) return;
        const a = phase + (2 * Math.PI * k) / workers.length;
        nd.x = 0.5 + 0.3 * Math.cos(a); nd.y = 0.5 + 0.3 * Math.sin(a);
      });
      let best = 0, bestScore = -1;
      const steps = 24, span = (2 * Math.PI) / Math.max(workers.length, 1);
      for (let k = 0; k < steps; k++) {
        const phase = -Math.PI / 2 + (span * k) / steps;
        place(phase);
        const sc = clearance(outer, workers);
        if (sc > bestScore + 1e-9) { bestScore = sc; best = phase; }
      }
      place(best);
    } else {
      // a sunflower disc: even density, no overlaps
      const golden = Math.PI * (3 - Math.sqrt(5)), r1 = 0.39;
      workers.forEach((nd, k) => {
        if (nd.pinned) return;
        const r = r1 * Math.sqrt((k + 0.5) / workers.length), a = k * golden;
        nd.x = 0.5 + r * Math.cos(a); nd.y = 0.5 + r * Math.sin(a);
      });
    }
    fitBox();
  }
  // clearance is the smallest distance from a node to a segment (outer
  // node to worker, outer to outer, worker to worker) it is not an end of.
  function clearance(outer, workers) {
    const all = outer.concat(workers), segs = [];
    for (let i = 0; i < outer.length; i++) {
      for (const w of workers) segs.push([outer[i], w]);
      for (let j = i + 1; j < outer.length; j++) segs.push([outer[i], outer[j]]);
    }
    for (let i = 0; i < workers.length; i++) for (let j = i + 1; j < workers.length; j++) segs.push([workers[i], workers[j]]);
    let worst = Infinity;
    for (const [a, b] of segs) {
      const dx = b.x - a.x, dy = b.y - a.y, L = dx * dx + dy * dy || 1e-12;
      for (const c of all) {
        if (c === a || c === b) continue;
        const u = Math.max(0, Math.min(1, ((c.x - a.x) * dx + (c.y - a.y) * dy) / L));
        worst = Math.min(worst, Math.hypot(a.x + u * dx - c.x, a.y + u * dy - c.y));
      }
    }
    return worst;
  }
  // box is the part of the layout plane that is shown: the nodes' bounding
  // box, recomputed on layout (not while dragging, so nothing jumps).
  let box = { x0: 0, y0: 0, x1: 1, y1: 1 };
  function fitBox() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const a of D.nodes) {
      if (!isFinite(a.x)) continue;
      x0 = Math.min(x0, a.x); x1 = Math.max(x1, a.x); y0 = Math.min(y0, a.y); y1 = Math.max(y1, a.y);
    }
    if (x0 > x1) { box = { x0: 0, y0: 0, x1: 1, y1: 1 }; return; }
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, w = Math.max(x1 - x0, 0.3), h = Math.max(y1 - y0, 0.3);
    box = { x0: cx - w / 2, x1: cx + w / 2, y0: cy - h / 2, y1: cy + h / 2 };
  }
  function placeNew() { ringLayout(); }

  // forceLayout lays out all nodes by every link they ever had (overlay and
  // connections), starting from jittered ring positions.
  function forceLayout() {
    const N = D.nodes.length;
    if (!N) return;
    D.nodes.forEach((nd) => (nd.pinned = false));
    ringLayout();
    D.nodes.forEach((nd) => { nd.x += (Math.random() - 0.5) * 0.2; nd.y += (Math.random() - 0.5) * 0.2; });
    const edges = new Set();
    for (const p of D.pairList) edges.add(p.a * 100000 + p.b);
    D.nodes.forEach((nd, a) => {
      for (const j of nd.nb) for (const b of D.E[j].nb) if (a !== b) edges.add(Math.min(a, b) * 100000 + Math.max(a, b));
    });
    const E = [...edges].map((k) => [Math.floor(k / 100000), k % 100000]);
    const k = 0.6 / Math.sqrt(N), iters = N > 300 ? 60 : 150;
    const dx = new Float64Array(N), dy = new Float64Array(N);
    for (let it = 0; it < iters; it++) {
      const temp = 0.05 * (1 - it / iters) + 0.002;
      dx.fill(0); dy.fill(0);
      for (let i = 0; i < N; i++) {
        const a = D.nodes[i];
        for (let j = i + 1; j < N; j++) {
          const b = D.nodes[j];
          let x = a.x - b.x, y = a.y - b.y, d2 = x * x + y * y + 1e-6;
          const f = (k * k) / d2;
          dx[i] += x * f; dy[i] += y * f; dx[j] -= x * f; dy[j] -= y * f;
        }
      }
      for (const [i, j] of E) {
        const a = D.nodes[i], b = D.nodes[j];
        const x = a.x - b.x, y = a.y - b.y, d = Math.sqrt(x * x + y * y) + 1e-6;
        const f = d / k;
        dx[i] -= x * f; dy[i] -= y * f; dx[j] += x * f; dy[j] += y * f;
      }
      for (let i = 0; i < N; i++) {
        const a = D.nodes[i];
        // gravity keeps unconnected nodes on screen
        dx[i] += (0.5 - a.x) * 0.5; dy[i] += (0.5 - a.y) * 0.5;
        const d = Math.sqrt(dx[i] * dx[i] + dy[i] * dy[i]) + 1e-9, s = Math.min(d, temp) / d;
        a.x += dx[i] * s; a.y += dy[i] * s;
      }
    }
    // fit to the unit square
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const a of D.nodes) { x0 = Math.min(x0, a.x); x1 = Math.max(x1, a.x); y0 = Math.min(y0, a.y); y1 = Math.max(y1, a.y); }
    const s = 0.96 / Math.max(x1 - x0, y1 - y0, 1e-6);
    for (const a of D.nodes) {
      a.x = 0.5 + (a.x - (x0 + x1) / 2) * s; a.y = 0.5 + (a.y - (y0 + y1) / 2) * s;
      a.pinned = true; // keep it when new nodes arrive
    }
    fitBox();
  }

  // ---- geometry ------------------------------------------------------------
  let W = 0, H = 0, DPR = 1;
  function resize() {
    const r = canvas.getBoundingClientRect();
    DPR = window.devicePixelRatio || 1;
    W = r.width; H = r.height;
    canvas.width = Math.round(W * DPR); canvas.height = Math.round(H * DPR);
    dirty();
  }
  // The box maps, uniformly scaled and centred, into the canvas above the
  // legend.
  const M = 50, LEGEND = 36;
  function scale() {
    return Math.max(1, Math.min((W - 2 * M) / (box.x1 - box.x0), (H - 2 * M - LEGEND) / (box.y1 - box.y0)));
  }
  function toPx(nd) {
    const s = scale();
    return [W / 2 + (nd.x - (box.x0 + box.x1) / 2) * s, (H - LEGEND) / 2 + (nd.y - (box.y0 + box.y1) / 2) * s];
  }
  function fromPx(x, y) {
    const s = scale();
    return [(box.x0 + box.x1) / 2 + (x - W / 2) / s, (box.y0 + box.y1) / 2 + (y - (H - LEGEND) / 2) / s];
  }
  // Sizes shrink as the network grows.
  const crowd = () => (D.nodes.length <= 20 ? 0 : D.nodes.length <= 60 ? 1 : 2);
  function radius(nd) {
    const a = roleOf(nd) === "authority";
    return [a ? 17 : 13, a ? 13 : 10, a ? 9 : 5.5][crowd()];
  }
  // text draws a label with a white halo so it stays legible over lines.
  function text(s, x, y, color, font) {
    ctx.font = font || "11px system-ui, sans-serif";
    ctx.lineJoin = "round"; ctx.lineWidth = 3.5; ctx.strokeStyle = "rgba(247,248,250,0.95)";
    ctx.strokeText(s, x, y);
    ctx.fillStyle = color; ctx.fillText(s, x, y);
  }

  // ---- drawing -------------------------------------------------------------
  let scheduled = false, lastFrame = 0;
  function dirty() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(frame); }
  }
  function frame(now) {
    scheduled = false;
    if (S.playing) {
      const dt = lastFrame ? Math.min(now - lastFrame, 100) : 0;
      S.time = Math.min(endTime(), S.time + dt * S.speed);
      if (S.time >= endTime()) {
        S.follow = true;
        if (!S.live) setPlaying(false);
      }
    }
    lastFrame = now;
    render();
    if (S.playing) dirty(); else lastFrame = 0;
  }

  function drawNode(nd, x, y, alpha, hl) {
    const r = radius(nd), role = roleOf(nd);
    ctx.globalAlpha = alpha;
    ctx.lineWidth = hl ? 3 : 1.5;
    ctx.strokeStyle = hl ? "#1d2330" : "#fff";
    ctx.fillStyle = COLORS[role];
    ctx.beginPath();
    if (role === "client") ctx.rect(x - r, y - r, 2 * r, 2 * r);
    else ctx.arc(x, y, r, 0, 2 * Math.PI);
    if (role === "") { ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = COLORS[""]; ctx.lineWidth = 2; ctx.stroke(); }
    else { ctx.fill(); ctx.stroke(); }
    // combined roles: an inner mark in the other role's colour
    if (role !== "" && (nd.role || "").includes(",")) {
      ctx.fillStyle = role === "client" ? COLORS.worker : COLORS.client;
      ctx.beginPath(); ctx.arc(x, y, r * 0.4, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
  }

  function arrow(x1, y1, x2, y2, r1, r2, color, width, label, alpha) {
    const dx = x2 - x1, dy = y2 - y1, d = Math.hypot(dx, dy);
    if (d < r1 + r2 + 4) return;
    const ux = dx / d, uy = dy / d;
    // offset sideways so that the two directions do not overlap
    const ox = -uy * 7, oy = ux * 7;
    const sx = x1 + ux * (r1 + 2) + ox, sy = y1 + uy * (r1 + 2) + oy;
    const ex = x2 - ux * (r2 + 3) + ox, ey = y2 - uy * (r2 + 3) + oy;
    ctx.globalAlpha = alpha;
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = width;
    ctx.beginPath(); ctx.moveTo(sx, sy); ctx.lineTo(ex - ux * 7, ey - uy * 7); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(ex, ey);
    ctx.lineTo(ex - ux * 9 - uy * 4.5, ey - uy * 9 + ux * 4.5);
    ctx.lineTo(ex - ux * 9 + uy * 4.5, ey - uy * 9 - ux * 4.5);
    ctx.closePath(); ctx.fill();
    if (label) {
      const mx = (sx + ex) / 2 + ox * 1.8, my = (sy + ey) / 2 + oy * 1.8, font = "600 11px system-ui, sans-serif";
      ctx.font = font;
      const w = ctx.measureText(label).width;
      if (reserve(mx - w / 2, my - 7, w, 14)) {
        ctx.textAlign = "center"; ctx.textBaseline = "middle";
        text(label, mx, my, color, font);
      }
    }
    ctx.globalAlpha = 1;
  }

  // Labels never overlap: each frame, node labels reserve their boxes
  // first, then arrow and coin labels are drawn only where there is room
  // (newest first).
  let boxes = [];
  function reserve(x, y, w, h) {
    for (const b of boxes) if (x < b[0] + b[2] + 2 && b[0] < x + w + 2 && y < b[1] + b[3] && b[1] < y + h) return false;
    boxes.push([x, y, w, h]);
    return true;
  }
  function nodeLabelBox(nd, x, y, stopped) {
    const name = nameOf(nd), lines = name ? 2 : 1;
    ctx.font = name ? "600 12px system-ui, sans-serif" : "11px system-ui, sans-serif";
    const w = Math.max(ctx.measureText((name || short(nd.id)) + (stopped ? " (stopped)" : "")).width, name ? 70 : 0);
    return [x - w / 2, y - radius(nd) - 2, w, 2 * radius(nd) + 6 + 14 * lines];
  }

  let panelKey = "";
  function render() {
    const t = S.time, cur = countAt(t);
    const nodes = D.nodes;
    ctx.setTransform(DPR, 0, 0, DPR, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const pos = nodes.map(toPx);
    const vis = nodes.map((nd) => visible(nd, cur));
    const stop = nodes.map((nd) => stopped(nd, cur));
    const focus = S.hover >= 0 ? S.hover : S.selected;
    const labels = nodes.length <= 60;
    boxes = [];
    nodes.forEach((nd, n) => {
      if (vis[n] && (labels || n === focus)) boxes.push(nodeLabelBox(nd, pos[n][0], pos[n][1], stop[n]));
    });

    // links
    const links = S.view === "network" ? overlayLinks(cur) : connLinks(cur);
    for (const l of links) {
      if (!vis[l.a] || !vis[l.b]) continue;
      const [x1, y1] = pos[l.a], [x2, y2] = pos[l.b];
      const hl = focus >= 0 && (l.a === focus || l.b === focus);
      ctx.globalAlpha = focus >= 0 && !hl ? 0.35 : 1;
      const c = crowd();
      if (S.view === "network") {
        ctx.strokeStyle = hl ? "#2f6fdb" : "#9dbbef"; ctx.lineWidth = [2.5, 2, 1][c] + (hl ? 1.5 : 0); ctx.setLineDash([]);
      } else {
        ctx.strokeStyle = hl ? "#a9b1bd" : "#cdd2da"; ctx.lineWidth = [6, 4, 1.2][c];
        ctx.setLineDash(l.kind === "relayed" ? [[10, 7], [8, 6], [4, 3]][c] : []);
      }
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    }
    ctx.setLineDash([]); ctx.globalAlpha = 1;

    // points flow, placed first so that its labels win over message labels
    const xfers = recentXfers(t).filter((x) => vis[x.from] && vis[x.to]);
    const coinLabels = xfers.length <= 40;
    // One label per payer, payee and kind, on the newest coin: the sum
    // and how many transfers when several are in flight.
    const groups = new Map();
    for (let k = xfers.length - 1; k >= 0; k--) {
      const x = xfers[k], key = x.from + ">" + x.to + ":" + x.note;
      const f = Math.min(1, x.age / WINDOW_XFER);
      const [x1, y1] = pos[x.from], [x2, y2] = pos[x.to];
      x.cx = x1 + (x2 - x1) * f; x.cy = y1 + (y2 - y1) * f;
      const g = groups.get(key);
      if (g) { g.sum += x.amount; g.n++; } else groups.set(key, { x, sum: x.amount, n: 1 });
    }
    const coinText = [];
    for (const g of coinLabels ? groups.values() : []) {
      const lab = g.sum + " pts" + (g.x.note ? " " + g.x.note : "") + (g.n > 1 ? " (" + g.n + ")" : "");
      ctx.font = "bold 11px system-ui, sans-serif";
      if (reserve(g.x.cx + 9, g.x.cy - 7, ctx.measureText(lab).width, 14)) coinText.push([lab, g.x.cx + 10, g.x.cy]);
    }

    // messages (traffic view)
    let arrows = [];
    if (S.view === "traffic") {
      arrows = recentMsgs(t).filter((m) => vis[m.from] && vis[m.to]);
      // Label the fresh arrows, once per pair and protocol, unless crowded.
      const labelled = new Set(), label = true; // one per pair and protocol, where there is room
      for (let k = arrows.length - 1; k >= 0; k--) {
        const m = arrows[k], key = m.from + ">" + m.to + ":" + m.proto;
        const [x1, y1] = pos[m.from], [x2, y2] = pos[m.to];
        const alpha = Math.max(0.12, 1 - m.age / WINDOW_MSG);
        const lab = label && (m.err || m.age < WINDOW_MSG / 2) && !labelled.has(key);
        if (lab) labelled.add(key);
        arrow(x1, y1, x2, y2, radius(nodes[m.from]), radius(nodes[m.to]), m.err ? "#d62828" : "#1d2330",
          m.err ? 2.2 : 1.5, lab ? m.proto : "", alpha);
      }
    }

    // points flow: a coin travelling from payer to payee
    for (const x of xfers) {
      const [x1, y1] = pos[x.from], [x2, y2] = pos[x.to];
      ctx.globalAlpha = 0.35;
      ctx.strokeStyle = "#e0a100"; ctx.lineWidth = 1.5; ctx.setLineDash([2, 4]);
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); ctx.setLineDash([]);
      ctx.globalAlpha = 1;
      ctx.fillStyle = "#e0a100"; ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(x.cx, x.cy, coinLabels ? 6.5 : 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    for (const [lab, lx, ly] of coinText) {
      ctx.textAlign = "left"; ctx.textBaseline = "middle";
      text(lab, lx, ly, "#8a6400", "bold 11px system-ui, sans-serif");
    }

    // neighbour-change rings (network view)
    const rings = S.view === "network" ? flashes(t, cur).filter((f) => vis[f.n]) : [];
    for (const f of rings) {
      const [x, y] = pos[f.n], k = f.age / WINDOW_FLASH;
      ctx.globalAlpha = 1 - k;
      ctx.strokeStyle = "#2f6fdb"; ctx.lineWidth = 3;
      ctx.beginPath(); ctx.arc(x, y, radius(nodes[f.n]) + 5 + 16 * k, 0, 2 * Math.PI); ctx.stroke();
    }
    ctx.globalAlpha = 1;

    // nodes and labels
    nodes.forEach((nd, n) => {
      if (!vis[n]) return;
      const [x, y] = pos[n];
      const hl = n === focus;
      drawNode(nd, x, y, stop[n] ? 0.3 : 1, hl);
      if (labels || hl) {
        ctx.textAlign = "center"; ctx.textBaseline = "top";
        const name = nameOf(nd), y0 = y + radius(nd) + 4, dim = stop[n] ? "#9aa1ad" : null;
        if (name) {
          text(name + (stop[n] ? " (stopped)" : ""), x, y0, dim || "#1d2330", (hl ? "bold " : "600 ") + "12px system-ui, sans-serif");
          text(short(nd.id), x, y0 + 14, dim || "#6b7280", "10.5px ui-monospace, SFMono-Regular, Menlo, monospace");
        } else {
          text(short(nd.id) + (stop[n] ? " (stopped)" : ""), x, y0, dim || "#374151",
            (hl ? "bold " : "") + "11px system-ui, sans-serif");
        }
      }
    });

    // controls
    const end = endTime();
    if (document.activeElement !== slider || !S.dragSlider) slider.value = String(t);
    $("time").textContent = fmtRel(t);
    $("wall").textContent = fmtWall(t);
    $("count").textContent = cur + " / " + D.E.length + " events";
    const nerr = lowerIdx(D.errs, cur);
    const eb = $("errors");
    eb.textContent = (D.errs.length > nerr ? nerr + " of " + D.errs.length : nerr) + (D.errs.length === 1 ? " error" : " errors");
    eb.classList.toggle("has", nerr > 0);
    $("status").textContent = !S.loaded ? "loading…" : D.E.length ? nodes.length + " nodes · " + D.E.length + " events" +
      (D.skipped ? " · " + D.skipped + " bad lines skipped" : "") : "waiting for events…";
    updatePanel(cur, t);
    if (!$("errlist").hidden) markErrList(cur);

    const cr = canvas.getBoundingClientRect();
    window.vizState = {
      time: t, end, wall: D.t0 ? new Date(D.t0.getTime() + t).toISOString() : "", count: cur, total: D.E.length,
      view: S.view, playing: S.playing, live: S.live, loaded: S.loaded,
      selected: S.selected >= 0 ? nodes[S.selected].id : "",
      nodes: nodes.map((nd, n) => ({ id: nd.id, role: nd.role, name: nameOf(nd), x: pos[n][0] + cr.left, y: pos[n][1] + cr.top,
        stopped: stop[n] })).filter((_, n) => vis[n]),
      links: links.filter((l) => vis[l.a] && vis[l.b]).map((l) => ({ a: nodes[l.a].id, b: nodes[l.b].id, kind: l.kind })),
      arrows: arrows.map((m) => ({ from: nodes[m.from].id, to: nodes[m.to].id, proto: m.proto, err: m.err })),
      transfers: xfers.map((x) => ({ from: nodes[x.from].id, to: nodes[x.to].id, amount: x.amount, note: x.note })),
      flashes: rings.map((f) => nodes[f.n].id),
      errors: nerr, errorsTotal: D.errs.length,
    };
  }

  // ---- side panel ----------------------------------------------------------
  function updatePanel(cur, t) {
    const n = S.hover >= 0 ? S.hover : S.selected;
    const key = n + ":" + cur + ":" + (S.selected === n);
    if (key === panelKey) return;
    panelKey = key;
    const el = $("panel");
    if (n < 0) {
      el.innerHTML = '<p class="hint">Hover or click a node to see its peer ID, addresses, jobs and points balance at this moment.</p>';
      return;
    }
    const nd = D.nodes[n], role = roleOf(nd);
    const bal = balanceAt(nd, cur);
    // jobs so far: the latest status of each job
    const jobs = new Map();
    let started = 0, finished = 0, failed = 0;
    const upto = lowerIdx(nd.jobs, cur);
    for (let k = 0; k < upto; k++) {
      const e = D.E[nd.jobs[k]];
      if (e.k === "job_started") started++; else if (e.k === "job_finished") finished++; else failed++;
      jobs.set(e.j || "?", { e, i: nd.jobs[k] });
    }
    const jobRows = [...jobs.values()].sort((x, y) => x.i - y.i).slice(-12).reverse().map(({ e, i }) => {
      const st = e.k === "job_finished" ? '<span class="ok">finished</span>' : e.k === "job_failed"
        ? '<span class="bad">failed</span>' : '<span class="run">running</span>';
      const who = e.p ? " · " + esc(title(D.nodes[e.p - 1])) : "";
      return `<li><span class="t">${fmtRel(D.T[i])}</span><span>${esc(e.j || "?")}${who}</span><span style="margin-left:auto">${st}</span></li>`;
    }).join("");
    const nbJ = lastBefore(nd.nb, cur);
    const nbs = nbJ >= 0 ? D.E[nbJ].nb.length : 0;
    let conns = 0;
    for (const l of connLinks(cur)) if (l.a === n || l.b === n) conns++;
    const recent = [];
    for (let k = lowerIdx(nd.evs, cur) - 1; k >= 0 && recent.length < 8; k--) {
      const i = nd.evs[k], e = D.E[i];
      const what = e.k + (e.pr ? " " + protoName(e.pr) : "") + (e.p ? " " + title(D.nodes[e.p - 1]) : "");
      recent.push(`<li><span class="t">${fmtRel(D.T[i])}</span><span class="${e.e && e.k !== "decline" ? "bad" : ""}">${esc(what)}${e.e ? ": " + esc(e.e) : ""}</span></li>`);
    }
    const status = !visible(nd, cur) ? "not seen yet" : stopped(nd, cur) ? "stopped" : "up";
    el.innerHTML = `
      <h2><span class="role" id="panel-role" style="background:${COLORS[role]}">${esc(nd.role || "peer")}</span>${esc(nameOf(nd))}
        <span class="sid">${esc(short(nd.id))}</span>
        ${S.selected === n ? '<span style="margin-left:auto;font-size:11px;color:#6b7280">pinned</span>' : ""}</h2>
      <code id="panel-id">${esc(nd.id)}</code>
      <dl>
        <dt>Status</dt><dd>${status}</dd>
        <dt>Balance</dt><dd id="panel-balance" class="big">${bal === null ? "—" : bal + " pts"}</dd>
        <dt>Jobs</dt><dd id="panel-jobs">${(nd.role || "").includes("worker") || started ? started + " started · " : "dispatched: "}<span class="ok">${finished} finished</span> · <span class="${failed ? "bad" : ""}">${failed} failed</span></dd>
        <dt>Links</dt><dd>${conns} connection${conns === 1 ? "" : "s"} · ${nbs} neighbour${nbs === 1 ? "" : "s"}</dd>
        <dt>Addresses</dt><dd>${nd.addrs.length ? nd.addrs.map((a) => "<code>" + esc(a) + "</code>").join("<br>") : '<span class="hint">none logged</span>'}</dd>
      </dl>
      ${jobRows ? "<h3>Jobs</h3><ul>" + jobRows + "</ul>" : ""}
      ${recent.length ? "<h3>Latest events</h3><ul>" + recent.join("") + "</ul>" : ""}`;
  }

  // ---- errors list ---------------------------------------------------------
  let errListBuilt = 0;
  function buildErrList() {
    const ol = $("errlist-items");
    if (errListBuilt === D.errs.length && ol.children.length) return;
    errListBuilt = D.errs.length;
    ol.innerHTML = D.errs.map((i) => {
      const e = D.E[i], nd = D.nodes[e.n];
      return `<li data-i="${i}"><span class="t">${fmtRel(D.T[i])}</span><b>${esc(nd.role || "")} ${esc(title(nd))}</b>
        ${esc(e.k)}${e.p ? " → " + esc(short(D.nodes[e.p - 1].id)) : ""}: <span class="e">${esc(e.e || "")}</span></li>`;
    }).join("") || "<li>No errors.</li>";
  }
  function markErrList(cur) {
    for (const li of $("errlist-items").children) {
      const i = Number(li.dataset.i);
      li.classList.toggle("future", i >= cur);
    }
  }

  // ---- controls ------------------------------------------------------------
  function seek(ms) {
    S.time = Math.max(0, Math.min(endTime(), ms));
    S.follow = S.time >= endTime();
    dirty();
  }
  function step(dir) {
    setPlaying(false);
    const t = S.time;
    if (dir > 0) {
      const i = firstAfterTime(t);
      if (i < D.T.length) seek(D.T[i]);
    } else {
      const i = firstAtOrAfterTime(t) - 1;
      if (i >= 0) seek(D.T[i]);
    }
  }
  function setPlaying(on) {
    if (on && S.time >= endTime()) S.time = 0; // replay from the start
    S.playing = on;
    S.follow = false;
    $("play").textContent = on ? "❚❚" : "▶";
    lastFrame = 0;
    dirty();
  }
  function setView(v) {
    S.view = v;
    $("view-network").classList.toggle("on", v === "network");
    $("view-traffic").classList.toggle("on", v === "traffic");
    legend();
    dirty();
  }
  function legend() {
    const roles = '<span><i class="dot" style="background:#2f6fdb"></i>authority</span>' +
      '<span><i class="dot" style="background:#8a8f98"></i>worker</span>' +
      '<span><i class="sq" style="background:#d64545"></i>client</span>';
    const lines = S.view === "network"
      ? '<span><i class="ln overlay"></i>neighbours</span><span><i class="dot" style="border:2px solid #2f6fdb;width:12px;height:12px"></i>neighbour set changed</span>'
      : '<span><i class="ln" style="border-color:#c3c8d0;border-top-width:4px"></i>direct</span>' +
        '<span><i class="ln dash" style="border-color:#c3c8d0;border-top-width:4px"></i>relayed</span>' +
        '<span><i class="ln"></i>message</span><span><i class="ln err"></i>error</span>';
    $("legend").innerHTML = roles + lines + '<span><i class="coin"></i>points transfer</span>';
  }

  $("prev").onclick = () => step(-1);
  $("next").onclick = () => step(1);
  $("play").onclick = () => setPlaying(!S.playing);
  $("speed").onchange = (e) => { S.speed = Number(e.target.value); };
  $("view-network").onclick = () => setView("network");
  $("view-traffic").onclick = () => setView("traffic");
  $("layout").onclick = () => { forceLayout(); dirty(); };
  $("errors").onclick = () => {
    const l = $("errlist");
    l.hidden = !l.hidden;
    if (!l.hidden) { buildErrList(); markErrList(countAt(S.time)); }
  };
  $("errlist-close").onclick = () => { $("errlist").hidden = true; };
  $("errlist-items").onclick = (ev) => {
    const li = ev.target.closest("li[data-i]");
    if (!li) return;
    const i = Number(li.dataset.i);
    setPlaying(false);
    S.selected = D.E[i].n;
    seek(D.T[i]);
  };
  slider.addEventListener("pointerdown", () => { S.dragSlider = true; });
  slider.addEventListener("pointerup", () => { S.dragSlider = false; });
  slider.addEventListener("input", () => { seek(Number(slider.value)); });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" && ev.target !== slider || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowLeft") { step(-1); ev.preventDefault(); }
    else if (ev.key === "ArrowRight") { step(1); ev.preventDefault(); }
    else if (ev.key === " ") { setPlaying(!S.playing); ev.preventDefault(); }
    else if (ev.key === "n") setView("network");
    else if (ev.key === "t") setView("traffic");
    else if (ev.key === "Escape") { S.selected = -1; $("errlist").hidden = true; dirty(); }
  });

  // hover, click, drag
  function hit(x, y) {
    const cur = countAt(S.time);
    let best = -1, bd = Infinity;
    D.nodes.forEach((nd, n) => {
      if (!visible(nd, cur)) return;
      const [px, py] = toPx(nd), d = Math.hypot(px - x, py - y);
      if (d <= radius(nd) + 5 && d < bd) { bd = d; best = n; }
    });
    return best;
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    const r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    const n = hit(x, y);
    drag = { n, x, y, moved: false };
    if (n >= 0) canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    const r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    if (drag && drag.n >= 0) {
      if (Math.hypot(x - drag.x, y - drag.y) > 3) drag.moved = true;
      if (drag.moved) {
        const nd = D.nodes[drag.n];
        [nd.x, nd.y] = fromPx(x, y);
        nd.pinned = true;
        canvas.style.cursor = "grabbing";
        dirty();
      }
      return;
    }
    const n = hit(x, y);
    if (n !== S.hover) { S.hover = n; canvas.style.cursor = n >= 0 ? "pointer" : "default"; dirty(); }
  });
  canvas.addEventListener("pointerup", () => {
    if (drag && !drag.moved) { S.selected = drag.n === S.selected ? -1 : drag.n; dirty(); }
    drag = null;
    canvas.style.cursor = S.hover >= 0 ? "pointer" : "default";
  });
  canvas.addEventListener("pointerleave", () => { if (!drag && S.hover >= 0) { S.hover = -1; dirty(); } });

  // ---- loading and live stream ---------------------------------------------
  async function load() {
    let from = D.E.length;
    for (;;) {
      const r = await fetch("api/events?from=" + from);
      if (!r.ok) throw new Error("api/events: " + r.status);
      const page = await r.json();
      ingest(page);
      from = page.next;
      $("status").textContent = "loading… " + from + " / " + page.total;
      if (from >= page.total) break;
    }
    S.loaded = true;
    S.time = endTime();
    dirty();
    stream();
  }
  function stream() {
    const es = new EventSource("api/stream?from=" + D.E.length);
    es.onopen = () => { S.live = true; $("live").classList.add("on"); dirty(); };
    es.onerror = () => {
      S.live = false; $("live").classList.remove("on"); dirty();
      // reconnect from what we have (EventSource would resend the old URL)
      es.close();
      setTimeout(stream, 1500);
    };
    es.addEventListener("events", (m) => {
      ingest(JSON.parse(m.data));
      if (!$("errlist").hidden) buildErrList();
    });
  }

  window.viz = { seek, step, setView, select: (id) => { S.selected = D.nodes.findIndex((n) => n.id === id); dirty(); },
    play: setPlaying, layout: () => { forceLayout(); dirty(); }, render, data: D };
  new ResizeObserver(resize).observe(canvas);
  resize();
  legend();
  // A failed load (the server restarting) is retried from where it stopped.
  function start() {
    load().catch((err) => {
      $("status").textContent = "error: " + err.message + " (retrying)";
      setTimeout(start, 1500);
    });
  }
  start();
})();

// The node's dashboard: every figure comes from the node's JSON-RPC methods over its WebSocket,
// and the new and finalized head subscriptions drive the updates. Everything shown is built as
// DOM nodes whose text is set with textContent: names and addresses come from tenants and
// operators, and are never parsed as HTML.
"use strict";

const RECENT_BLOCKS = 12;
const PAGE = 100; // rows fetched per list: the methods' pages are bounded by the node as well
const REFRESH_MS = 2000; // lists are read again on a new head, at most this often
const RECONNECT_MS = [1000, 2000, 5000, 10000];

const view = {
  best: null,
  finalized: null,
  blocks: [], // newest first: {number, hash, extrinsics, author, slot}
};

// -- the JSON-RPC connection ----------------------------------------------------------------

class Rpc {
  constructor(url, onNotification, onState) {
    this.url = url;
    this.onNotification = onNotification;
    this.onState = onState;
    this.nextId = 1;
    this.pending = new Map();
    this.socket = null;
    this.attempt = 0;
  }

  open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.onState("live");
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", () => {
      for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
      this.pending.clear();
      this.onState("down");
      const delay = RECONNECT_MS[Math.min(this.attempt, RECONNECT_MS.length - 1)];
      this.attempt += 1;
      window.setTimeout(() => this.open(), delay);
    });
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (message.method !== undefined && message.params !== undefined) {
      this.onNotification(message.method, message.params);
      return;
    }
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) return;
    this.pending.delete(message.id);
    if (message.error) waiting.reject(message.error);
    else waiting.resolve(message.result);
  }

  call(method, params = []) {
    return new Promise((resolve, reject) => {
      if (this.socket === null || this.socket.readyState !== WebSocket.OPEN) {
        reject(new Error("not connected"));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }
}

// -- building the page ----------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    tr.appendChild(cell instanceof Node ? cell : el("td", cell === null || cell === undefined ? "–" : cell));
  }
  return tr;
}

function setText(id, text) {
  document.getElementById(id).textContent = text === null || text === undefined ? "–" : String(text);
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
}

function short(text) {
  if (typeof text !== "string") return text;
  return text.length > 18 ? `${text.slice(0, 10)}…${text.slice(-6)}` : text;
}

function mono(text, title) {
  const td = el("td", short(text), "mono");
  if (typeof title === "string") td.title = title;
  return td;
}

function number(hex) {
  return typeof hex === "string" ? parseInt(hex, 16) : null;
}

// -- the chain ------------------------------------------------------------------------------

function showHeights() {
  setText("best-block", view.best);
  setText("finalized-block", view.finalized);
  setText("finality-lag", view.best !== null && view.finalized !== null ? view.best - view.finalized : null);
}

async function extrinsicCount(rpc, hash) {
  try {
    const found = await rpc.call("chain_getBlock", [hash]);
    return found && found.block ? found.block.extrinsics.length : null;
  } catch (_) {
    // The block may have been pruned or the connection lost: the row shows no count.
    return null;
  }
}

function addBlock(header, extrinsics) {
  const height = number(header.number);
  const blocks = view.blocks.filter((b) => b.number !== height);
  blocks.push({ number: height, hash: header.hash, extrinsics, author: header.author, slot: header.slot });
  blocks.sort((a, b) => b.number - a.number);
  view.blocks = blocks.slice(0, RECENT_BLOCKS);
  fill(
    "blocks",
    view.blocks.map((b) => row([b.number, mono(b.hash, b.hash), b.extrinsics, mono(b.author, b.author), b.slot])),
  );
}

async function onNewHead(rpc, header) {
  const height = number(header.number);
  if (height === null) return;
  view.best = height;
  showHeights();
  addBlock(header, await extrinsicCount(rpc, header.hash));
  refreshSoon(rpc);
}

// The blocks before the best one when the page opens, walking back by parent hash.
async function backfill(rpc, header) {
  let parent = header.parentHash;
  for (let i = 1; i < RECENT_BLOCKS && number(header.number) - i >= 0; i++) {
    const found = await attempt(rpc.call("chain_getBlock", [parent]));
    if (!found.value || !found.value.block) return;
    const block = found.value.block;
    addBlock(block.header, block.extrinsics.length);
    parent = block.header.parentHash;
  }
}

function onFinalizedHead(header) {
  const height = number(header.number);
  if (height === null) return;
  view.finalized = height;
  showHeights();
}

// -- the lists, read again when blocks arrive -------------------------------------------------

let refreshing = false;
let lastRefresh = 0;

function refreshSoon(rpc) {
  const now = Date.now();
  if (refreshing || now - lastRefresh < REFRESH_MS) return;
  refreshing = true;
  lastRefresh = now;
  refresh(rpc).finally(() => {
    refreshing = false;
  });
}

async function refresh(rpc) {
  await Promise.all([
    showHealth(rpc),
    showEpoch(rpc),
    showNodes(rpc),
    showApps(rpc),
    showWallets(rpc),
  ]);
}

async function attempt(promise) {
  try {
    return { value: await promise };
  } catch (error) {
    return { error: error && error.message ? error.message : String(error) };
  }
}

async function showHealth(rpc) {
  const health = await attempt(rpc.call("system_health"));
  if (health.value) setText("peers", health.value.peers);
}

async function showEpoch(rpc) {
  const epoch = await attempt(rpc.call("epochs_current"));
  if (!epoch.value) return;
  const e = epoch.value;
  setText("epoch-number", e.number);
  setText("epoch-start", e.startBlock);
  setText("epoch-next", e.nextTransition);
  setText("epoch-sets", `${e.active} / ${e.standby} / ${e.jailed}`);
  const changes = (e.lastChanges || []).map((c) => el("li", `${c.node}: ${c.change}`));
  if (changes.length === 0) changes.push(el("li", "none", "note"));
  document.getElementById("epoch-changes").replaceChildren(...changes);
}

async function showNodes(rpc) {
  const listed = await attempt(rpc.call("nodes_list", [null, 0, PAGE]));
  if (!listed.value) return;
  fill(
    "node-table",
    listed.value.nodes.map((n) =>
      row([
        mono(n.nodeId, n.nodeId),
        mono(n.operator, n.operator),
        n.class,
        el("td", n.status, n.status === "active" ? "good" : n.status === "jailed" ? "bad" : ""),
        n.tower.height,
        n.tower.proofsInEpoch,
        n.misses,
        n.address,
      ]),
    ),
  );
}

async function showApps(rpc) {
  const [listed, local] = await Promise.all([
    attempt(rpc.call("apps_list", [0, PAGE])),
    attempt(rpc.call("node_workloads")),
  ]);
  if (!listed.value) return;
  // This node's own replicas add what only the node running them knows.
  const here = new Map();
  if (local.value) {
    for (const r of local.value.replicas) here.set(`${r.app}/${r.replica}`, r);
    setText("workloads-note", `Ready and restarts are known for the replicas this node runs (${local.value.replicas.length}).`);
  } else {
    setText("workloads-note", `Ready and restarts are shown for the replicas of the node serving this page only: ${local.error}`);
  }
  const shown = listed.value.apps.length;
  setText("apps-total", `${listed.value.total} application(s)${shown < listed.value.total ? `, the first ${shown} shown` : ""}`);
  const rows = [];
  for (const app of listed.value.apps) {
    const placement = app.placement.length ? app.placement : [null];
    for (const entry of placement) {
      const mine = entry ? here.get(`${app.name}/${entry.replica}`) : undefined;
      const state = mine ? mine.state : entry ? entry.state : "no replicas";
      rows.push(
        row([
          el("td", app.name, "app-name"),
          entry ? entry.revision : app.revision,
          entry ? entry.replica : null,
          entry ? mono(entry.node, entry.node) : null,
          el("td", entry && entry.reason ? `${state} (${entry.reason})` : state, state === "Running" ? "good" : ""),
          mine ? (mine.ready ? "yes" : "no") : null,
          mine ? mine.restartCount : null,
        ]),
      );
    }
  }
  fill("app-table", rows);
}

async function showWallets(rpc) {
  const listed = await attempt(rpc.call("wallet_list", [0, PAGE]));
  if (!listed.value) {
    setText("wallets-total", `Wallets are not served by this node: ${listed.error}`);
    return;
  }
  setText("wallets-total", `${listed.value.total} wallet request(s), newest first`);
  fill(
    "wallet-table",
    listed.value.requests.map((r) => {
      const wallet = r.wallet || null;
      return row([
        r.id,
        r.status,
        wallet ? mono(wallet.address, wallet.address) : null,
        wallet ? wallet.threshold : r.threshold,
        wallet ? wallet.committee.length : r.committee ? r.committee.length : null,
        wallet ? wallet.free : null,
      ]);
    }),
  );
}

// -- starting ---------------------------------------------------------------------------------

async function start(rpc, subscriptions) {
  const [name, chain, version] = await Promise.all([
    attempt(rpc.call("system_nodeName")),
    attempt(rpc.call("system_chain")),
    attempt(rpc.call("system_version")),
  ]);
  setText("node-name", name.value || "");
  setText("node-info", `chain ${chain.value || "?"}, version ${version.value || "?"}`);
  subscriptions.clear();
  const heads = await attempt(rpc.call("chain_subscribeNewHeads"));
  if (heads.value) subscriptions.set(heads.value, "new");
  const finalized = await attempt(rpc.call("chain_subscribeFinalizedHeads"));
  if (finalized.value) subscriptions.set(finalized.value, "finalized");
  const best = await attempt(rpc.call("chain_getHeader"));
  if (best.value) {
    await onNewHead(rpc, best.value);
    await backfill(rpc, best.value);
  }
  const hash = await attempt(rpc.call("chain_getFinalizedHead"));
  if (hash.value) {
    const header = await attempt(rpc.call("chain_getHeader", [hash.value]));
    if (header.value) onFinalizedHead(header.value);
  }
}

function main() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const subscriptions = new Map(); // subscription id: "new" or "finalized"
  let rpc = null;
  const onNotification = (method, params) => {
    const kind = subscriptions.get(params.subscription);
    if (kind === "new" && params.result) onNewHead(rpc, params.result);
    else if (kind === "finalized" && params.result) onFinalizedHead(params.result);
  };
  const onState = (state) => {
    const status = document.getElementById("connection");
    status.className = `status ${state}`;
    status.textContent = state === "live" ? `live: ${window.location.host}` : "disconnected, reconnecting…";
    if (state === "live") {
      start(rpc, subscriptions);
    }
  };
  rpc = new Rpc(`${scheme}//${window.location.host}/`, onNotification, onState);
  rpc.open();
}

document.addEventListener("DOMContentLoaded", main);

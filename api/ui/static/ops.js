// Operations: snapshots (list, download, guarded restore), membership (add, remove, transfer
// leadership) and sessions with the locks they hold. Every change goes through the existing
// HTTP API; this page adds no power of its own.
import { api } from "./http.js";
import { state } from "./cluster.js";

let root = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-") || k.startsWith("aria-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function button(text, onClick, cls = "btn") {
  const b = el("button", { class: cls, type: "button" }, text);
  b.addEventListener("click", onClick);
  return b;
}

function say(where, text, ok) {
  where.replaceChildren(el("p", { class: `msg ${ok ? "ok" : "bad"}`, role: "status" }, text));
}

async function problem(resp) {
  return `${resp.status}: ${(await resp.text()).trim() || resp.statusText}`;
}

export function mountOps(section) {
  root = section;
  section.replaceChildren(
    el("div", { class: "card", id: "ops-snapshots" }, el("h2", {}, "Snapshots ", el("small", { class: "muted" }, "in this node's folder"))),
    el("div", { class: "card", id: "ops-members" }, el("h2", {}, "Membership")),
    el("div", { class: "card", id: "ops-sessions" }, el("h2", {}, "Sessions and locks ", el("small", { class: "muted" }, "as applied on this node"))),
  );
  state.listeners.add(() => { if (!root.hidden) renderMembers(); });
  refresh();
}

export function refresh() {
  loadSnapshots();
  renderMembers();
  loadSessions();
}

async function download(path, fallbackName, msg) {
  const resp = await api("GET", path);
  if (!resp.ok) return say(msg, `Download failed: ${await problem(resp)}`, false);
  const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "")?.[1] || fallbackName;
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(msg, `Downloaded ${name}.`, true);
}

async function loadSnapshots() {
  const card = root.querySelector("#ops-snapshots");
  const body = el("div");
  const msg = el("div", { "aria-live": "polite" });
  card.replaceChildren(card.firstChild, body, msg);
  const resp = await api("GET", "/v1/raftkv/ui/snapshots");
  if (!resp.ok) return say(body, `Could not list snapshots: ${await problem(resp)}`, false);
  const list = await resp.json();
  const rows = list.map((s) => el("tr", { "data-snapshot": s.name },
    el("td", { class: "mono" }, s.name), el("td", { class: "num" }, String(s.index)),
    el("td", { class: "num" }, String(s.term)), el("td", { class: "num" }, `${(s.bytes / 1024).toFixed(1)} KiB`),
    el("td", {}, new Date(s.modified * 1000).toLocaleString()),
    el("td", {}, button("Download", () => download(`/v1/raftkv/ui/snapshots/${encodeURIComponent(s.name)}`, s.name, msg)))));
  body.append(
    list.length ? el("div", { class: "scroll" }, el("table", { class: "table", id: "snapshot-list" },
      el("thead", {}, el("tr", {}, ...["File", "Index", "Term", "Size", "Written", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows))) : el("p", { class: "muted" }, "No snapshot on this node's disk yet."),
    el("div", { class: "row" },
      button("Download a fresh snapshot", () => download("/v1/snapshot", "raftkv.rkvs", msg)),
      button("Refresh", loadSnapshots)),
    restoreForm(msg));
}

function restoreForm(msg) {
  const clusterId = state.view?.cluster_id || "";
  const file = el("input", { type: "file", id: "restore-file", accept: ".rkvs,application/octet-stream" });
  const confirmInput = el("input", { type: "text", id: "restore-confirm", autocomplete: "off", spellcheck: false,
                                     class: "mono" });
  const go = button("Restore the whole cluster", async () => {
    const want = state.view?.cluster_id || "restore";
    if (confirmInput.value.trim() !== want) return say(msg, `Type ${want} to confirm.`, false);
    if (!file.files.length) return say(msg, "Choose a snapshot file first.", false);
    go.disabled = true;
    const resp = await api("PUT", "/v1/snapshot", { body: file.files[0] });
    go.disabled = false;
    if (!resp.ok) return say(msg, `Restore refused: ${await problem(resp)}`, false);
    say(msg, `Restored ${resp.headers.get("X-Raftkv-Restored-Keys") || "?"} keys: every node now holds the snapshot's data.`, true);
  }, "btn btn-danger");
  return el("details", {},
    el("summary", {}, "Restore from a snapshot file (replaces every key on every node)"),
    el("label", { htmlFor: "restore-file" }, "Snapshot file"), file,
    el("label", { htmlFor: "restore-confirm" }, `Type the cluster ID ${clusterId ? `(${clusterId})` : "(or restore)"} to confirm`),
    confirmInput, el("div", { class: "row" }, go));
}

function renderMembers() {
  const card = root.querySelector("#ops-members");
  const view = state.view;
  const msg = card.querySelector("#members-msg") || el("div", { id: "members-msg", "aria-live": "polite" });
  if (!view) return card.replaceChildren(card.firstChild, el("p", { class: "muted" }, "Waiting for the cluster view…"), msg);
  const act = async (method, path, done) => {
    const resp = await api(method, path);
    if (!resp.ok) return say(msg, `${await problem(resp)}`, false);
    say(msg, done, true);
  };
  const rows = view.nodes.map((n) => el("tr", { "data-member": n.id },
    el("td", { class: "mono" }, n.id), el("td", {}, n.state), el("td", { class: "mono" }, n.raft),
    el("td", {}, el("div", { class: "row" },
      n.state === "leader" ? null : button(`Make ${n.id} leader`, () => act("POST",
        `/v1/operator/raft/transfer-leader?id=${encodeURIComponent(n.id)}`, `Leadership handed to ${n.id}.`)),
      button(`Remove ${n.id}`, () => {
        if (confirm(`Remove ${n.id} (${n.raft}) from the cluster?`)) {
          act("DELETE", `/v1/operator/raft/peer?address=${encodeURIComponent(n.raft)}`, `${n.id} removed.`);
        }
      }, "btn btn-danger")))));
  const addr = el("input", { id: "add-raft", placeholder: "127.0.0.1:7004", class: "mono" });
  const http = el("input", { id: "add-http", placeholder: "127.0.0.1:8504", class: "mono" });
  const id = el("input", { id: "add-id", placeholder: "n4" });
  card.replaceChildren(card.firstChild,
    el("div", { class: "scroll" }, el("table", { class: "table" },
      el("thead", {}, el("tr", {}, ...["Node", "Role", "Raft address", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows))),
    el("details", {}, el("summary", {}, "Add a node (start it with --join first)"),
      el("label", { htmlFor: "add-raft" }, "Raft address"), addr,
      el("label", { htmlFor: "add-http" }, "HTTP address"), http,
      el("label", { htmlFor: "add-id" }, "Node ID"), id,
      el("div", { class: "row" }, button("Add as learner", () => {
        const q = new URLSearchParams({ address: addr.value.trim(), id: id.value.trim(), http: http.value.trim() });
        act("PUT", `/v1/operator/raft/peer?${q}`, `${addr.value} added; it becomes a voter once caught up.`);
      }))),
    msg);
}

async function loadSessions() {
  const card = root.querySelector("#ops-sessions");
  const body = el("div");
  card.replaceChildren(card.firstChild, body);
  const [sResp, lResp] = await Promise.all([api("GET", "/v1/session/list"), api("GET", "/v1/raftkv/ui/locks")]);
  if (!sResp.ok) return say(body, `Could not list sessions: ${await problem(sResp)}`, false);
  const sessions = await sResp.json();
  const locks = lResp.ok ? await lResp.json() : {};
  if (!sessions.length) return body.append(el("p", { class: "muted" }, "No session."), button("Refresh", loadSessions));
  body.append(el("div", { class: "scroll" }, el("table", { class: "table", id: "session-list" },
    el("thead", {}, el("tr", {}, ...["Session", "Name", "Node", "TTL", "Behavior", "Locks held"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...sessions.map((s) => el("tr", { "data-session": s.ID },
      el("td", { class: "mono" }, s.ID), el("td", {}, s.Name || ""), el("td", {}, s.Node || ""),
      el("td", {}, s.TTL || "–"), el("td", {}, s.Behavior || ""),
      el("td", { class: "mono" }, ...(locks[s.ID] || []).flatMap((k) => [
        el("a", { href: `#/kv/${encodeURIComponent(k)}` }, k), " "]))))))),
  button("Refresh", loadSessions));
}

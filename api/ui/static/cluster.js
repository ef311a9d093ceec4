// The cluster view: every member's row, the timeline and the charts, kept live by the node's
// event stream (/v1/raftkv/ui/events: pushed on change, a keep-alive every 15 s; no polling).
import { api, readEvents } from "./http.js";
import { LineChart } from "./charts.js";

const KIND_CLASS = { leader: "ok", "became-leader": "ok", election: "warn", "no-leader": "bad", removed: "bad",
                     membership: "accent", snapshot: "" };
export const state = { view: null, listeners: new Set() }; // ops.js reads the latest view

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function healthBadge(n) {
  if (n.state === "down") return el("span", { class: "badge bad" }, "down");
  return el("span", { class: `badge ${n.health === "ok" ? "ok" : "warn"}` }, n.health);
}

function renderNodes(section, view) {
  const tbody = section.querySelector("#nodes tbody");
  const nodes = [...view.nodes].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  const rows = nodes.map((n) => {
    const isLeader = n.state === "leader";
    const tr = el("tr", { class: isLeader ? "leader" : n.state === "down" ? "down" : "", "data-node": n.id,
                          "data-role": n.state });
    const num = (v) => el("td", { class: "num" }, v === undefined || v === null ? "–" : String(v));
    tr.append(
      el("td", {}, el("span", { class: "mono" }, n.id), n.raft === view.self ? el("small", { class: "muted" }, " (this node)") : null),
      el("td", {}, isLeader ? el("span", { class: "badge accent" }, "leader") : n.state),
      num(n.term), num(n.commit_index), num(n.applied_index), num(n.lag),
      el("td", { class: "num" }, n.last_contact_ms === undefined || n.last_contact_ms === null ? "–" : `${n.last_contact_ms} ms`),
      el("td", {}, healthBadge(n)),
      el("td", { class: "mono" }, n.http),
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
  const leader = view.nodes.find((n) => n.state === "leader");
  section.querySelector("#cluster-summary").textContent =
    `· leader ${leader ? leader.id : "none"} · term ${view.term} · ${view.nodes.length} members`;
}

function renderTimeline(section, events) {
  const ol = section.querySelector("#timeline");
  for (const e of events) {
    const when = new Date(e.at * 1000);
    ol.prepend(el("li", { "data-kind": e.kind },
      el("time", { dateTime: when.toISOString() }, when.toLocaleTimeString()),
      el("span", { class: `badge ${KIND_CLASS[e.kind] || ""}` }, e.kind),
      el("span", {}, e.text)));
  }
  while (ol.children.length > 200) ol.lastChild.remove();
}

// Rates from two cumulative metrics documents.
function rates(prev, cur) {
  const dt = cur.t - prev.t;
  if (dt <= 0) return null;
  const n = cur.latency_buckets.map((c, i) => c - (prev.latency_buckets[i] || 0));
  const count = n.reduce((a, b) => a + b, 0);
  let p99 = null;
  if (count > 0) {
    let seen = 0;
    for (let i = 0; i < n.length; i++) {
      seen += n[i];
      if (seen >= 0.99 * count) { p99 = (cur.bounds_s[i] ?? cur.bounds_s[cur.bounds_s.length - 1]) * 1000; break; }
    }
  }
  return { rps: (cur.requests - prev.requests) / dt, aps: Math.max(0, cur.applied_index - prev.applied_index) / dt,
           meanMs: count ? ((cur.latency_sum_s - prev.latency_sum_s) / count) * 1000 : null, p99 };
}

export function startCluster(section, badge) {
  const rateChart = new LineChart(section.querySelector("#chart-rate"),
    [{ name: "entries/s", color: "--ok" }, { name: "req/s here", color: "--accent" }]);
  const latChart = new LineChart(section.querySelector("#chart-latency"),
    [{ name: "mean", color: "--ok" }, { name: "p99", color: "--warn" }]);
  let prev = null;
  let delay = 500;
  window.addEventListener("resize", () => { for (const c of [rateChart, latChart]) c.draw(Date.now() / 1000); });
  const setBadge = (text, cls) => { badge.textContent = text; badge.className = `badge ${cls}`; };

  const onEvent = (name, doc) => {
    if (name === "cluster") {
      state.view = doc;
      renderNodes(section, doc);
      for (const f of state.listeners) f(doc);
    } else if (name === "timeline") {
      renderTimeline(section, doc);
    } else if (name === "metrics") {
      if (prev) {
        const r = rates(prev, doc);
        if (r) { rateChart.add(doc.t, [r.aps, r.rps]); latChart.add(doc.t, [r.meanMs, r.p99]); }
      }
      prev = doc;
    }
  };

  const connect = async () => {
    for (;;) {
      try {
        const resp = await api("GET", "/v1/raftkv/ui/events");
        if (resp.ok) {
          setBadge("live", "ok");
          delay = 500;
          await readEvents(resp, onEvent);
          setBadge("reconnecting…", "warn");
        } else {
          const text = (await resp.text()).trim();
          setBadge(resp.status === 403 ? "token needed" : `error ${resp.status}`, "bad");
          section.querySelector("#cluster-summary").textContent = `· ${text}`;
          if (resp.status === 403) return showRetry(section, connect);
        }
      } catch {
        setBadge("node unreachable: retrying", "bad");
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  };
  connect();
}

function showRetry(section, connect) {
  const card = section.querySelector(".card");
  if (card.querySelector("#retry-token")) return;
  const btn = el("button", { class: "btn", id: "retry-token", type: "button" }, "Enter a token");
  btn.addEventListener("click", () => { btn.remove(); connect(); });
  card.append(btn);
}

// The console's shell: a hash router (#/cluster, #/kv, #/kv/<prefix>, #/ops) over three
// sections of index.html. Views load on first use. The cluster view's live stream (which the
// operations view reads too) starts the first time either is shown and then runs whatever view
// is shown (the connection badge stays true); a page opened on #/kv never asks for it, so with
// ACLs on a token that may read keys but not operator data is not prompted for more.
import { startCluster } from "./cluster.js";

const views = { cluster: "view-cluster", kv: "view-kv", ops: "view-ops" };
let kvModule = null;
let opsModule = null;
let clusterStarted = false;

function parse() {
  const raw = location.hash.replace(/^#\/?/, "");
  let h;
  try { h = decodeURIComponent(raw); } catch { h = raw; } // a malformed escape: taken as typed
  if (h === "kv" || h.startsWith("kv/")) return { view: "kv", prefix: h.slice(3) };
  if (h === "ops") return { view: "ops" };
  return { view: "cluster" };
}

async function route() {
  const { view, prefix } = parse();
  for (const [name, id] of Object.entries(views)) document.getElementById(id).hidden = name !== view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view !== "kv" && !clusterStarted) {
    clusterStarted = true;
    startCluster(document.getElementById("view-cluster"), document.getElementById("conn"));
  }
  try {
    if (view === "kv") {
      if (!kvModule) {
        kvModule = await import("./kv.js");
        kvModule.mountKV(document.getElementById("view-kv"), prefix);
      } else {
        kvModule.showPrefix(prefix);
      }
    } else if (view === "ops") {
      if (!opsModule) {
        opsModule = await import("./ops.js");
        opsModule.mountOps(document.getElementById("view-ops"));
      } else {
        opsModule.refresh();
      }
    }
  } catch (err) {
    const el = document.getElementById(views[view]);
    el.textContent = "";
    const p = document.createElement("p");
    p.className = "msg bad";
    p.textContent = `This view could not load: ${err.message}`;
    el.append(p);
  }
}

window.addEventListener("hashchange", route);
route();

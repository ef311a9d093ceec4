// THROWAWAY copy on the ui-kv branch: the console helper owns this file; the lead keeps theirs.
// It does only what the contract says app.js does for the KV view.
let kv = null;

async function route() {
  let hash = location.hash || "#/cluster";
  try { hash = decodeURIComponent(hash); } catch { /* a malformed escape: taken as typed */ }
  const isKV = hash === "#/kv" || hash.startsWith("#/kv/");
  for (const id of ["view-cluster", "view-kv", "view-ops"]) document.getElementById(id).hidden = true;
  if (isKV) {
    const prefix = hash.startsWith("#/kv/") ? hash.slice(5) : "";
    const section = document.getElementById("view-kv");
    section.hidden = false;
    if (!kv) {
      kv = await import("./kv.js");
      kv.mountKV(section, prefix);
    } else {
      kv.showPrefix(prefix);
    }
  } else {
    document.getElementById(hash.startsWith("#/ops") ? "view-ops" : "view-cluster").hidden = false;
  }
}
window.addEventListener("hashchange", route);
route();

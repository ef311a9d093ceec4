// The console's KV browser (issue 16): a lazily loaded prefix tree, bounded search, a value view
// and a check-and-set editor, deletes with confirmation, export and import in Consul's
// `consul kv export` format. Everything goes through http.js's api() (which adds the token);
// values reach the page only as text nodes, never as HTML.
import { api, b64decode, b64encode, hasToken, setToken, utf8 } from "./http.js";
import { highlightYAML, isJSON, isYAML, prettyJSON } from "./yaml.js";

const SHOWN_BYTES = 64 * 1024; // a larger value is shown truncated, with a download of all of it
const HEX_BYTES = 4096; // a binary value's hex dump shows this much
const TREE_PAGE = 500; // names rendered per "show more" in one folder
const TXN_OPS = 64; // Consul's limit of operations per transaction
const TXN_BYTES = 768 * 1024; // a batch's estimated JSON size (the node takes 1 MiB; Consul 512 KiB)
const SEARCH_LIMIT = 100;
const UINT64_MAX = 2n ** 64n - 1n;

const S = { root: null, folder: null, key: null, entry: null, els: {} };

// -- small helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), (ev) => { value(ev)?.catch?.(failed); });
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

const button = (label, onclick, cls = "btn", attrs = {}) => h("button", { type: "button", class: cls, onclick, ...attrs }, label);
const encodeKey = (key) => key.split("/").map(encodeURIComponent).join("/");
export const kvPath = (key) => "/v1/kv/" + encodeKey(key);
const kvHash = (key) => "#/kv/" + encodeKey(key);
const parentOf = (key) => key.slice(0, key.lastIndexOf("/", key.length - 2) + 1);


function setStatus(text, kind = "") {
  const el = S.els.status;
  el.textContent = text;
  el.className = "kv-status" + (kind ? " kv-" + kind : "");
}

// An action that failed on its way (the node unreachable): one line, never an unhandled rejection.
function failed(err) {
  setStatus(`Failed: ${err && err.message ? err.message : err}`, "bad");
}

async function problem(resp) {
  const text = (await resp.text()).trim().split("\n")[0];
  return `${resp.status} ${resp.statusText}${text ? ": " + text : ""}`;
}

async function getJSON(path, emptyOn404) {
  const resp = await api("GET", path);
  if (resp.status === 404 && emptyOn404 !== undefined) return emptyOn404;
  if (!resp.ok) throw new Error(await problem(resp));
  return resp.json();
}

// A key's entries with Flags as the exact digits (a uint64 past 2^53 would be rounded as a
// number, and an edit would then write the rounded flags back).
async function getEntries(key, emptyOn404) {
  const resp = await api("GET", kvPath(key));
  if (resp.status === 404) return emptyOn404;
  if (!resp.ok) throw new Error(await problem(resp));
  return JSON.parse(await resp.text(), (name, value, ctx) => (name === "Flags" && ctx?.source ? ctx.source : value));
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function fileName(key, suffix = "") {
  return (key.replace(/\/+$/, "").split("/").pop() || "root").replace(/[^\w.-]+/g, "_") + suffix;
}

function validFlags(text) {
  if (!/^\d+$/.test(text.trim())) return null;
  const n = BigInt(text.trim());
  return n <= UINT64_MAX ? n.toString() : null;
}

// A modal confirmation (<dialog>.showModal keeps focus inside it; Esc cancels). With `expect`,
// the user types a word first and the confirm button waits for a match. Resolves true/false.
function confirmDialog({ title, body = [], confirmLabel, danger = false, expect = null }) {
  return new Promise((resolve) => {
    const input = expect ? h("input", { class: "mono", autocomplete: "off", "aria-label": "Confirmation" }) : null;
    const ok = h("button", { type: "submit", value: "ok", class: danger ? "btn btn-danger" : "btn", disabled: !!expect },
      confirmLabel);
    if (input) input.addEventListener("input", () => { ok.disabled = !expect(input.value.trim()); });
    const dialog = h("dialog", { class: "kv-dialog card", "aria-label": title },
      h("form", { method: "dialog" },
        h("h3", {}, title), ...body, input ? h("p", {}, input) : null,
        h("div", { class: "kv-row" }, ok, h("button", { type: "submit", value: "cancel", class: "btn" }, "Cancel"))));
    document.body.append(dialog);
    dialog.addEventListener("close", () => { dialog.remove(); resolve(dialog.returnValue === "ok"); });
    dialog.showModal();
    (input || ok).focus();
  });
}

// -- layout ----------------------------------------------------------------------------------------

export function mountKV(root, prefix) {
  if (!document.querySelector('link[href="kv.css"]')) {
    document.head.append(h("link", { rel: "stylesheet", href: "kv.css" }));
  }
  S.root = root;
  const e = S.els;
  e.crumbs = h("nav", { class: "kv-crumbs", "aria-label": "Key path" });
  e.searchPrefix = h("input", { name: "prefix", class: "mono", placeholder: "key prefix", "aria-label": "Key prefix" });
  e.searchContains = h("input", { name: "contains", placeholder: "value contains", "aria-label": "Value contains" });
  e.search = h("form", { class: "kv-search", role: "search", onsubmit: (ev) => { ev.preventDefault(); search(); } },
    e.searchPrefix, e.searchContains, h("button", { type: "submit", class: "btn" }, "Search"));
  e.importFile = h("input", { type: "file", accept: ".json,application/json", hidden: true,
    onchange: () => importChosen() });
  e.deletePrefix = button("Delete prefix…", () => deletePrefix(), "btn btn-danger");
  e.toolbar = h("div", { class: "kv-row kv-toolbar" },
    button("New key", () => newKey()), button("Export prefix", () => exportPrefix()),
    button("Import…", () => e.importFile.click()), e.importFile, e.deletePrefix);
  e.list = h("div", { class: "kv-list card" });
  e.detail = h("div", { class: "kv-detail card", tabindex: "-1" });
  e.status = h("p", { class: "kv-status", role: "status", "aria-live": "polite" });
  root.replaceChildren(h("div", { class: "kv" }, e.crumbs, e.toolbar, e.search, e.status,
    h("div", { class: "kv-panes" }, e.list, e.detail)));
  showPrefix(prefix);
}

// A route, as app.js passes it (already decoded from the hash): "" or "a/b/" is a folder,
// "a/b/c" a key (shown in its folder).
export function showPrefix(prefix) {
  const route = prefix || "";
  const isFolder = route === "" || route.endsWith("/");
  const folder = isFolder ? route : parentOf(route);
  if (folder !== S.folder) {
    S.folder = folder;
    S.els.searchPrefix.value = folder;
    renderCrumbs(folder);
    S.els.deletePrefix.hidden = folder === "";
    loadTree(folder);
  }
  if (isFolder) showFolder(folder);
  else openKey(route);
}

function renderCrumbs(folder) {
  const parts = folder.split("/").slice(0, -1);
  const items = [h("a", { href: "#/kv/" }, "(root)")];
  let acc = "";
  for (const part of parts) {
    acc += part + "/";
    items.push(" / ", h("a", { href: kvHash(acc) }, part));
  }
  S.els.crumbs.replaceChildren(...items);
}

// -- the tree ----------------------------------------------------------------------------------

async function loadTree(folder) {
  const list = h("ul", { class: "kv-tree", "aria-label": `Keys under ${folder || "the root"}` });
  S.els.list.replaceChildren(h("div", { class: "kv-row" }, h("h2", { class: "kv-h" }, folder || "(root)"),
    button("Reload", () => loadTree(S.folder), "btn kv-reload", { "aria-label": "Reload the tree" })), list);
  await fillFolder(list, folder);
}

async function fillFolder(ul, folder) {
  ul.replaceChildren(h("li", { class: "kv-muted" }, "loading…"));
  let names = [];
  try {
    const resp = await api("GET", kvPath(folder) + "?keys&separator=/");
    if (!resp.ok && resp.status !== 404) throw new Error(await problem(resp));
    if (resp.ok) names = await resp.json();
    // With ACLs on, a listing is silently filtered (as Consul's): say so while no token is set.
    const top = ul.parentElement === S.els.list;
    if (top && resp.headers.get("X-Consul-Default-ACL-Policy") === "deny" && !hasToken()) ul.before(tokenNote());
  } catch (err) {
    ul.replaceChildren(h("li", { class: "kv-bad" }, String(err.message)));
    return;
  }
  if (!names.length) { ul.replaceChildren(h("li", { class: "kv-muted" }, "(no keys)")); return; }
  ul.replaceChildren();
  const page = (from) => {
    for (const name of names.slice(from, from + TREE_PAGE)) ul.append(treeItem(name, folder));
    if (names.length > from + TREE_PAGE) {
      const more = h("li", {}, button(`Show ${Math.min(TREE_PAGE, names.length - from - TREE_PAGE)} more of ${names.length}`,
        () => { more.remove(); page(from + TREE_PAGE); }));
      ul.append(more);
    }
  };
  page(0);
}

function tokenNote() {
  S.els.list.querySelector(".kv-token")?.remove();
  const input = h("input", { type: "password", autocomplete: "off", "aria-label": "ACL token" });
  return h("form", { class: "kv-token kv-row", onsubmit: (ev) => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    setToken(input.value.trim());
    const folder = S.folder;
    S.folder = null;
    showPrefix(folder);
  } }, h("span", { class: "kv-warn" }, "ACLs are on: without a token you see only what anonymous may read."),
  input, h("button", { type: "submit", class: "btn" }, "Use token"));
}

function treeItem(name, folder) {
  const label = name.slice(folder.length) || name;
  if (!name.endsWith("/") || name === folder) {
    return h("li", { class: "kv-leaf" }, h("a", { href: kvHash(name), class: "mono", "data-key": name }, label));
  }
  const children = h("ul", { class: "kv-tree", hidden: true });
  const twisty = button("▸", null, "kv-twisty", { "aria-expanded": "false", "aria-label": `Expand ${name}` });
  twisty.addEventListener("click", async () => {
    const open = twisty.getAttribute("aria-expanded") !== "true";
    twisty.setAttribute("aria-expanded", String(open));
    twisty.textContent = open ? "▾" : "▸";
    children.hidden = !open;
    if (open && !children.dataset.loaded) { children.dataset.loaded = "1"; await fillFolder(children, name); }
  });
  return h("li", { class: "kv-folder" }, twisty, h("a", { href: kvHash(name), class: "mono" }, label), children);
}

// -- search ------------------------------------------------------------------------------------

async function search(after = null, into = null) {
  const q = new URLSearchParams({ prefix: S.els.searchPrefix.value, limit: String(SEARCH_LIMIT) });
  if (S.els.searchContains.value) q.set("contains", S.els.searchContains.value);
  if (after) q.set("after", after);
  let doc;
  try {
    doc = await getJSON("/v1/raftkv/ui/search?" + q);
  } catch (err) {
    setStatus("Search failed: " + err.message, "bad");
    return;
  }
  let list = into;
  if (!list) {
    list = h("ul", { class: "kv-tree kv-results" });
    const what = S.els.searchContains.value ? ` containing “${S.els.searchContains.value}”` : "";
    S.els.list.replaceChildren(
      h("div", { class: "kv-row" }, h("h2", { class: "kv-h" }, "Search"), button("Back to the tree", () => loadTree(S.folder))),
      h("p", { class: "kv-muted" }, `Keys under “${S.els.searchPrefix.value}”${what}`), list);
  }
  list.querySelector(".kv-more")?.remove();
  for (const m of doc.Matches) {
    list.append(h("li", { class: "kv-leaf" }, h("a", { href: kvHash(m.Key), class: "mono", "data-key": m.Key }, m.Key),
      h("span", { class: "kv-muted" }, ` ${m.Size} B`)));
  }
  const note = `${list.querySelectorAll("li.kv-leaf").length} found; this page looked at ${doc.ScannedKeys} keys`
    + (doc.ScannedBytes ? ` (${doc.ScannedBytes} bytes of values)` : "");
  const footer = h("li", { class: "kv-more kv-muted" }, note);
  if (doc.Truncated) {
    footer.append(` — stopped early (${doc.StoppedBy}) at ${doc.NextKey}. `,
      button("Continue", () => search(doc.NextKey, list)));
  }
  list.append(footer);
  setStatus(doc.Truncated ? "Search stopped early: continue for more." : "Search done.");
}

// -- one key -----------------------------------------------------------------------------------

function showFolder(folder) {
  S.key = null;
  S.entry = null;
  S.els.detail.replaceChildren(h("h2", { class: "kv-h" }, "Folder " + (folder || "(root)")),
    h("p", { class: "kv-muted" }, "Choose a key on the left, search, or create one."));
}

async function openKey(key) {
  S.key = key;
  S.els.detail.replaceChildren(h("p", { class: "kv-muted" }, "loading " + key + "…"));
  let entries;
  try {
    entries = await getEntries(key, null);
  } catch (err) {
    S.els.detail.replaceChildren(h("p", { class: "kv-bad" }, `Cannot read ${key}: ${err.message}`));
    return;
  }
  if (S.key !== key) return; // another key was opened meanwhile
  if (!entries) {
    S.entry = null;
    S.els.detail.replaceChildren(h("h2", { class: "kv-h mono" }, key), h("p", { class: "kv-muted" }, "This key does not exist."));
    return;
  }
  S.entry = entries[0];
  renderEntry(S.entry);
}

function decodeValue(entry) {
  const bytes = b64decode(entry.Value || "");
  const truncated = bytes.length > SHOWN_BYTES;
  let shown = truncated ? bytes.subarray(0, SHOWN_BYTES) : bytes;
  let text = utf8(shown);
  for (let cut = 1; text === null && truncated && cut <= 3; cut++) text = utf8(shown.subarray(0, SHOWN_BYTES - cut));
  if (text === null) shown = bytes.subarray(0, Math.min(bytes.length, SHOWN_BYTES));
  return { bytes, shown, text, truncated };
}

function renderEntry(entry) {
  const v = decodeValue(entry);
  const kind = v.text === null ? "binary" : v.truncated ? "text" : isJSON(v.text) ? "JSON" : isYAML(v.text) ? "YAML" : "text";
  const meta = h("table", { class: "table kv-meta" }, h("tbody", {},
    ...[["Flags", entry.Flags], ["CreateIndex", entry.CreateIndex], ["ModifyIndex", entry.ModifyIndex],
      ["LockIndex", entry.LockIndex], ["Size", `${v.bytes.length} bytes`]].map(([k, val]) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "mono", "data-field": k }, String(val))))));
  if (entry.Session) meta.tBodies[0].append(sessionRow(entry.Session));
  const view = h("div", { class: "kv-view" });
  const tabs = h("div", { class: "kv-row", role: "group", "aria-label": "Show the value as" });
  const modes = kind === "binary" ? ["hex", "base64"] : kind === "text" ? ["text"] : [kind, "raw"];
  const show = (mode) => {
    for (const b of tabs.children) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    view.replaceChildren(renderValue(v, mode));
  };
  for (const mode of modes) tabs.append(button(mode, () => show(mode), "btn kv-tab", { "data-mode": mode }));
  show(modes[0]);
  const editable = v.text !== null && !v.truncated;
  S.els.detail.replaceChildren(...[
    h("div", { class: "kv-row" }, h("h2", { class: "kv-h mono" }, entry.Key), h("span", { class: "badge" }, kind)),
    meta,
    v.truncated ? h("p", { class: "kv-warn" }, `Showing the first ${SHOWN_BYTES / 1024} KiB of ${v.bytes.length} bytes: download the whole value.`) : null,
    modes.length > 1 ? tabs : null, view,
    h("div", { class: "kv-row kv-actions" },
      editable ? button("Edit", () => editEntry(entry, v.text)) : h("span", { class: "kv-muted" }, kind === "binary"
        ? "Binary value: not editable here." : "Large value: not editable here."),
      button("Download", () => downloadValue(entry.Key)),
      button("Reload", () => openKey(entry.Key)),
      button("Delete…", () => deleteKey(entry), "btn btn-danger")),
  ].filter(Boolean));
}

function renderValue(v, mode) {
  const pre = h("pre", { class: "kv-value mono", tabindex: "0" });
  if (mode === "JSON") pre.append(prettyJSON(v.text));
  else if (mode === "YAML") pre.append(highlightYAML(v.text));
  else if (mode === "hex") pre.textContent = hexDump(v.bytes.subarray(0, HEX_BYTES)) + (v.bytes.length > HEX_BYTES ? "\n…" : "");
  else if (mode === "base64") pre.textContent = b64encode(v.shown) + (v.truncated ? "…" : "");
  else pre.textContent = v.text;
  return pre;
}

function hexDump(bytes) {
  const lines = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join("\n");
}

// The lock holder: the session's name and node, read from /v1/session/info (one request).
function sessionRow(id) {
  const cell = h("td", { class: "mono", "data-field": "Session" },
    h("a", { href: "/v1/session/info/" + encodeURIComponent(id), target: "_blank", rel: "noopener" }, id));
  const holder = h("div", { class: "kv-muted" }, "lock holder: …");
  cell.append(holder);
  getJSON("/v1/session/info/" + encodeURIComponent(id), []).then((docs) => {
    const s = docs && docs[0];
    holder.textContent = s ? `lock holder: ${s.Name || "(unnamed session)"} on node ${s.Node} (${s.Behavior}, TTL ${s.TTL || "none"})`
      : "lock holder: the session no longer exists";
  }, (err) => { holder.textContent = "lock holder: " + err.message; });
  return h("tr", {}, h("th", { scope: "row" }, "Session"), cell);
}

async function downloadValue(key) {
  const resp = await api("GET", kvPath(key) + "?raw");
  if (!resp.ok) { setStatus(`Download failed: ${await problem(resp)}`, "bad"); return; }
  download(await resp.blob(), fileName(key));
}

// -- editing with check-and-set ----------------------------------------------------------------

function editor({ key, text, flags, title, onSave, keyEditable = false }) {
  const keyInput = h("input", { class: "mono", value: key, "aria-label": "Key", name: "key", required: true });
  keyInput.readOnly = !keyEditable;
  const area = h("textarea", { class: "kv-edit mono", rows: 14, "aria-label": "Value", name: "value" });
  area.value = text;
  const flagsInput = h("input", { class: "mono kv-flags", value: String(flags), "aria-label": "Flags", name: "flags",
    inputmode: "numeric" });
  const form = h("form", { class: "kv-form", onsubmit: (ev) => {
    ev.preventDefault();
    const f = validFlags(flagsInput.value);
    if (f === null) { setStatus("Flags must be an unsigned 64-bit integer.", "bad"); flagsInput.focus(); return; }
    if (!keyInput.value || /[\n\0]/.test(keyInput.value) || keyInput.value.endsWith("/") && keyEditable) {
      setStatus("A key name is needed (no newline or NUL, not ending in /).", "bad");
      keyInput.focus();
      return;
    }
    onSave(keyInput.value, area.value, f).catch(failed);
  } },
  h("h2", { class: "kv-h" }, title),
  h("label", {}, "Key ", keyInput), h("label", {}, "Value", area), h("label", {}, "Flags ", flagsInput),
  h("div", { class: "kv-row" }, h("button", { type: "submit", class: "btn" }, "Save"),
    button("Cancel", () => (S.entry ? renderEntry(S.entry) : showFolder(S.folder)))));
  S.els.detail.replaceChildren(form);
  (keyEditable ? keyInput : area).focus();
}

function editEntry(entry, text) {
  editor({ key: entry.Key, text, flags: entry.Flags, title: "Edit", onSave: (_k, value, flags) => save(entry, value, flags) });
}

function newKey() {
  S.entry = null;
  editor({ key: S.folder, text: "", flags: 0, title: "New key", keyEditable: true,
    onSave: (key, value, flags) => save({ Key: key, ModifyIndex: 0 }, value, flags) });
}

// PUT ?cas=<the ModifyIndex the edit started from> (0 for a new key: only if absent). A false
// answer means someone else wrote meanwhile: nothing was written, and the user chooses.
async function save(base, value, flags) {
  setStatus(`Saving ${base.Key}…`);
  const q = `?cas=${base.ModifyIndex}&flags=${flags}`;
  const resp = await api("PUT", kvPath(base.Key) + q, { body: new TextEncoder().encode(value) });
  if (!resp.ok) { setStatus(`Not saved: ${await problem(resp)}`, "bad"); return; }
  if (await resp.json() === true) {
    setStatus(`Saved ${base.Key}.`, "ok");
    if (base.ModifyIndex === 0) S.folder = null; // a new key: its folder's tree is loaded again
    if (location.hash === kvHash(base.Key)) showPrefix(base.Key);
    else location.hash = kvHash(base.Key);
    return;
  }
  await showConflict(base, value, flags);
}

async function showConflict(base, mine, flags) {
  let current = null;
  try {
    current = (await getEntries(base.Key, [null]))[0];
  } catch (err) {
    setStatus(`Not saved (the key changed) and the current value cannot be read: ${err.message}`, "bad");
    return;
  }
  const theirs = current ? decodeValue(current) : null;
  const theirsText = !current ? "(the key was deleted)" : theirs.text === null ? "(binary value)" : theirs.text;
  const what = base.ModifyIndex === 0 ? "This key was created by someone else meanwhile"
    : current ? `Someone changed this key after you opened it (ModifyIndex ${base.ModifyIndex} → ${current.ModifyIndex})`
      : "Someone deleted this key after you opened it";
  S.els.detail.replaceChildren(h("div", { class: "kv-conflict", role: "alert" },
    h("h2", { class: "kv-h" }, "Conflict: not saved"),
    h("p", {}, `${what}. Nothing was overwritten. Compare and choose:`),
    h("div", { class: "kv-compare" },
      h("figure", { class: "kv-mine" }, h("figcaption", {}, "Your version"), h("pre", { class: "kv-value mono" }, mine)),
      h("figure", { class: "kv-theirs" }, h("figcaption", {}, current ? `Current version (ModifyIndex ${current.ModifyIndex})`
        : "Current version"), h("pre", { class: "kv-value mono" }, theirsText))),
    h("div", { class: "kv-row" },
      button("Save mine over it", () => save({ Key: base.Key, ModifyIndex: current ? current.ModifyIndex : 0 }, mine, flags),
        "btn btn-danger"),
      button("Discard mine, show current", () => openKey(base.Key)),
      button("Edit mine again", () => editor({ key: base.Key, text: mine, flags, title: "Edit (after a conflict)",
        onSave: (_k, value, f) => save(current ? { Key: base.Key, ModifyIndex: current.ModifyIndex } : { Key: base.Key, ModifyIndex: 0 }, value, f) })))));
  setStatus("Conflict: the key changed meanwhile; nothing was overwritten.", "warn");
}

// -- deletes -----------------------------------------------------------------------------------

async function deleteKey(entry) {
  const yes = await confirmDialog({ title: "Delete key", confirmLabel: "Delete", danger: true,
    body: [h("p", {}, "Delete ", h("code", {}, entry.Key), "?")] });
  if (!yes) return;
  setStatus(`Deleting ${entry.Key}…`);
  const resp = await api("DELETE", `${kvPath(entry.Key)}?cas=${entry.ModifyIndex}`);
  if (!resp.ok) { setStatus(`Not deleted: ${await problem(resp)}`, "bad"); return; }
  if (await resp.json() !== true) {
    setStatus(`Not deleted: ${entry.Key} changed after you opened it. Look at it again first.`, "warn");
    openKey(entry.Key);
    return;
  }
  setStatus(`Deleted ${entry.Key}.`, "ok");
  S.folder = null;
  location.hash = kvHash(parentOf(entry.Key));
}

async function deletePrefix() {
  const prefix = S.folder;
  let keys;
  try {
    keys = await getJSON(kvPath(prefix) + "?keys", []);
  } catch (err) {
    setStatus("Cannot count the keys: " + err.message, "bad");
    return;
  }
  if (!keys.length) { setStatus(`No keys under ${prefix}.`); return; }
  const n = String(keys.length);
  const yes = await confirmDialog({ title: "Delete a prefix", confirmLabel: `Delete ${n} keys`, danger: true,
    body: [h("p", { class: "kv-count" }, `This deletes ${n} key${n === "1" ? "" : "s"} under `, h("code", {}, prefix), "."),
      h("p", {}, `Type ${n} or the prefix to confirm.`)],
    expect: (typed) => typed === n || (typed === prefix && prefix !== "") });
  if (!yes) return;
  setStatus(`Deleting ${n} keys under ${prefix}…`);
  const resp = await api("DELETE", kvPath(prefix) + "?recurse");
  if (!resp.ok || await resp.json() !== true) {
    setStatus(`Not deleted: ${resp.ok ? "refused" : await problem(resp)}`, "bad");
    return;
  }
  setStatus(`Deleted ${n} keys under ${prefix}.`, "ok");
  S.folder = null;
  location.hash = kvHash(parentOf(prefix));
}

// -- export and import (Consul's `consul kv export` format) ------------------------------------

async function exportPrefix() {
  const prefix = S.folder;
  let entries;
  try {
    entries = await getJSON(kvPath(prefix) + "?recurse", []);
  } catch (err) {
    setStatus("Export failed: " + err.message, "bad");
    return;
  }
  const doc = entries.map((e) => ({ key: e.Key, flags: e.Flags, value: e.Value || "" }));
  download(new Blob([JSON.stringify(doc, null, "\t")], { type: "application/json" }), `kv-export-${fileName(prefix)}.json`);
  setStatus(`Exported ${doc.length} keys under ${prefix || "(root)"}.`, "ok");
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// The whole file is checked before anything is sent: a malformed file is one error, no change.
export function parseExport(text) {
  let doc;
  try { doc = JSON.parse(text); } catch (err) { throw new Error(`not JSON (${err.message})`); }
  if (!Array.isArray(doc)) throw new Error("not a kv export: the top level must be an array");
  return doc.map((item, i) => {
    const at = `entry ${i + 1}`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) throw new Error(`${at}: not an object`);
    if (typeof item.key !== "string" || !item.key) throw new Error(`${at}: "key" must be a non-empty string`);
    if (/[\n\0]/.test(item.key)) throw new Error(`${at}: "key" contains a newline or NUL`);
    if (new TextEncoder().encode(item.key).length > 512) throw new Error(`${at}: "key" is over 512 bytes`);
    const flags = item.flags ?? 0;
    if (!Number.isInteger(flags) || flags < 0) throw new Error(`${at} (${item.key}): "flags" must be an unsigned integer`);
    const value = item.value ?? "";
    if (typeof value !== "string" || !B64.test(value)) throw new Error(`${at} (${item.key}): "value" must be base64`);
    return { key: item.key, flags, value };
  });
}

function batches(items) {
  const out = [];
  let batch = [];
  let size = 0;
  for (const it of items) {
    const cost = it.key.length * 3 + it.value.length + 96;
    if (batch.length && (batch.length === TXN_OPS || size + cost > TXN_BYTES)) { out.push(batch); batch = []; size = 0; }
    batch.push(it);
    size += cost;
  }
  if (batch.length) out.push(batch);
  return out;
}

async function importChosen() {
  const file = S.els.importFile.files[0];
  S.els.importFile.value = "";
  if (!file) return;
  let items;
  try {
    items = parseExport(await file.text());
  } catch (err) {
    setStatus(`Import refused, nothing changed: ${file.name}: ${err.message}`, "bad");
    return;
  }
  const under = h("input", { class: "mono", "aria-label": "Prefix to put before every key", value: "" });
  const yes = await confirmDialog({ title: "Import keys", confirmLabel: `Import ${items.length} keys`,
    body: [h("p", {}, `${file.name}: ${items.length} keys, written in transactions of at most ${TXN_OPS}.`),
      h("label", {}, "Put before every key (optional) ", under)] });
  if (!yes) return;
  const prefix = under.value;
  const groups = batches(items);
  const progress = h("progress", { max: items.length, value: 0, "aria-label": "Import progress" });
  const line = h("p", { role: "status" }, `0 of ${items.length}`);
  S.els.detail.replaceChildren(h("h2", { class: "kv-h" }, "Import"), progress, line);
  setStatus(`Importing ${items.length} keys…`);
  let done = 0;
  for (let i = 0; i < groups.length; i++) {
    const ops = groups[i].map((it) => ({ KV: { Verb: "set", Key: prefix + it.key, Value: it.value, Flags: it.flags } }));
    const resp = await api("PUT", "/v1/txn", { body: JSON.stringify(ops), headers: { "Content-Type": "application/json" } });
    if (!resp.ok) {
      const why = await problem(resp);
      const msg = `Import stopped at transaction ${i + 1} of ${groups.length}: ${why}. `
        + `${done} keys (transactions 1 to ${i}) were written; nothing of transaction ${i + 1} or later.`;
      line.textContent = msg;
      setStatus(msg, "bad");
      return;
    }
    done += ops.length;
    progress.value = done;
    line.textContent = `${done} of ${items.length}`;
  }
  const msg = `Imported ${done} keys${prefix ? " under " + prefix : ""} in ${groups.length} transaction${groups.length === 1 ? "" : "s"}.`;
  line.textContent = msg;
  setStatus(msg, "ok");
  loadTree(S.folder); // the new keys in the tree; the result stays in view
}

// Same-origin HTTP for the console, and the ACL token (kept in this module's memory only:
// never in localStorage, never in a URL). The contract with kv.js: api, setToken, hasToken,
// b64decode, b64encode, utf8.

let token = "";
let asking = null; // one prompt at a time: concurrent 403s wait for the same answer

export function setToken(t) { token = t || ""; }
export function hasToken() { return token !== ""; }

export async function api(method, path, { body, headers, signal } = {}) {
  const send = () => {
    const h = new Headers(headers || {});
    if (token) h.set("X-Consul-Token", token);
    return fetch(path, { method, body, headers: h, signal, credentials: "same-origin", cache: "no-store" });
  };
  const resp = await send();
  if (resp.status !== 403) return resp;
  const text = await resp.clone().text();
  if (!/acl|permission|token/i.test(text)) return resp;
  const given = await askToken(hasToken() ? "That token may not do this: " + text.trim() : text.trim());
  if (!given) return resp;
  return send();
}

// A modal dialog (showModal makes the rest of the page inert, so focus stays inside); Esc
// cancels. Resolves to true when a token was entered.
export function askToken(why) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dlg = document.createElement("dialog");
    dlg.id = "token-dialog";
    dlg.setAttribute("aria-labelledby", "token-title");
    dlg.innerHTML = `<form method="dialog">
      <h2 id="token-title">ACL token needed</h2>
      <p class="muted" id="token-why"></p>
      <p class="muted">The token stays in this tab's memory only.</p>
      <label for="token-input">Token (SecretID)</label>
      <input id="token-input" type="password" autocomplete="off" spellcheck="false" class="mono" required>
      <div class="row"><button type="submit" class="btn">Use token</button>
      <button type="button" class="btn" id="token-cancel">Cancel</button></div></form>`;
    dlg.querySelector("#token-why").textContent = why || "";
    document.body.append(dlg);
    const input = dlg.querySelector("#token-input");
    const done = (ok) => {
      if (ok) setToken(input.value.trim());
      dlg.close();
      dlg.remove();
      asking = null;
      resolve(ok);
    };
    dlg.querySelector("form").addEventListener("submit", (e) => { e.preventDefault(); done(input.value.trim() !== ""); });
    dlg.querySelector("#token-cancel").addEventListener("click", () => done(false));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    dlg.showModal();
    input.focus();
  });
  return asking;
}

export function b64decode(str) {
  const bin = atob(str || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

const strict = new TextDecoder("utf-8", { fatal: true });
export function utf8(bytes) {
  try { return strict.decode(bytes); } catch { return null; }
}

// A server-sent event stream read with fetch (EventSource cannot send the token header).
// Calls onEvent(name, data) per event; resolves when the stream ends.
export async function readEvents(resp, onEvent) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

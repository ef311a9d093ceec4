// THROWAWAY copy on the ui-kv branch: the console helper owns this file; the lead keeps theirs.
// The contract's exports, minimally.
let token = null;

export function setToken(t) { token = t || null; }
export function hasToken() { return token !== null; }

function askToken() {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    const form = document.createElement("form");
    form.method = "dialog";
    const label = document.createElement("label");
    label.textContent = "ACL token ";
    const input = document.createElement("input");
    input.type = "password";
    input.autocomplete = "off";
    label.append(input);
    const ok = document.createElement("button");
    ok.className = "btn";
    ok.textContent = "Use token";
    form.append(label, ok);
    dialog.append(form);
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const value = dialog.returnValue === "cancel" ? null : input.value;
      dialog.remove();
      resolve(value || null);
    });
    dialog.addEventListener("cancel", () => { dialog.returnValue = "cancel"; });
    dialog.showModal();
  });
}

export async function api(method, path, { body, headers, signal } = {}) {
  const send = () => {
    const h = new Headers(headers || {});
    if (token) h.set("X-Consul-Token", token);
    return fetch(path, { method, body, headers: h, signal, credentials: "same-origin" });
  };
  let resp = await send();
  if (resp.status === 403) {
    const text = await resp.clone().text();
    if (/acl|permission|token/i.test(text)) {
      const t = await askToken();
      if (t) { setToken(t); resp = await send(); }
    }
  }
  return resp;
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

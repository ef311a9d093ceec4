// Pretty-printing of values for the KV browser: JSON re-indented and YAML highlighted, by hand
// (no library: a value is shown, never evaluated). Both return a DocumentFragment of text nodes
// and <span class="tok-..."> elements; no value ever reaches innerHTML.

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

// JSON: re-indented token by token from the text itself, so numbers keep their exact spelling
// (JSON.parse would round 2^64-1 and drop "1.0"'s zero). Call only on text JSON.parse accepted.
const JSON_TOKEN = /\s+|"(?:[^"\\]|\\.)*"|[{}[\],:]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/gy;

export function prettyJSON(text) {
  const out = document.createDocumentFragment();
  let depth = 0;
  let pending = ""; // plain text (punctuation, newlines) gathered between highlighted tokens
  const indent = () => "\n" + "  ".repeat(depth);
  const flush = () => { if (pending) { out.append(pending); pending = ""; } };
  const tokens = [];
  JSON_TOKEN.lastIndex = 0;
  let m;
  while (JSON_TOKEN.lastIndex < text.length && (m = JSON_TOKEN.exec(text)) !== null) {
    if (!/^\s+$/.test(m[0])) tokens.push(m[0]);
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const next = tokens[i + 1];
    if (t === "{" || t === "[") {
      const close = t === "{" ? "}" : "]";
      if (next === close) { pending += t + close; i++; continue; } // {} and [] stay on one line
      depth++;
      pending += t + indent();
    } else if (t === "}" || t === "]") {
      depth--;
      pending += indent() + t;
    } else if (t === ",") {
      pending += "," + indent();
    } else if (t === ":") {
      pending += ": ";
    } else {
      flush();
      const isKey = t.startsWith('"') && next === ":";
      out.append(span(isKey ? "tok-key" : t.startsWith('"') ? "tok-str" : /^[-\d]/.test(t) ? "tok-num" : "tok-lit", t));
    }
  }
  flush();
  return out;
}

export function isJSON(text) {
  const head = text.trimStart()[0];
  if (head !== "{" && head !== "[") return false; // a bare "3" or "true" is shown as text
  try { JSON.parse(text); return true; } catch { return false; }
}

// YAML: a line-by-line highlighter (the text is shown as written: YAML's layout is its meaning).
// It recognises comments, document markers, `key:` heads (after list dashes), quoted strings,
// numbers, booleans and nulls, anchors/aliases/tags; anything else is plain text.
const YAML_KEY = /^(\s*(?:-\s+)*)((?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#:'"{}[\],&*!|>%@`-][^#:]*?|-[^\s#:][^#:]*?))(\s*:)(?=\s|$)/;
const YAML_SCALAR = /^(?:[-+]?(?:\d[\d_]*)(?:\.\d*)?(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+|\.inf|-\.inf|\.nan|true|false|yes|no|on|off|null|~)$/i;

function yamlValue(out, rest) {
  // rest: what follows a key or a dash: a scalar, maybe a comment after " #".
  const hash = rest.search(/(^|\s)#/);
  const value = hash >= 0 ? rest.slice(0, hash) : rest;
  const comment = hash >= 0 ? rest.slice(hash) : "";
  const lead = value.match(/^\s*/)[0];
  const body = value.trim();
  const trail = value.slice(lead.length + body.length);
  out.append(lead);
  if (body) {
    let cls = null;
    if (/^(["']).*\1$/.test(body)) cls = "tok-str";
    else if (YAML_SCALAR.test(body)) cls = /^[-+.\d0]/.test(body) ? "tok-num" : "tok-lit";
    else if (/^[&*!]/.test(body)) cls = "tok-tag";
    out.append(cls ? span(cls, body) : body);
  }
  out.append(trail);
  if (comment) out.append(span("tok-comment", comment));
}

export function highlightYAML(text) {
  const out = document.createDocumentFragment();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (i > 0) out.append("\n");
    if (/^\s*#/.test(line)) { out.append(span("tok-comment", line)); return; }
    if (/^(---|\.\.\.)(\s|$)/.test(line)) { out.append(span("tok-doc", line)); return; }
    const m = YAML_KEY.exec(line);
    if (m) {
      out.append(m[1], span("tok-key", m[2]), m[3]);
      yamlValue(out, line.slice(m[0].length));
      return;
    }
    const dash = /^(\s*-\s+)(.*)$/.exec(line);
    if (dash) { out.append(dash[1]); yamlValue(out, dash[2]); return; }
    yamlValue(out, line);
  });
  return out;
}

// A value is taken for YAML when it is not JSON and most of its non-blank, non-comment lines
// are `key: ...`, `- item` or document markers (a plain sentence with one colon is not).
export function isYAML(text) {
  if (isJSON(text) || !text.includes("\n") && !/^---/.test(text)) return false;
  const lines = text.split("\n").filter((l) => l.trim() && !/^\s*#/.test(l));
  if (lines.length < 1) return false;
  const yamlish = lines.filter((l) => YAML_KEY.test(l) || /^\s*-(\s|$)/.test(l) || /^(---|\.\.\.)/.test(l)
    || /^\s+\S/.test(l));
  const keyed = lines.some((l) => YAML_KEY.test(l) || /^\s*-\s/.test(l));
  return keyed && yamlish.length / lines.length >= 0.8;
}

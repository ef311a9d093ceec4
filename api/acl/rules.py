"""ACL policy rules, Consul's syntax for the part raftkv enforces: parse, validate, merge.

    key_prefix "app/" { policy = "read" }     # every key starting with app/
    key "app/secret"  { policy = "deny" }     # exactly this key
    acl = "read"                              # the /v1/acl routes (write: change them)
    operator = "write"                        # /v1/operator/raft, members
    session_prefix "" { policy = "write" }    # sessions of any node (session "n1": node n1)

Levels: read, list (read, as raftkv has no separate list check), write, deny. The same in
JSON (`{"key_prefix": {"app/": {"policy": "read"}}}`), which py-consul sends when given a
dict. Any other rule kind (service, node, ...) is refused with a reason rather than
ignored, so a policy never seems to grant what raftkv does not enforce.

The HCL reader is a small strict parser for exactly these shapes (blocks with one label,
`name = "string"` attributes, comments): no dependency, and a one-line error naming the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

LEVELS = ("read", "list", "write", "deny")
_PRECEDENCE = {"read": 1, "list": 2, "write": 3, "deny": 4}  # Consul's takesPrecedenceOver
_TOKEN = re.compile(r'''
    (?P<space>[ \t\r\n]+) | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*") | (?P<ident>[A-Za-z_][A-Za-z0-9_\-]*) | (?P<punct>[{}=,])
''', re.VERBOSE | re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/"}


class RulesError(ValueError):
    """Rules that do not parse or grant nothing raftkv knows; the message is one line."""


@dataclass
class Rules:
    keys: dict[str, str] = field(default_factory=dict)  # exact key -> level
    key_prefixes: dict[str, str] = field(default_factory=dict)  # prefix -> level
    acl: str | None = None
    operator: str | None = None
    sessions: dict[str, str] = field(default_factory=dict)  # exact node name -> level
    session_prefixes: dict[str, str] = field(default_factory=dict)  # node name prefix -> level

    def merge(self, other: Rules) -> None:
        """Fold `other` in; where both name the same thing, deny > write > list > read (Consul)."""
        for mine, theirs in ((self.keys, other.keys), (self.key_prefixes, other.key_prefixes),
                             (self.sessions, other.sessions), (self.session_prefixes, other.session_prefixes)):
            for name, level in theirs.items():
                mine[name] = _stronger(mine.get(name), level) or level
        self.acl = _stronger(self.acl, other.acl)
        self.operator = _stronger(self.operator, other.operator)


def _stronger(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _PRECEDENCE[a] >= _PRECEDENCE[b] else b


def parse_rules(text: str) -> Rules:
    """The rules of one policy; RulesError with a one-line reason when they are not valid."""
    if not text.strip():
        return Rules()
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RulesError(f"Failed to parse ACL rules: invalid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RulesError("Failed to parse ACL rules: a JSON document must be an object")
        items = _items_from_json(doc)
    else:
        items = _HclReader(text).body(top=True)
    rules = Rules()
    for kind, label, value in items:
        rules.merge(_one_rule(kind, label, value))
    return rules


_NAMED_KINDS = ("key", "key_prefix", "session", "session_prefix")


def _one_rule(kind: str, label: str | None, value) -> Rules:
    if kind in _NAMED_KINDS:
        if label is None or not isinstance(value, dict):
            raise RulesError(f"Failed to parse ACL rules: {kind} needs a name and a block: "
                             f'{kind} "NAME" {{ policy = "read" }}')
        unknown = set(value) - {"policy"}
        if unknown:
            raise RulesError(f"Failed to parse ACL rules: unknown field {sorted(unknown)[0]!r} in {kind} {label!r}")
        level = value.get("policy")
        if level not in LEVELS:
            raise RulesError(f"Invalid {kind} policy {level!r} for {label!r}: use read, list, write or deny")
        rules = Rules()
        table = {"key": rules.keys, "key_prefix": rules.key_prefixes, "session": rules.sessions,
                 "session_prefix": rules.session_prefixes}[kind]
        table[label] = level
        return rules
    if kind in ("acl", "operator"):
        if label is not None or value not in ("read", "write", "deny"):
            raise RulesError(f'Invalid {kind} policy {value!r}: use {kind} = "read", "write" or "deny"')
        return Rules(acl=value) if kind == "acl" else Rules(operator=value)
    raise RulesError(f"Failed to parse ACL rules: unsupported rule {kind!r} "
                     "(raftkv enforces key, key_prefix, session, session_prefix, acl and operator)")


def _items_from_json(doc: dict) -> list[tuple[str, str | None, object]]:
    """[(kind, label, value)] from Consul's JSON rules: labelled kinds map names to blocks,
    or hold a list of such maps (HCL's JSON form)."""
    items: list[tuple[str, str | None, object]] = []
    for kind, value in doc.items():
        if kind in _NAMED_KINDS:
            maps = value if isinstance(value, list) else [value]
            for one in maps:
                if not isinstance(one, dict):
                    raise RulesError(f"Failed to parse ACL rules: {kind} must map names to blocks")
                for label, block in one.items():
                    items.append((kind, label, block[0] if isinstance(block, list) and block else block))
        else:
            items.append((kind, None, value))
    return items


class _HclReader:
    """Recursive descent over the tokens of the HCL subset above."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, line)
        pos, line = 0, 1
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise RulesError(f"Failed to parse ACL rules: line {line}: unexpected {text[pos]!r}")
            kind = m.lastgroup or ""
            if kind not in ("space", "comment"):
                self.tokens.append((kind, m.group(), line))
            line += m.group().count("\n")
            pos = m.end()
        self.i = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, kind: str, text: str | None = None) -> str:
        tok = self._peek()
        if tok is None or tok[0] != kind or (text is not None and tok[1] != text):
            where = f"line {tok[2]}: unexpected {tok[1]!r}" if tok else "unexpected end of rules"
            raise RulesError(f"Failed to parse ACL rules: {where} (expected {text or kind})")
        self.i += 1
        return tok[1]

    def body(self, top: bool) -> list:
        items: list = []
        while (tok := self._peek()) is not None and not (tok[0] == "punct" and tok[1] == "}"):
            if tok[0] == "punct" and tok[1] == ",":
                self.i += 1
                continue
            name = self._take("ident")
            label = _unquote(self._take("string")) if (nxt := self._peek()) and nxt[0] == "string" else None
            if (nxt := self._peek()) and nxt[0] == "punct" and nxt[1] == "=":
                self.i += 1
                value: object = _unquote(self._take("string"))
            else:
                self._take("punct", "{")
                value = {k: v for k, _, v in self.body(top=False)}
                self._take("punct", "}")
            items.append((name, label, value))
        if top and self._peek() is not None:
            raise RulesError(f"Failed to parse ACL rules: line {self.tokens[self.i][2]}: unexpected '}}'")
        return items


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])

"""Who a request is and what it may do: the token it carries, resolved to an Authorizer.

Every route asks here, on both HTTP fronts: the KV service functions (api/kv.py, which the
lean front calls too), transactions, snapshots, the operator routes and /v1/acl. A node
resolves tokens from its own replicated copy of the ACL state (node/acl.py), so a follower
decides locally before forwarding, and the leader decides again on the forwarded request
(the token travels with it). A token created a moment ago may be unknown, for the few
milliseconds replication takes, to a node other than the one that created it.

Decisions follow Consul's policy authorizer: for a key, an exact `key` rule, else the
longest matching `key_prefix`; no rule falls back to the default policy (allow or deny).
ACL management and snapshots are never granted by the default policy, only by a rule
(`acl = "write"`) or the global-management policy, as in Consul.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from api.acl.rules import Rules, parse_rules
from api.errors import HTTPProblem
from node.acl import ANONYMOUS_ID, GLOBAL_MANAGEMENT_ID, secret_hash
from node.reads import ReadView

DEFAULT_POLICY_HEADER = "X-Consul-Default-ACL-Policy"
_CACHE_LIMIT = 1024


def request_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The token a request carries, where Consul looks: ?token=, X-Consul-Token, then
    `Authorization: Bearer`. "" when none (the anonymous token)."""
    token = query.get("token") or headers.get("X-Consul-Token")
    if token:
        return token
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.split()[0]
    return ""


def denied(accessor: str, resource: str, level: str, name: str | None = None) -> HTTPProblem:
    """Consul's 403 line: which token lacks which permission on what."""
    on = f' on "{name}"' if name else ""
    return HTTPProblem(403, f"Permission denied: token with AccessorID '{accessor}' lacks permission "
                            f"'{resource}:{level}'{on}")


def _enforce(level: str | None, need: str) -> bool | None:
    """Consul's enforce: True allow, False deny, None no decision (the default applies)."""
    if level is None:
        return None
    if level == "write":
        return True
    if level in ("read", "list"):
        return need == "read"
    return False  # deny


def _rule_for(name: str, exact: dict[str, str], prefixes: dict[str, str]) -> str | None:
    """The level the most specific rule grants on `name`: an exact rule, else the longest prefix."""
    if name in exact:  # an exact rule beats a prefix rule of the same length
        return exact[name]
    best, level = -1, None
    for prefix, rule in prefixes.items():
        if len(prefix) > best and name.startswith(prefix):
            best, level = len(prefix), rule
    return level


@dataclass
class Authorizer:
    accessor_id: str
    rules: Rules
    default_allow: bool
    management: bool = False

    # -- keys --------------------------------------------------------------------------------
    def _key_rule(self, key: str) -> str | None:
        return _rule_for(key, self.rules.keys, self.rules.key_prefixes)

    def _allows(self, decision: bool | None) -> bool:
        return self.default_allow if decision is None else decision

    def key_read(self, key: str) -> bool:
        return self.management or self._allows(_enforce(self._key_rule(key), "read"))

    def key_write(self, key: str) -> bool:
        return self.management or self._allows(_enforce(self._key_rule(key), "write"))

    def key_write_prefix(self, prefix: str) -> bool:
        """Write on every key under `prefix` (DELETE ?recurse, delete-tree): the rule covering
        the prefix grants write and no rule inside it grants less (Consul's KeyWritePrefix)."""
        if self.management:
            return True
        covering = [p for p in self.rules.key_prefixes if prefix.startswith(p)]
        base = _enforce(self.rules.key_prefixes[max(covering, key=len)], "write") if covering else None
        if base is False:
            return False
        inside = [lvl for name, lvl in (*self.rules.keys.items(), *self.rules.key_prefixes.items())
                  if name.startswith(prefix) and lvl != "write"]
        return False if inside else self._allows(base)

    def require_key(self, key: str, level: str) -> None:
        if not (self.key_read(key) if level == "read" else self.key_write(key)):
            raise denied(self.accessor_id, "key", level, key)

    def require_key_prefix_write(self, prefix: str) -> None:
        if not self.key_write_prefix(prefix):
            raise denied(self.accessor_id, "key", "write", prefix)

    # -- sessions (Consul's session and session_prefix rules, by node name) -------------------
    def session_allowed(self, node: str, level: str) -> bool:
        rule = _rule_for(node, self.rules.sessions, self.rules.session_prefixes)
        return self.management or self._allows(_enforce(rule, level))

    def require_session(self, node: str, level: str) -> None:
        if not self.session_allowed(node, level):
            raise denied(self.accessor_id, "session", level, node)

    # -- acl, snapshots, operator ------------------------------------------------------------
    def acl_allowed(self, level: str) -> bool:
        return self.management or bool(_enforce(self.rules.acl, level))  # never the default policy

    def require_acl(self, level: str) -> None:
        if not self.acl_allowed(level):
            raise denied(self.accessor_id, "acl", level)

    def require_operator(self, level: str) -> None:
        if not (self.management or self._allows(_enforce(self.rules.operator, level))):
            raise denied(self.accessor_id, "operator", level)


ALLOW_ALL = Authorizer(ANONYMOUS_ID, Rules(), default_allow=True, management=True)


class AclEnforcer:
    """ACLs as this node enforces them: off (`default_policy` None: everything is allowed),
    or on with a default policy. Compiled rules are cached by (policy ID, ModifyIndex), and
    authorizers by the versions of the token and its policies: a change of either is a new key."""

    def __init__(self, node, default_policy: str | None) -> None:
        self.node = node  # api.node_port.Node
        self.default_policy = default_policy
        self.header_value = default_policy or "allow"  # Consul answers "allow" with ACLs off
        self._compiled: dict[tuple[str, int], Rules] = {}
        self._authorizers: dict[tuple, Authorizer] = {}

    @property
    def enabled(self) -> bool:
        return self.default_policy is not None

    def authorize(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Authorizer:
        """The request's authorizer; 403 "ACL not found" for a secret no token has."""
        if self.default_policy is None:
            return ALLOW_ALL
        return self.resolve(request_token(headers, query))

    def resolve(self, secret: str) -> Authorizer:
        with self.node.read_view() as view:
            found = self._lookup(view, secret)
        if found is None:
            raise HTTPProblem(403, "ACL not found")
        accessor, token_version, policies = found
        key = (accessor, token_version, tuple((pid, modify_index) for pid, modify_index, _ in policies))
        authz = self._authorizers.get(key)
        if authz is None:
            rules = Rules()
            for pid, modify_index, text in policies:
                rules.merge(self._compile(pid, modify_index, text))
            management = any(pid == GLOBAL_MANAGEMENT_ID for pid, _, _ in policies)
            authz = Authorizer(accessor, rules, self.default_policy == "allow", management)
            if len(self._authorizers) >= _CACHE_LIMIT:
                self._authorizers.clear()
            self._authorizers[key] = authz
        return authz

    @staticmethod
    def _lookup(view: ReadView, secret: str) -> tuple[str, int, list[tuple[str, int, str]]] | None:
        """(accessor, its ModifyIndex, [(policy id, ModifyIndex, rules)]) of the token `secret`
        names, copied out under the read lock; None when no token has it."""
        acl = view.acl()
        if secret in ("", "anonymous"):
            token = acl.tokens.get(ANONYMOUS_ID)
        else:
            token = acl.token_for_secret(secret_hash(secret))
        if token is None:
            return None
        policies = [(p.id, p.modify_index, p.rules) for pid in token.policy_ids if (p := acl.policies.get(pid))]
        return token.accessor_id, token.modify_index, policies

    def _compile(self, pid: str, modify_index: int, text: str) -> Rules:
        key = (pid, modify_index)
        rules = self._compiled.get(key)
        if rules is None:
            if len(self._compiled) >= _CACHE_LIMIT:
                self._compiled.clear()
            rules = parse_rules(text)  # stored rules were validated when written
            self._compiled[key] = rules
        return rules

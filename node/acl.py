"""The replicated ACL state: policies, tokens and the bootstrap mark (pure, deterministic).

Part of the state machine (node.state_machine applies `AclOp`s here, in log order, on every
node) and of every snapshot image (`to_meta`/`from_meta`). What a token may do is the API's
business (api/acl/); this module only keeps the records and refuses changes that would break
them (a duplicate name or secret, a link to no policy, a second bootstrap).

Token secrets never reach the log, a snapshot or this state: the API proposes the SHA-256 of
a secret (`secret_hash`, hex), and looks a request's token up by the hash of what it sent.

Every refusal is an OpResult(False, reason) with Consul's wording where Consul has one;
`apply` never raises (PySyncObj retries an entry whose apply raised, forever).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from node.codec import AclOp

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_MANAGEMENT_RULES = 'acl = "write"\noperator = "write"\nkey_prefix "" {\n  policy = "write"\n}\n'


def secret_hash(secret: str) -> str:
    """What the state keeps of a token secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def policy_hash(name: str, description: str, rules: str) -> str:
    """Consul's policy Hash field: changes whenever what the policy grants or says changes."""
    return hashlib.sha256("\x00".join((name, description, rules)).encode("utf-8")).hexdigest()[:44]


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    description: str
    rules: str
    hash: str
    create_index: int
    modify_index: int


@dataclass(frozen=True)
class Token:
    accessor_id: str
    secret_hash: str | None  # None: the anonymous token, which no secret names
    description: str
    policy_ids: tuple[str, ...]
    local: bool
    create_time: str  # RFC 3339, chosen by the proposer (no clock here)
    create_index: int
    modify_index: int


BUILTIN_POLICY = Policy(GLOBAL_MANAGEMENT_ID, "global-management", "Builtin Policy that grants unlimited access",
                        GLOBAL_MANAGEMENT_RULES, policy_hash("global-management", "", GLOBAL_MANAGEMENT_RULES), 0, 0)
ANONYMOUS_TOKEN = Token(ANONYMOUS_ID, None, "Anonymous Token", (), False, "1970-01-01T00:00:00Z", 0, 0)


class AclRefused(Exception):
    """A change this state refuses; its message is the one line the client gets."""


class AclState:
    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {GLOBAL_MANAGEMENT_ID: BUILTIN_POLICY}
        self.tokens: dict[str, Token] = {ANONYMOUS_ID: ANONYMOUS_TOKEN}
        self.by_secret: dict[str, str] = {}  # secret hash -> accessor id
        self.bootstrap_index = 0  # index of the bootstrap entry; 0: never bootstrapped
        self.index = 0  # index of the last ACL change (X-Consul-Index of ACL reads)

    # -- reads (under the replica's lock) ----------------------------------------------------
    def token_for_secret(self, hashed: str) -> Token | None:
        accessor = self.by_secret.get(hashed)
        return self.tokens.get(accessor) if accessor is not None else None

    def policy_by_name(self, name: str) -> Policy | None:
        return next((p for p in self.policies.values() if p.name == name), None)

    def pristine(self) -> bool:
        """Nothing was ever changed: a snapshot need not carry this state."""
        return self.index == 0 and self.bootstrap_index == 0

    # -- writes (the applying thread) --------------------------------------------------------
    def apply(self, index: int, op: AclOp) -> tuple[bool, str | None]:
        """(ok, reason when refused)."""
        try:
            getattr(self, "_" + op.action.replace("-", "_"))(index, op.args)
        except AclRefused as exc:
            return False, str(exc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return False, f"malformed ACL change: {exc!r}"
        self.index = index
        return True, None

    def _bootstrap(self, index: int, args: dict) -> None:
        token = _token(args["token"], index)
        if self.bootstrap_index:
            if not args.get("initial"):
                raise AclRefused(f"ACL bootstrap no longer allowed (reset index: {self.bootstrap_index})")
            if token.secret_hash in self.by_secret:  # the configured management token exists already
                return
        else:
            self.bootstrap_index = index
        self._check_new_token(token)
        self._store_token(token)

    def _policy_set(self, index: int, args: dict) -> None:
        p = args["policy"]
        name, pid = str(p["name"]), str(p["id"])
        same_name = self.policy_by_name(name)
        current = self.policies.get(pid)
        if args["create"]:
            if current is not None:
                raise AclRefused(f"Invalid Policy: ID {pid} is already in use")
            if same_name is not None:
                raise AclRefused(f'Invalid Policy: A Policy with Name "{name}" already exists')
            create_index = index
        else:
            if current is None:
                raise AclRefused(f"cannot find policy {pid}")
            if same_name is not None and same_name.id != pid:
                raise AclRefused(f'Invalid Policy: A policy with name "{name}" already exists')
            if pid == GLOBAL_MANAGEMENT_ID and str(p["rules"]) != current.rules:
                raise AclRefused("Changing the Rules for the builtin global-management policy is not permitted")
            create_index = current.create_index
        self.policies[pid] = Policy(pid, name, str(p["description"]), str(p["rules"]), str(p["hash"]),
                                    create_index, index)

    def _policy_delete(self, index: int, args: dict) -> None:
        pid = str(args["id"])
        if pid == GLOBAL_MANAGEMENT_ID:
            raise AclRefused("Delete operation not permitted on the builtin global-management policy")
        self.policies.pop(pid, None)  # absent: nothing to do, as Consul

    def _token_set(self, index: int, args: dict) -> None:
        token = _token(args["token"], index)
        if args["create"]:
            self._check_new_token(token)
            self._store_token(token)
            return
        current = self.tokens.get(token.accessor_id)
        if current is None:
            raise AclRefused(f"Cannot find token {token.accessor_id}")
        if token.secret_hash is not None and token.secret_hash != current.secret_hash:
            raise AclRefused("Changing a token's SecretID is not permitted")
        if token.local != current.local:
            raise AclRefused(f"Cannot toggle local mode of {token.accessor_id}")
        self._check_policies(token.policy_ids)
        self.tokens[token.accessor_id] = replace(current, description=token.description, policy_ids=token.policy_ids,
                                                 modify_index=index)

    def _token_delete(self, index: int, args: dict) -> None:
        accessor = str(args["accessor_id"])
        if accessor == ANONYMOUS_ID:
            raise AclRefused("Delete operation not permitted on the anonymous token")
        token = self.tokens.pop(accessor, None)
        if token is not None and token.secret_hash is not None:
            self.by_secret.pop(token.secret_hash, None)

    def _check_new_token(self, token: Token) -> None:
        if token.accessor_id in self.tokens:
            raise AclRefused("Invalid Token: AccessorID is already in use")
        if token.secret_hash is None or token.secret_hash in self.by_secret:
            raise AclRefused("Invalid Token: SecretID is already in use")
        self._check_policies(token.policy_ids)

    def _check_policies(self, policy_ids: tuple[str, ...]) -> None:
        for pid in policy_ids:
            if pid not in self.policies:
                raise AclRefused(f'No such ACL policy with ID "{pid}"')

    def _store_token(self, token: Token) -> None:
        self.tokens[token.accessor_id] = token
        if token.secret_hash is not None:
            self.by_secret[token.secret_hash] = token.accessor_id

    # -- snapshot image ----------------------------------------------------------------------
    def to_meta(self) -> dict:
        """A copy in plain values (the snapshot writer encodes it on another thread)."""
        return {
            "bootstrap_index": self.bootstrap_index,
            "index": self.index,
            "policies": [[p.id, p.name, p.description, p.rules, p.hash, p.create_index, p.modify_index]
                         for p in self.policies.values()],
            "tokens": [[t.accessor_id, t.secret_hash, t.description, list(t.policy_ids), t.local, t.create_time,
                        t.create_index, t.modify_index] for t in self.tokens.values()],
        }

    @classmethod
    def from_meta(cls, meta: dict) -> AclState:
        state = cls()
        state.bootstrap_index, state.index = int(meta["bootstrap_index"]), int(meta["index"])
        for row in meta["policies"]:
            state.policies[row[0]] = Policy(*row)
        for row in meta["tokens"]:
            state._store_token(Token(row[0], row[1], row[2], tuple(row[3]), bool(row[4]), *row[5:8]))
        return state


def _token(fields: dict, index: int) -> Token:
    hashed = fields.get("secret_hash")
    return Token(str(fields["accessor_id"]), str(hashed) if hashed is not None else None,
                 str(fields.get("description", "")), tuple(str(p) for p in fields.get("policy_ids", ())),
                 bool(fields.get("local", False)), str(fields.get("create_time", "")), index, index)

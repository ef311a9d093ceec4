"""/v1/acl: bootstrap, policies and tokens in Consul's shapes (agent/acl_endpoint.go).

Writes go through the log as one `AclOp` each (node/acl.py checks and applies them on every
node); reads are served like KV reads (`route_read`: the leader by default, this node with
?stale), after the requester's token was checked here. Request bodies are decoded as Go
decodes them, field names case-insensitively (py-consul sends "name" and "rules").

Deviation from Consul, on purpose: a node keeps only the SHA-256 of a token's secret, so the
SecretID is shown once, in the answer to the request that created it (bootstrap, token
create), and as Consul's redaction "<hidden>" in every later answer, to every requester.
Refusals of a change (a duplicate name, a link to no policy) are 400s, not Consul's 500s.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

from aiohttp import web

from api.acl.authz import Authorizer
from api.acl.rules import RulesError, parse_rules
from api.context import CTX, ApiContext
from api.errors import HTTPProblem, bad_request
from api.kv import meta_headers
from api.params import read_params
from api.reads import route_read
from api.reply import Reply
from node.acl import ANONYMOUS_ID, GLOBAL_MANAGEMENT_ID, AclState, Policy, Token, policy_hash, secret_hash
from node.codec import AclOp

REDACTED = "<hidden>"
MAX_BODY_BYTES = 256 * 1024
_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_SECRET = re.compile(r"^[!-~]{1,256}$")  # printable ASCII, no spaces
_UNSUPPORTED = ("roles", "serviceidentities", "nodeidentities", "templatedpolicies", "expirationtime",
                "expirationttl", "authmethod")


def register(app: web.Application) -> None:
    r = app.router
    r.add_put("/v1/acl/bootstrap", bootstrap)
    r.add_put("/v1/acl/policy", create_policy)
    r.add_get("/v1/acl/policies", list_policies)
    r.add_get("/v1/acl/policy/name/{name}", read_policy_by_name)
    r.add_get("/v1/acl/policy/{id}", read_policy)
    r.add_put("/v1/acl/policy/{id}", update_policy)
    r.add_delete("/v1/acl/policy/{id}", delete_policy)
    r.add_put("/v1/acl/token", create_token)
    r.add_get("/v1/acl/tokens", list_tokens)
    r.add_get("/v1/acl/token/self", read_token_self)
    r.add_get("/v1/acl/token/{id}", read_token)
    r.add_put("/v1/acl/token/{id}", update_token)
    r.add_delete("/v1/acl/token/{id}", delete_token)


# -- shared steps ----------------------------------------------------------------------------

def _context(request: web.Request) -> ApiContext:
    ctx = request.app[CTX]
    if not ctx.acl.enabled:
        raise HTTPProblem(401, "ACL support disabled")
    return ctx


def _authorize(request: web.Request, level: str) -> tuple[ApiContext, Authorizer]:
    ctx = _context(request)
    authz = ctx.acl.authorize(request.headers, request.query)
    authz.require_acl(level)
    return ctx, authz


async def _body(request: web.Request, what: str) -> dict:
    """The JSON object of a request, keys lower-cased (Go decodes field names case-insensitively)."""
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPProblem(413, f"{what} too large: the limit is {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"{what} decoding failed: {exc}") from None
    if not isinstance(doc, dict):
        raise bad_request(f"{what} decoding failed: expected a JSON object")
    doc = {str(k).lower(): v for k, v in doc.items()}
    # Fields the server sets itself are ignored, but Go still decodes them into typed fields.
    for name in ("createindex", "modifyindex"):
        value = doc.get(name)
        if value is not None and (type(value) is not int or not 0 <= value < 2**64):
            raise bad_request(f"{what} decoding failed: {name} must be an unsigned integer")
    for name in ("createtime", "hash"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise bad_request(f"{what} decoding failed: {name} must be a string")
    return doc


def _text(doc: dict, name: str, what: str) -> str:
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{what} decoding failed: {name} must be a string")
    return value


async def _propose(ctx: ApiContext, op: AclOp) -> None:
    result = await ctx.node.propose(op, ctx.config.request_timeout_s)
    if not result.ok:
        raise bad_request(result.error or "ACL change refused")


async def _read(ctx: ApiContext, request: web.Request, build) -> web.StreamResponse:
    """Serve an ACL read where KV reads are served (the leader unless ?stale); `build(acl)`
    runs under the read lock and returns the JSON document, or None for a 404 line."""
    params = read_params(request.query)
    forwarded = await route_read(ctx, request, params.consistency)
    if forwarded is not None:
        return forwarded.to_web()
    with ctx.node.read_view() as view:
        acl = view.acl()
        doc, index = build(acl), acl.index
    if isinstance(doc, HTTPProblem):
        raise doc
    return Reply.json(doc, meta_headers(ctx, index, params.consistency)).to_web()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- JSON shapes -----------------------------------------------------------------------------

def policy_json(p: Policy, with_rules: bool = True) -> dict:
    doc = {"ID": p.id, "Name": p.name, "Description": p.description, "Rules": p.rules, "Datacenters": None,
           "Hash": p.hash, "CreateIndex": p.create_index, "ModifyIndex": p.modify_index}
    if not with_rules:
        del doc["Rules"]
    return doc


def token_json(t: Token, acl: AclState, secret: str = REDACTED) -> dict:
    links = [{"ID": pid, "Name": acl.policies[pid].name} for pid in t.policy_ids if pid in acl.policies]
    return {"AccessorID": t.accessor_id, "SecretID": "anonymous" if t.accessor_id == ANONYMOUS_ID else secret,
            "Description": t.description, "Policies": links, "Local": t.local, "CreateTime": t.create_time,
            "CreateIndex": t.create_index, "ModifyIndex": t.modify_index}


def _not_found(kind: str) -> HTTPProblem:
    return HTTPProblem(404, f"Requested {kind} does not exist: ACL not found")


# -- bootstrap -------------------------------------------------------------------------------

async def bootstrap(request: web.Request) -> web.Response:
    ctx = _context(request)
    doc = await _body(request, "Request")
    secret = _text(doc, "bootstrapsecret", "Request") or str(uuid.uuid4())
    if not _SECRET.match(secret):
        raise bad_request("BootstrapSecret must be 1 to 256 printable characters without spaces")
    accessor = str(uuid.uuid4())
    fields = {"accessor_id": accessor, "secret_hash": secret_hash(secret), "policy_ids": [GLOBAL_MANAGEMENT_ID],
              "description": "Bootstrap Token (Global Management)", "local": False, "create_time": _now()}
    result = await ctx.node.propose(AclOp("bootstrap", {"token": fields, "initial": False}),
                                    ctx.config.request_timeout_s)
    if not result.ok:
        raise HTTPProblem(403, f"Permission denied: {result.error}")
    with ctx.node.read_view() as view:
        acl = view.acl()
        answer = token_json(acl.tokens[accessor], acl, secret)
    return Reply.json({"ID": secret, **answer}).to_web()


# -- policies --------------------------------------------------------------------------------

async def _policy_fields(request: web.Request, pid: str, create: bool) -> dict:
    doc = await _body(request, "Policy")
    given_id = _text(doc, "id", "Policy")
    if create and given_id:
        raise bad_request("Cannot specify the ID when creating a new policy")
    if not create and given_id and given_id != pid:
        raise bad_request("Policy ID in URL and payload do not match")
    name, description = _text(doc, "name", "Policy"), _text(doc, "description", "Policy")
    if not name:
        raise bad_request("Invalid Policy: no Name is set")
    if not _POLICY_NAME.match(name):
        raise bad_request("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
    rules = _rules_text(doc.get("rules"))
    try:
        parse_rules(rules)
    except RulesError as exc:
        raise bad_request(str(exc)) from None
    return {"id": pid, "name": name, "description": description, "rules": rules,
            "hash": policy_hash(name, description, rules)}


def _rules_text(value) -> str:
    """The Rules field: HCL or JSON text. A JSON string literal holding the rules (what
    py-consul sends when handed a string: it json.dumps the rules) is unwrapped once."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value)
    if not isinstance(value, str):
        raise bad_request("Policy decoding failed: Rules must be a string")
    if value.strip().startswith('"'):
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        if isinstance(inner, str):
            return inner
    return value


async def create_policy(request: web.Request) -> web.Response:
    ctx, _ = _authorize(request, "write")
    fields = await _policy_fields(request, str(uuid.uuid4()), create=True)
    await _propose(ctx, AclOp("policy-set", {"policy": fields, "create": True}))
    return _stored_policy(ctx, fields["id"])


async def update_policy(request: web.Request) -> web.Response:
    ctx, _ = _authorize(request, "write")
    fields = await _policy_fields(request, request.match_info["id"], create=False)
    await _propose(ctx, AclOp("policy-set", {"policy": fields, "create": False}))
    return _stored_policy(ctx, fields["id"])


def _stored_policy(ctx: ApiContext, pid: str) -> web.Response:
    with ctx.node.read_view() as view:
        policy = view.acl().policies.get(pid)
    if policy is None:  # deleted again meanwhile
        raise _not_found("policy")
    return Reply.json(policy_json(policy)).to_web()


async def delete_policy(request: web.Request) -> web.Response:
    ctx, _ = _authorize(request, "write")
    await _propose(ctx, AclOp("policy-delete", {"id": request.match_info["id"]}))
    return Reply.json(True).to_web()


async def read_policy(request: web.Request) -> web.StreamResponse:
    ctx, _ = _authorize(request, "read")
    pid = request.match_info["id"]
    return await _read(ctx, request,
                       lambda acl: policy_json(p) if (p := acl.policies.get(pid)) else _not_found("policy"))


async def read_policy_by_name(request: web.Request) -> web.StreamResponse:
    ctx, _ = _authorize(request, "read")
    name = request.match_info["name"]
    return await _read(ctx, request,
                       lambda acl: policy_json(p) if (p := acl.policy_by_name(name)) else _not_found("policy"))


async def list_policies(request: web.Request) -> web.StreamResponse:
    ctx, _ = _authorize(request, "read")
    return await _read(ctx, request, lambda acl: [policy_json(p, with_rules=False)
                                                  for p in sorted(acl.policies.values(), key=lambda p: p.id)])


# -- tokens ----------------------------------------------------------------------------------

def _policy_links(doc: dict, acl: AclState) -> list[str]:
    links = doc.get("policies") or []
    if not isinstance(links, list):
        raise bad_request("Token decoding failed: Policies must be a list of {ID} or {Name}")
    ids: list[str] = []
    for link in links:
        link = {str(k).lower(): v for k, v in link.items()} if isinstance(link, dict) else {}
        if link.get("id"):
            pid = str(link["id"])
            if pid not in acl.policies:
                raise bad_request(f'No such ACL policy with ID "{pid}"')
        elif link.get("name"):
            policy = acl.policy_by_name(str(link["name"]))
            if policy is None:
                raise bad_request(f'No such ACL policy with name "{link["name"]}"')
            pid = policy.id
        else:
            raise bad_request("Token decoding failed: each policy link needs an ID or a Name")
        if pid not in ids:
            ids.append(pid)
    return ids


async def _token_doc(request: web.Request) -> dict:
    doc = await _body(request, "Token")
    for name in _UNSUPPORTED:
        if doc.get(name):
            raise bad_request(f"Token decoding failed: {name} is not supported by raftkv (policies only)")
    local = doc.get("local", False)
    if not isinstance(local, bool):
        raise bad_request("Token decoding failed: Local must be true or false")
    return doc


async def create_token(request: web.Request) -> web.Response:
    ctx, _ = _authorize(request, "write")
    doc = await _token_doc(request)
    accessor = _text(doc, "accessorid", "Token") or str(uuid.uuid4())
    try:
        uuid.UUID(accessor)
    except ValueError:
        raise bad_request("Invalid Token: AccessorID must be a UUID") from None
    secret = _text(doc, "secretid", "Token") or str(uuid.uuid4())
    if not _SECRET.match(secret):
        raise bad_request("Invalid Token: SecretID must be 1 to 256 printable characters without spaces")
    with ctx.node.read_view() as view:
        policy_ids = _policy_links(doc, view.acl())
    fields = {"accessor_id": accessor, "secret_hash": secret_hash(secret), "policy_ids": policy_ids,
              "description": _text(doc, "description", "Token"), "local": doc.get("local", False),
              "create_time": _now()}
    await _propose(ctx, AclOp("token-set", {"token": fields, "create": True}))
    return _stored_token(ctx, accessor, secret)


async def update_token(request: web.Request) -> web.Response:
    ctx, _ = _authorize(request, "write")
    accessor = request.match_info["id"]
    doc = await _token_doc(request)
    given = _text(doc, "accessorid", "Token")
    if given and given != accessor:
        raise bad_request("Token Accessor ID in URL and payload do not match")
    secret = _text(doc, "secretid", "Token")
    with ctx.node.read_view() as view:
        acl = view.acl()
        current = acl.tokens.get(accessor)
        policy_ids = _policy_links(doc, acl)
    if current is None:
        raise _not_found("token")
    fields = {"accessor_id": accessor, "secret_hash": secret_hash(secret) if secret else None,
              "policy_ids": policy_ids, "description": _text(doc, "description", "Token"),
              "local": doc.get("local", current.local)}
    await _propose(ctx, AclOp("token-set", {"token": fields, "create": False}))
    return _stored_token(ctx, accessor)


def _stored_token(ctx: ApiContext, accessor: str, secret: str = REDACTED) -> web.Response:
    with ctx.node.read_view() as view:
        acl = view.acl()
        token = acl.tokens.get(accessor)
        doc = token_json(token, acl, secret) if token is not None else None
    if doc is None:
        raise _not_found("token")
    return Reply.json(doc).to_web()


async def delete_token(request: web.Request) -> web.Response:
    ctx, authz = _authorize(request, "write")
    accessor = request.match_info["id"]
    if accessor == authz.accessor_id:
        raise bad_request("Deletion of the request's authorization token is not permitted")
    await _propose(ctx, AclOp("token-delete", {"accessor_id": accessor}))
    return Reply.json(True).to_web()


async def read_token(request: web.Request) -> web.StreamResponse:
    ctx, _ = _authorize(request, "read")
    accessor = request.match_info["id"]
    return await _read(ctx, request,
                       lambda acl: token_json(t, acl) if (t := acl.tokens.get(accessor)) else _not_found("token"))


async def read_token_self(request: web.Request) -> web.StreamResponse:
    """Any valid token may read itself; an unknown secret is 403 "ACL not found"."""
    ctx = _context(request)
    authz = ctx.acl.authorize(request.headers, request.query)
    return await _read(ctx, request, lambda acl: token_json(t, acl) if (t := acl.tokens.get(authz.accessor_id))
                       else HTTPProblem(403, "ACL not found"))


async def list_tokens(request: web.Request) -> web.StreamResponse:
    ctx, _ = _authorize(request, "read")
    policy = request.query.get("policy")
    return await _read(ctx, request, lambda acl: [
        token_json(t, acl) for t in sorted(acl.tokens.values(), key=lambda t: t.accessor_id)
        if not policy or policy in t.policy_ids])

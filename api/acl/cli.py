"""`raftkv acl bootstrap | policy create|list|read|delete | token create|list|read|delete`.

Flags as `consul acl` spells them (-name, -rules, -description, -policy-name, -policy-id, -id;
the --long forms work too); -rules takes the text, @FILE, or - for stdin. Output in Consul's
layout. Every failure is one line on stderr: exit 1 for the cluster's refusal, 2 for bad usage.
The token for the call itself: --token, RAFTKV_HTTP_TOKEN or CONSUL_HTTP_TOKEN (api/cli_http.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from api.cli_http import ClientError, addr_option, endpoint, failure, request


def register(sub) -> None:
    acl = sub.add_parser("acl", help="manage ACL tokens and policies")
    kinds = acl.add_subparsers(dest="kind", metavar="KIND", required=True)
    addr = addr_option()
    kinds.add_parser("bootstrap", help="create the first management token (once per cluster)", parents=[addr])

    policy = kinds.add_parser("policy", help="create, list, read and delete policies")
    pverbs = policy.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = pverbs.add_parser("create", help="create a policy", parents=[addr])
    _flag(create, "name", required=True)
    _flag(create, "rules", default="", help="the rules: text, @FILE or - for stdin")
    _flag(create, "description", default="")
    pverbs.add_parser("list", help="list policies", parents=[addr])
    for verb in ("read", "delete"):
        p = pverbs.add_parser(verb, help=f"{verb} a policy by -id or -name", parents=[addr])
        _flag(p, "id")
        _flag(p, "name")

    token = kinds.add_parser("token", help="create, list, read and delete tokens")
    tverbs = token.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = tverbs.add_parser("create", help="create a token linked to policies", parents=[addr])
    _flag(create, "description", default="")
    _flag(create, "policy-name", action="append", default=[], help="a policy to link, by name (repeat)")
    _flag(create, "policy-id", action="append", default=[], help="a policy to link, by ID (repeat)")
    _flag(create, "secret", help="the SecretID to use (default: a new UUID)")
    tverbs.add_parser("list", help="list tokens", parents=[addr])
    read = tverbs.add_parser("read", help="read a token by -id (AccessorID), or -self", parents=[addr])
    _flag(read, "id")
    read.add_argument("-self", "--self", dest="self_", action="store_true", help="the token this call uses")
    delete = tverbs.add_parser("delete", help="delete a token by -id (AccessorID)", parents=[addr])
    _flag(delete, "id", required=True)
    acl.set_defaults(_run=run)


def _flag(p: argparse.ArgumentParser, name: str, **kwargs) -> None:
    p.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)


def run(args: argparse.Namespace) -> int:
    try:
        args.addr = endpoint(args)  # with the TLS options, checked once
        return _run(args)
    except ClientError as exc:
        print(f"raftkv acl {args.kind}{' ' + args.verb if hasattr(args, 'verb') else ''}: {exc}", file=sys.stderr)
        return 1


def _call(args, method: str, path: str, body: dict | None = None, query: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    status, _, answer = request(args.addr, method, path, query, data, token=args.token)
    if status != 200:
        raise failure(status, answer)
    return json.loads(answer)


def _run(args: argparse.Namespace) -> int:
    if args.kind == "bootstrap":
        _print_token(_call(args, "PUT", "/v1/acl/bootstrap"))
        return 0
    if args.kind == "policy":
        return _policy(args)
    return _token(args)


def _policy(args: argparse.Namespace) -> int:
    if args.verb == "create":
        body = {"Name": args.name, "Description": args.description, "Rules": _rules(args.rules)}
        _print_policy(_call(args, "PUT", "/v1/acl/policy", body))
    elif args.verb == "list":
        for p in _call(args, "GET", "/v1/acl/policies"):
            print(f"{p['Name']}:\n   ID:           {p['ID']}\n   Description:  {p['Description']}")
    else:
        if bool(args.id) == bool(args.name):
            raise ClientError("give the policy as -id ID or -name NAME")
        if args.verb == "read":
            path = f"/v1/acl/policy/{args.id}" if args.id else f"/v1/acl/policy/name/{args.name}"
            _print_policy(_call(args, "GET", path))
        else:
            pid = args.id or _call(args, "GET", f"/v1/acl/policy/name/{args.name}")["ID"]
            _call(args, "DELETE", f"/v1/acl/policy/{pid}")
            print(f"Policy {args.id or args.name!r} deleted successfully")
    return 0


def _token(args: argparse.Namespace) -> int:
    if args.verb == "create":
        links = [{"Name": n} for n in args.policy_name] + [{"ID": i} for i in args.policy_id]
        body: dict = {"Description": args.description, "Policies": links}
        if args.secret:
            body["SecretID"] = args.secret
        _print_token(_call(args, "PUT", "/v1/acl/token", body))
    elif args.verb == "list":
        for i, t in enumerate(_call(args, "GET", "/v1/acl/tokens")):
            print(("\n" if i else "") + _token_text(t))
    elif args.verb == "read":
        if bool(args.id) == bool(args.self_):
            raise ClientError("give the token as -id ACCESSOR_ID or -self")
        _print_token(_call(args, "GET", "/v1/acl/token/self" if args.self_ else f"/v1/acl/token/{args.id}"))
    else:
        _call(args, "DELETE", f"/v1/acl/token/{args.id}")
        print(f"Token {args.id!r} deleted successfully")
    return 0


def _rules(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise ClientError(f"cannot read rules from {value[1:]}: {exc.strerror}") from None
    return value


def _token_text(t: dict) -> str:
    lines = [f"AccessorID:       {t['AccessorID']}", f"SecretID:         {t['SecretID']}",
             f"Description:      {t['Description']}", f"Local:            {str(t['Local']).lower()}",
             f"Create Time:      {t['CreateTime']}", "Policies:"]
    lines += [f"   {p['ID']} - {p['Name']}" for p in t.get("Policies") or []]
    return "\n".join(lines)


def _print_token(t: dict) -> None:
    print(_token_text(t))


def _print_policy(p: dict) -> None:
    print(f"ID:           {p['ID']}\nName:         {p['Name']}\nDescription:  {p['Description']}\n"
          f"Datacenters:  \nRules:\n{p.get('Rules', '')}")

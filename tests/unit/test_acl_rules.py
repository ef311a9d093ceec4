"""ACL rules (api/acl/rules.py) and what an Authorizer decides with them (api/acl/authz.py),
checked against Consul's policy authorizer semantics."""

from __future__ import annotations

import pytest

from api.acl.authz import Authorizer, request_token
from api.acl.rules import Rules, RulesError, parse_rules
from api.errors import HTTPProblem

HCL = '''
# a team's keys
key_prefix "app/" {
  policy = "write"
}
key_prefix "app/secret/" { policy = "deny" }   // nothing under it
key "app/secret/shared" { policy = "read" }
key_prefix "" { policy = "read" }
acl = "read"
operator = "write"
'''


def authz(text: str, default_allow: bool = False) -> Authorizer:
    return Authorizer("acc-1", parse_rules(text), default_allow)


def test_rules_parse_hcl_blocks_attributes_and_comments():
    rules = parse_rules(HCL)
    assert rules.key_prefixes == {"app/": "write", "app/secret/": "deny", "": "read"}
    assert rules.keys == {"app/secret/shared": "read"}
    assert (rules.acl, rules.operator) == ("read", "write")


def test_rules_parse_json_as_py_consul_sends_a_dict():
    rules = parse_rules('{"key_prefix": {"app/": {"policy": "read"}}, "key": [{"x": {"policy": "deny"}}],'
                        ' "operator": "read"}')
    assert rules == Rules(keys={"x": "deny"}, key_prefixes={"app/": "read"}, operator="read")


@pytest.mark.parametrize("text, reason", [
    ('key_prefix "a/" { policy = "admin" }', "Invalid key_prefix policy 'admin'"),
    ('key_prefix "a/" { policy = "read" ', "unexpected end of rules"),
    ('service_prefix "" { policy = "read" }', "unsupported rule 'service_prefix'"),
    ('key_prefix { policy = "read" }', "needs a name"),
    ('key "a" { policy = "read" intentions = "x" }', "unknown field 'intentions'"),
    ('acl = "list"', "Invalid acl policy"),
    ('key "a" { policy = "read" } }', "line 1: unexpected '}'"),
    ('{"key_prefix": ', "invalid JSON"),
    ("key_prefix 'a/' {}", "unexpected"),
])
def test_rules_that_do_not_parse_are_refused_with_one_line(text, reason):
    with pytest.raises(RulesError) as err:
        parse_rules(text)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_authz_longest_prefix_wins_and_exact_key_beats_prefix_of_same_length():
    a = authz(HCL)
    assert a.key_write("app/x") and a.key_read("app/x")
    assert not a.key_read("app/secret/pw") and not a.key_write("app/secret/pw")
    assert a.key_read("app/secret/shared") and not a.key_write("app/secret/shared")
    assert a.key_read("other") and not a.key_write("other")
    exact = authz('key_prefix "k" { policy = "deny" }\nkey "k" { policy = "write" }')
    assert exact.key_write("k") and not exact.key_read("k2")


def test_authz_equal_specificity_merges_deny_over_write_over_read():
    rules = parse_rules('key_prefix "a/" { policy = "read" }')
    for stronger in ('key_prefix "a/" { policy = "write" }', 'key_prefix "a/" { policy = "deny" }'):
        rules.merge(parse_rules(stronger))
        a = Authorizer("acc", rules, default_allow=True)
        assert a.key_write("a/x") is ("write" in stronger)
    assert not Authorizer("acc", rules, default_allow=True).key_read("a/x")  # deny stays once merged
    rules.merge(parse_rules('key_prefix "a/" { policy = "write" }'))
    assert rules.key_prefixes["a/"] == "deny"


def test_authz_no_rule_falls_back_to_the_default_policy_except_for_acl_management():
    allow, deny = authz("", default_allow=True), authz("", default_allow=False)
    assert allow.key_write("any") and not deny.key_read("any")
    allow.require_operator("write")
    with pytest.raises(HTTPProblem):
        deny.require_operator("read")
    for a in (allow, deny):  # ACLs and snapshots only by an explicit grant, as Consul
        assert not a.acl_allowed("read") and not a.acl_allowed("write")
    assert authz('acl = "read"').acl_allowed("read") and not authz('acl = "read"').acl_allowed("write")


def test_authz_write_prefix_needs_write_on_the_prefix_and_nothing_weaker_inside():
    a = authz('key_prefix "app/" { policy = "write" }\nkey "app/keep" { policy = "read" }')
    assert a.key_write_prefix("app/sub/") and not a.key_write_prefix("app/") and not a.key_write_prefix("")
    assert not authz('key_prefix "app/" { policy = "read" }').key_write_prefix("app/")
    assert authz("", default_allow=True).key_write_prefix("x/")
    assert not authz('key "x/y" { policy = "deny" }', default_allow=True).key_write_prefix("x/")


def test_authz_denial_is_consuls_line():
    with pytest.raises(HTTPProblem) as err:
        authz('key_prefix "app/" { policy = "read" }').require_key("app/x", "write")
    assert err.value.status == 403
    assert err.value.reason == ("Permission denied: token with AccessorID 'acc-1' lacks permission 'key:write'"
                                ' on "app/x"')
    with pytest.raises(HTTPProblem) as err:
        authz("").require_acl("write")
    assert err.value.reason == "Permission denied: token with AccessorID 'acc-1' lacks permission 'acl:write'"


def test_request_token_is_taken_from_query_header_or_bearer_in_consuls_order():
    assert request_token({"X-Consul-Token": "h", "Authorization": "Bearer b"}, {"token": "q"}) == "q"
    assert request_token({"X-Consul-Token": "h", "Authorization": "Bearer b"}, {}) == "h"
    assert request_token({"Authorization": "bearer  b c"}, {}) == "b"
    assert request_token({"Authorization": "Basic xyz"}, {}) == ""
    assert request_token({}, {}) == ""


def test_rules_session_and_session_prefix_decide_by_node_name():
    a = authz('session_prefix "" { policy = "read" }\nsession "web-1" { policy = "write" }\n'
              'session_prefix "db-" { policy = "deny" }')
    assert a.session_allowed("web-1", "write") and a.session_allowed("web-2", "read")
    assert not a.session_allowed("web-2", "write") and not a.session_allowed("db-1", "read")
    with pytest.raises(HTTPProblem) as exc:
        a.require_session("web-2", "write")
    assert exc.value.status == 403 and "'session:write' on \"web-2\"" in exc.value.reason
    json_rules = parse_rules('{"session_prefix": {"": {"policy": "write"}}}')
    assert json_rules.session_prefixes == {"": "write"}

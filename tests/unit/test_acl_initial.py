"""`serve --acl` settings and the configured initial management token (api/acl/initial.py),
over the fake node."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from api.acl.initial import keep_initial_management, settings
from node.acl import GLOBAL_MANAGEMENT_ID, secret_hash
from node.codec import AclOp
from tests.api.fake_node import FakeNode


def args(acl=None, token_file=None) -> argparse.Namespace:
    return argparse.Namespace(acl=acl, acl_initial_management_token_file=token_file)


def test_acl_settings_read_the_policy_and_the_token_file(tmp_path, monkeypatch):
    monkeypatch.delenv("RAFTKV_ACL_INITIAL_MANAGEMENT", raising=False)
    secret = tmp_path / "mgmt"
    secret.write_text("s3cret\n")
    assert settings(args()) == (None, None)
    assert settings(args("deny", str(secret))) == ("deny", "s3cret")
    monkeypatch.setenv("RAFTKV_ACL_INITIAL_MANAGEMENT", "from-env")
    assert settings(args("allow")) == ("allow", "from-env")


@pytest.mark.parametrize("given, reason", [
    (args("maybe"), "--acl must be allow or deny"),
    (args(None, "TOKEN_FILE"), "needs --acl"),
    (args("deny", "/no/such/file"), "cannot read"),
])
def test_acl_settings_that_make_no_sense_are_one_line(given, reason, tmp_path, monkeypatch):
    monkeypatch.delenv("RAFTKV_ACL_INITIAL_MANAGEMENT", raising=False)
    if given.acl_initial_management_token_file == "TOKEN_FILE":
        (tmp_path / "t").write_text("x")
        given.acl_initial_management_token_file = str(tmp_path / "t")
    with pytest.raises(ValueError, match=reason):
        settings(given)


async def test_acl_leader_creates_the_initial_management_token_once_and_it_counts_as_bootstrap():
    node = FakeNode()
    node.attach(asyncio.get_running_loop())
    await asyncio.wait_for(keep_initial_management(node, "s3cret", asyncio.Event(), 1.0), 10)
    token = node.state.acl.token_for_secret(secret_hash("s3cret"))
    assert token is not None and token.policy_ids == (GLOBAL_MANAGEMENT_ID,)
    proposed = len(node.proposed)
    await asyncio.wait_for(keep_initial_management(node, "s3cret", asyncio.Event(), 1.0), 10)
    assert len(node.proposed) == proposed  # present already: nothing proposed again
    again = await node.propose(AclOp("bootstrap", {"token": {"accessor_id": "a", "secret_hash": "h"}}), 1.0)
    assert not again.ok and "ACL bootstrap no longer allowed" in (again.error or "")

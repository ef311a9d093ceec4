"""Where serve's cluster secret comes from, and when a node may listen without one (api/cluster_secret.py)."""

import logging
import os

import pytest

from api import cluster_secret
from node.engine.peer_auth import SecretError

SECRET = "s" * 40


def test_the_file_wins_over_the_environment_and_neither_means_no_secret(tmp_path):
    path = tmp_path / "cluster.secret"
    path.write_text(f"{SECRET}\n{'t' * 40}\n")
    os.chmod(path, 0o600)
    env = {cluster_secret.ENV: "e" * 40}
    assert cluster_secret.load(str(path), env) == (SECRET.encode(), b"t" * 40)
    assert cluster_secret.load(None, env) == (b"e" * 40,)
    assert cluster_secret.load(None, {}) == ()
    with pytest.raises(SecretError, match="No such file"):
        cluster_secret.load(str(tmp_path / "absent"), {})


def test_a_secret_file_others_can_read_is_used_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cluster.secret"
    path.write_text(SECRET)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, "raftkv"):
        assert cluster_secret.load(str(path), {}) == (SECRET.encode(),)
    assert "chmod 600" in caplog.text


@pytest.mark.parametrize("bind,refused", [
    ("127.0.0.1:7001", False), ("localhost:7001", False), ("[::1]:7001", False), ("127.3.4.5:7001", False),
    ("0.0.0.0:7001", True), ("[::]:7001", True), ("10.1.2.3:7001", True)])
def test_only_loopback_may_listen_without_a_secret(bind, refused):
    assert (cluster_secret.refusal(bind, (), insecure=False) is not None) == refused
    assert cluster_secret.refusal(bind, (SECRET.encode(),), insecure=False) is None


def test_insecure_raft_is_allowed_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, "raftkv"):
        assert cluster_secret.refusal("0.0.0.0:7001", (), insecure=True) is None
    assert len(caplog.records) == 1 and "--insecure-raft" in caplog.text


@pytest.mark.parametrize("bind,acl,verify,refused", [
    ("127.0.0.1:8501", None, False, False), ("0.0.0.0:8501", None, False, True), ("0.0.0.0:8501", "allow", False, True),
    ("0.0.0.0:8501", "deny", False, False), ("10.1.2.3:8501", None, True, False)])
def test_http_beyond_loopback_needs_acls_that_deny_or_client_certificates(bind, acl, verify, refused):
    assert (cluster_secret.http_refusal(bind, acl, verify, insecure=False) is not None) == refused


def test_insecure_http_is_allowed_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, "raftkv"):
        assert cluster_secret.http_refusal("0.0.0.0:8501", None, False, insecure=True) is None
    assert len(caplog.records) == 1 and "--insecure-http" in caplog.text

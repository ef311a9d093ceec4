"""`raftkv serve`'s TLS options: what is refused at start-up, in one line naming the option,
and the contexts built from good files (TLS 1.2 at least; client certificates when asked)."""

from __future__ import annotations

import os
import ssl

import pytest

from api.cli import build_parser
from api.cli import main as raftkv
from api.tls import TLSError, client_context, node_tls_from_args
from tests.support.certs import Pki


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ours, theirs = Pki(folder / "ours"), Pki(folder / "theirs")
    node, other = ours.issue("node"), theirs.issue("other")
    not_pem = folder / "not.pem"
    not_pem.write_bytes(b"hello")
    return {"ca": ours.ca, "cert": node.cert, "key": node.key, "other_key": other.key,
            "missing": str(folder / "no.pem"), "folder": str(folder), "not_pem": str(not_pem)}


def serve_args(*tls: str):
    return build_parser(["serve"]).parse_args(
        ["serve", "--id", "n1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:2", "--data-dir", "d", *tls])


@pytest.mark.parametrize("options, says", [
    (["--tls-cert-file", "{cert}"], "--tls-cert-file and --tls-key-file go together"),
    (["--tls-ca-file", "{ca}"], "need --tls-cert-file and --tls-key-file"),
    (["--tls-cert-file", "{cert}", "--tls-key-file", "{key}", "--tls-verify-incoming"], "needs --tls-ca-file"),
    (["--tls-cert-file", "{missing}", "--tls-key-file", "{key}"], "--tls-cert-file {missing}: No such file"),
    (["--tls-cert-file", "{cert}", "--tls-key-file", "{folder}"], "--tls-key-file {folder}: Is a directory"),
    (["--tls-cert-file", "{cert}", "--tls-key-file", "{not_pem}"], "--tls-key-file {not_pem}: not a PEM file"),
    (["--tls-cert-file", "{cert}", "--tls-key-file", "{other_key}"], "is not the key of --tls-cert-file"),
    (["--tls-cert-file", "{key}", "--tls-key-file", "{key}"], "not a certificate and its private key"),
    (["--tls-cert-file", "{cert}", "--tls-key-file", "{key}", "--tls-ca-file", "{key}"], "no usable CA certificate"),
])
def test_tls_options_refuse_unusable_files_in_one_line(files, options, says):
    with pytest.raises(TLSError) as refused:
        node_tls_from_args(serve_args(*(o.format(**files) for o in options)))
    message = str(refused.value)
    assert says.format(**files) in message and "\n" not in message


def test_tls_contexts_need_tls_1_2_and_client_certificates_only_with_verify_incoming(files):
    assert node_tls_from_args(serve_args()) is None
    plain = node_tls_from_args(serve_args("--tls-cert-file", files["cert"], "--tls-key-file", files["key"]))
    mutual = node_tls_from_args(serve_args("--tls-cert-file", files["cert"], "--tls-key-file", files["key"],
                                           "--tls-ca-file", files["ca"], "--tls-verify-incoming"))
    assert plain is not None and mutual is not None
    assert plain.server.verify_mode == ssl.CERT_NONE and mutual.server.verify_mode == ssl.CERT_REQUIRED
    for ctx in (plain.server, plain.peer, mutual.server, mutual.peer):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert mutual.peer.check_hostname and mutual.peer.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(TLSError, match="--client-cert and --client-key go together"):
        client_context(files["ca"], files["cert"], None)


def test_serve_refuses_to_start_with_a_mismatched_key(files, capsys, tmp_path):
    code = raftkv(["serve", "--id", "n1", "--raft", "127.0.0.1:1", "--http", "127.0.0.1:2",
                   "--data-dir", str(tmp_path / "d"), "--tls-cert-file", files["cert"], "--tls-key-file",
                   files["other_key"]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("raftkv serve: --tls-key-file"), err
    assert not os.path.exists(tmp_path / "d"), "nothing was started"

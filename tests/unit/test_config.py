"""`raftkv serve`'s configuration loader (api/config.py): precedence, every error, masking."""

from __future__ import annotations

import tomllib

import pytest

from api.cli import build_parser
from api.config import ConfigError, check_raft_timings, fields, render, resolve
from api.serve import REQUIRED

BASE = {"id": "n1", "raft": "127.0.0.1:7001", "http": "127.0.0.1:8501", "data_dir": "/tmp/raftkv-n1"}
BASE_TOML = "".join(f'{k} = "{v}"\n' for k, v in BASE.items())


@pytest.fixture(scope="module")
def serve_parser():
    return build_parser(["serve"]).parse_args(["serve"])._parser


def load(parser, argv=(), env=None, toml=None, tmp_path=None):
    argv = list(argv)
    if toml is not None:
        path = tmp_path / "node.toml"
        path.write_text(toml)
        argv += ["--config", str(path)]
    config = resolve(parser, argv, env or {}, REQUIRED)
    check_raft_timings(config)
    return config


def test_config_precedence_is_flag_then_env_then_file_then_default(serve_parser, tmp_path):
    toml = BASE_TOML + "max_value_bytes = 100\nrequest_timeout = 2\nsnapshot_retain = 7\ninsecure_http = true\n"
    env = {"RAFTKV_MAX_VALUE_BYTES": "200", "RAFTKV_REQUEST_TIMEOUT": "3.5", "RAFTKV_INSECURE_HTTP": "no"}
    c = load(serve_parser, ["--max-value-bytes", "300"], env, toml, tmp_path)
    v = c.values
    assert (v.max_value_bytes, c.sources["max_value_bytes"]) == (300, "flag")
    assert (v.request_timeout, c.sources["request_timeout"]) == (3.5, "env")
    assert (v.snapshot_retain, c.sources["snapshot_retain"]) == (7, "file")
    assert (v.snapshot_entries, c.sources["snapshot_entries"]) == (10_000, "default")
    assert v.insecure_http is False and c.sources["insecure_http"] == "env"  # env "no" beats the file's true
    assert (v.id, c.sources["id"]) == ("n1", "file")  # required settings may come from the file
    assert isinstance(v.request_timeout, float)


def test_config_flag_equal_to_its_default_still_beats_the_file(serve_parser, tmp_path):
    c = load(serve_parser, ["--snapshot-entries", "10000"], toml=BASE_TOML + "snapshot_entries = 5\n",
             tmp_path=tmp_path)
    assert (c.values.snapshot_entries, c.sources["snapshot_entries"]) == (10_000, "flag")


def test_config_lists_take_arrays_and_comma_separated_strings(serve_parser, tmp_path):
    c = load(serve_parser, toml=BASE_TOML + 'peers = ["a:1", "b:2,c:3"]\njoin = ["http://a:1", "b:2"]\n',
             tmp_path=tmp_path)
    assert c.values.peers == ["a:1", "b:2", "c:3"] and c.values.join == "http://a:1,b:2"
    c = load(serve_parser, env={**_env(BASE), "RAFTKV_PEERS": "a:1, b:2"})
    assert c.values.peers == ["a:1", "b:2"] and c.sources["peers"] == "env"
    c = load(serve_parser, ["--peers", "x:1,y:2", "--peers", "z:3"], env=_env(BASE))
    assert c.values.peers == ["x:1", "y:2", "z:3"]


def test_every_serve_flag_is_reachable_from_env_and_file_by_the_naming_rule(serve_parser, tmp_path):
    samples = {"str": ("x.pem", "x.pem"), "int": ("17", 17), "float": ("0.75", 0.75), "bool": ("yes", True)}
    checked = 0
    for name, f in fields(serve_parser).items():
        if name in ("config", "print_config", "force_new_cluster") or f.kind not in samples:
            continue
        text, value = samples[f.kind]
        if f.choices:
            text = value = next(c for c in f.choices if c != f.default)
        if name in ("heartbeat_interval", "election_timeout_min", "election_timeout_max"):
            continue  # related to each other: below
        env = {**_env(BASE), f.env: text}
        assert getattr(load(serve_parser, env=env).values, name) == value, name
        literal = {"str": f'"{value}"', "int": str(value), "float": str(value), "bool": "true"}[f.kind]
        toml = "".join(f'{k} = "{v}"\n' for k, v in BASE.items() if k != name) + f"{name} = {literal}\n"
        assert getattr(load(serve_parser, toml=toml, tmp_path=tmp_path).values, name) == value, name
        checked += 1
    assert checked >= 25
    env = {**_env(BASE), "RAFTKV_HEARTBEAT_INTERVAL": "0.1", "RAFTKV_ELECTION_TIMEOUT_MIN": "0.5",
           "RAFTKV_ELECTION_TIMEOUT_MAX": "2"}
    v = load(serve_parser, env=env).values
    assert (v.heartbeat_interval, v.election_timeout_min, v.election_timeout_max) == (0.1, 0.5, 2.0)
    assert load(serve_parser, env={**_env(BASE), "RAFTKV_ACL": "deny"}).values.acl == "deny"  # the old name works


@pytest.mark.parametrize(("toml", "fragments"), [
    ('dat_dir = "/x"\n', ["node.toml:dat_dir", "unknown key", "did you mean 'data_dir'"]),
    ('data-dir = "/x"\n', ["unknown key", "did you mean 'data_dir'"]),
    ('max_value_bytes = "512k"\n', ["node.toml:max_value_bytes", "expected an integer", "'512k'"]),
    ("max_value_bytes = 1.5\n", ["node.toml:max_value_bytes", "expected an integer"]),
    ("request_timeout = true\n", ["node.toml:request_timeout", "expected a number", "a boolean"]),
    ('insecure_http = "yes"\n', ["node.toml:insecure_http", "expected a boolean"]),
    ("peers = [1, 2]\n", ["node.toml:peers", "expected an array of strings"]),
    ("[tls]\ncert = 1\n", ["node.toml:tls", "unknown key"]),
    ("max_value_bytes = 0\n", ["node.toml:max_value_bytes", "must be a positive number"]),
    ("snapshot_interval = inf\n", ["node.toml:snapshot_interval", "must be a positive number"]),
    ('http_front = "fast"\n', ["node.toml:http_front", "must be one of lean, aiohttp", "'fast'"]),
    ('log_level = "chatty"\n', ["node.toml:log_level", "must be one of DEBUG"]),
    ("force_new_cluster = true\n", ["node.toml:force_new_cluster", "only a flag (--force-new-cluster)"]),
    ("election_timeout_min = 0.1\n", ["node.toml:election_timeout_min", "at least 5 x heartbeat_interval"]),
    ("election_timeout_max = 0.4\n", ["node.toml:election_timeout_max", "must be above election_timeout_min"]),
    ("max_value_bytes = = 3\n", ["is not valid TOML", "line 5"]),
])
def test_config_file_mistakes_are_one_line_naming_the_key(serve_parser, tmp_path, toml, fragments):
    with pytest.raises(ConfigError) as err:
        load(serve_parser, toml=BASE_TOML + toml, tmp_path=tmp_path)
    message = str(err.value)
    assert "\n" not in message and all(f in message for f in fragments), message


@pytest.mark.parametrize(("env", "fragments"), [
    ({"RAFTKV_MAX_VALUE_BYTES": "lots"}, ["RAFTKV_MAX_VALUE_BYTES", "expected an integer", "'lots'"]),
    ({"RAFTKV_REQUEST_TIMEOUT": "-1"}, ["RAFTKV_REQUEST_TIMEOUT", "must be a positive number"]),
    ({"RAFTKV_INSECURE_RAFT": "maybe"}, ["RAFTKV_INSECURE_RAFT", "expected true/false/1/0/yes/no"]),
    ({"RAFTKV_ACL": "open"}, ["RAFTKV_ACL", "must be one of allow, deny"]),
    ({"RAFTKV_HEARTBEAT_INTERVAL": "0.2"}, ["--election-timeout-min", "RAFTKV_HEARTBEAT_INTERVAL: 0.2 s"]),
])
def test_config_env_mistakes_are_one_line_naming_the_variable(serve_parser, env, fragments):
    with pytest.raises(ConfigError) as err:
        load(serve_parser, env={**_env(BASE), **env})
    assert all(f in str(err.value) for f in fragments), str(err.value)


def test_config_missing_required_setting_names_flag_env_and_key(serve_parser):
    with pytest.raises(ConfigError, match="missing required setting --data-dir \\(or RAFTKV_DATA_DIR, or data_dir"):
        load(serve_parser, ["--id", "n1", "--raft", "h:1", "--http", "h:2"])


def test_config_unreadable_files_are_named(serve_parser, tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*absent.toml: No such file"):
        load(serve_parser, ["--config", str(tmp_path / "absent.toml")])
    with pytest.raises(ConfigError, match="cannot read config file .*: Is a directory"):
        load(serve_parser, ["--config", str(tmp_path)])
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'id = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load(serve_parser, ["--config", str(binary)])
    path = tmp_path / "by-env.toml"
    path.write_text(BASE_TOML + "snapshot_retain = 9\n")
    assert load(serve_parser, env={"RAFTKV_CONFIG": str(path)}).values.snapshot_retain == 9


def test_print_config_masks_secrets_and_loads_back_to_the_same_config(serve_parser, tmp_path):
    secret, token = "c0ffee" * 8, "initial-management-secret-42"
    env = {"RAFTKV_CLUSTER_SECRET": secret, "RAFTKV_ACL_INITIAL_MANAGEMENT": token, "RAFTKV_ACL": "deny",
           "RAFTKV_PEERS": "127.0.0.1:7002,127.0.0.1:7003", "RAFTKV_HTTP_FRONT": "aiohttp"}
    toml = BASE_TOML + 'cluster_secret_file = "/etc/raftkv/secret"\nsnapshot_interval = 30\n' \
                       'tls_cert_file = "/etc/raftkv/a \\"quoted\\" path.pem"\n'
    c = load(serve_parser, ["--max-value-bytes", "1000", "--insecure-raft"], env, toml, tmp_path)
    text = render(c, env)
    assert secret not in text and token not in text and "from env RAFTKV_CLUSTER_SECRET = ********" in text
    assert "initial management token: from env RAFTKV_ACL_INITIAL_MANAGEMENT = ********" in text
    assert 'cluster_secret_file = "/etc/raftkv/secret"' in text  # a path is not a secret
    assert "max_value_bytes = 1000  # flag --max-value-bytes" in text
    assert "http_front = \"aiohttp\"  # env RAFTKV_HTTP_FRONT" in text
    assert f"snapshot_interval = 30.0  # file {tmp_path / 'node.toml'}:snapshot_interval" in text
    assert "request_timeout = 5.0  # default" in text
    again = tmp_path / "printed.toml"
    again.write_text(text)
    reloaded = load(serve_parser, ["--config", str(again)])
    skip = {"config"}
    assert {k: v for k, v in vars(reloaded.values).items() if k not in skip} == \
           {k: v for k, v in vars(c.values).items() if k not in skip}
    assert tomllib.loads(render(reloaded, {})) == tomllib.loads(text)


def _env(settings: dict) -> dict:
    return {"RAFTKV_" + k.upper(): v for k, v in settings.items()}

"""The fake node is a faithful stand-in: it has every member of api.node_port.Node, in the same shape."""

import inspect
from typing import Any, Protocol, runtime_checkable

from api.node_port import Node
from tests.api.fake_node import FakeNode


def protocol_members() -> dict[str, Any]:
    return {name: value for name, value in vars(Node).items() if not name.startswith("_")}


def test_protocol_lists_what_the_brief_names():
    assert set(protocol_members()) == {
        "node_id", "raft_address", "attach", "leader", "is_leader", "leader_http", "wait_for_leader",
        "wait_for_cluster_change", "last_contact_ms", "uptime_ms", "propose", "prepare_read", "read_view",
        "wait_for_change", "status", "peers", "members", "configuration", "unreachable_peers",
        "change_config", "transfer_leadership", "snapshot_file", "hellos", "metrics", "session_renewed",
        "lock_delay_left_s", "timeline_since", "wait_for_timeline", "snapshot_files",
    }


def test_fake_node_has_every_member_in_the_same_shape():
    for name, declared in protocol_members().items():
        mine = inspect.getattr_static(FakeNode, name, None)
        assert mine is not None, f"FakeNode lacks {name}"
        if isinstance(declared, property):
            assert isinstance(mine, property), f"{name} is a property in Node"
            continue
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(declared), name
        assert list(inspect.signature(mine).parameters) == list(inspect.signature(declared).parameters), name


def test_fake_node_is_an_instance_of_the_runtime_checkable_protocol():
    @runtime_checkable
    class CheckableNode(Node, Protocol):
        pass

    assert isinstance(FakeNode(), CheckableNode)
    assert not isinstance(object(), CheckableNode)


def as_node(fake: FakeNode) -> Node:
    """Checked by mypy: FakeNode is structurally a Node (a mismatch is a type error here)."""
    return fake


def test_fake_node_passes_where_a_node_is_expected():
    fake = FakeNode()
    assert as_node(fake) is fake

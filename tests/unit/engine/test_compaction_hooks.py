from pysyncobj import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from node.checkpoint import Progress
from node.engine.compaction import CompactionHooks


class FakeCheckpointer:
    def __init__(self):
        self.captured = None
        self.state = Progress.IDLE

    def capture(self, tmp_file, last, prev, members):
        self.captured = (tmp_file, last, prev, members)

    def progress(self):
        return self.state

    def load(self, file_name):
        return (b"l", 9, 2), (b"p", 8, 2), ["h:2", "h:1", "h:2"]


def test_compaction_hooks_translate_pysyncobj_shapes_to_ours():
    checkpointer = FakeCheckpointer()
    hooks = CompactionHooks(checkpointer)
    hooks.serialize("raft.dump.tmp", ((b"l", 9, 2), (b"p", 8, 2), {TCPNode("h:2"), TCPNode("h:1")}))
    assert checkpointer.captured == ("raft.dump.tmp", (b"l", 9, 2), (b"p", 8, 2), ["h:1", "h:2"])
    seen = []
    for state in (Progress.IDLE, Progress.WRITING, Progress.DONE, Progress.FAILED):
        checkpointer.state = state
        seen.append(hooks.check())
    assert seen == [SERIALIZER_STATE.NOT_SERIALIZING, SERIALIZER_STATE.SERIALIZING, SERIALIZER_STATE.SUCCESS,
                    SERIALIZER_STATE.FAILED]
    last, prev, cluster = hooks.deserialize("raft.dump")
    assert (last, prev) == ((b"l", 9, 2), (b"p", 8, 2)) and cluster == {TCPNode("h:1"), TCPNode("h:2")}

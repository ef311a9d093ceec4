"""The Raft node: state machine, command codec, membership, and the Raft engine (node.engine)."""

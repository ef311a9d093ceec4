"""The Raft node: state machine, command codec, durable journal and PySyncObj composition."""

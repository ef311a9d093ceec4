"""The HTTP face of a node (Consul KV wire format) and the commands that compose a node."""

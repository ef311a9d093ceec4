"""The network between chaos nodes: `netlab` (namespaces and nftables cuts, needs root) and
`relay` (a TCP relay with delay, loss and cuts, no root)."""

"""Consul-style ACLs for the HTTP API: rules (`rules`), tokens resolved to what they may do
(`authz`, used by every route on both fronts), the /v1/acl routes (`routes`), the configured
initial management token (`initial`) and the `raftkv acl` command (`cli`)."""

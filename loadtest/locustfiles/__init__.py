"""Locust scenarios (`locustfile.py`, loaded by locust by path) and `raftkv loadtest`
(`locust_run.py`), which runs them headless against a local or given cluster."""

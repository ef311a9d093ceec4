"""Throwaway TLS material for tests: the product's own helper (api/pki.py, which `raftkv up
--tls` uses), a fresh CA per folder.

    pki = Pki(tmp_path / "ours")          # pki.ca
    node = pki.issue("n1")                # node.cert, node.key; names 127.0.0.1 and localhost
    other = Pki(tmp_path / "theirs")      # an unrelated CA, for "wrong CA" tests
"""

from api.pki import Issued, Pki  # noqa: F401

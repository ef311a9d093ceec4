"""Throwaway TLS material: a CA kept in a folder and the certificates it signs (PEM files).
Used by `raftkv up --tls` for its local cluster, and by the tests (tests/support/certs.py).

    pki = Pki(folder)                     # the CA in folder (ca.pem, ca-key.pem): made, or loaded
    node = pki.issue("n1")                # n1.pem, n1-key.pem; names 127.0.0.1 and localhost

Certificates carry both extended key usages (serverAuth, clientAuth): a node serves with its
certificate and presents it when it calls another node (api/tls.py). EC P-256 keys: making a
CA and a few certificates costs milliseconds. Private keys are written mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from snapshots.fsutil import write_atomic

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"


@dataclass(frozen=True)
class Issued:
    cert: str  # PEM file paths
    key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, private: bool = False) -> str:
    write_atomic(str(path), data, mode=0o600 if private else 0o644)
    return str(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)  # a few minutes back: clocks of a local cluster may differ
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days))


class Pki:
    def __init__(self, folder: str | os.PathLike, name: str = "raftkv CA", days: int = 1) -> None:
        """The CA in `folder`, loaded if it is there, else made (valid `days`, as are the
        certificates it issues)."""
        self.folder = Path(folder)
        self.days = days
        self.ca = str(self.folder / CA_FILE)
        key_path = self.folder / CA_KEY_FILE
        if os.path.exists(self.ca) and key_path.exists():
            self._cert = x509.load_pem_x509_certificate(Path(self.ca).read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not the EC private key this module writes")
            self._key = key
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = (
            _validity(x509.CertificateBuilder(), days).subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self._key, hashes.SHA256())
        )
        _write(key_path, _key_pem(self._key), private=True)
        _write(Path(self.ca), self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Issued:
        """`name`.pem and `name`-key.pem: a certificate valid for TLS servers and clients, naming `hosts`."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        cert = (
            _validity(x509.CertificateBuilder(), self.days).subject_name(_name(name))
            .issuer_name(self._cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(_write(self.folder / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                      _write(self.folder / f"{name}-key.pem", _key_pem(key), private=True))

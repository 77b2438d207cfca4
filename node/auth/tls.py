"""A local certificate authority and the server certificates it signs.

Keys are ECDSA P-256. A server certificate names every host clients or peer servers
dial (DNS names and IP addresses as subject alternative names) and is good for both
server and client authentication, because a nats-server dials its routes with the same
certificate it serves them with (route TLS with ``verify: true``).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.auth.private import write_private

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest leaf validity that browsers and OS trust stores accept
RENEW_BEFORE = datetime.timedelta(days=30)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def write(self, cert_path: Path, key_path: Path) -> None:
        """The certificate is public (0600 all the same: it lives among secrets)."""
        write_private(cert_path, self.cert_pem)
        write_private(key_path, self.key_pem)

    @classmethod
    def read(cls, cert_path: Path, key_path: Path) -> CertKey:
        return cls(cert_path.read_bytes(), key_path.read_bytes())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "broker-agents"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_ca(common_name: str = "broker-agents local CA") -> CertKey:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def server_hosts(hosts: Iterable[str]) -> list[str]:
    """``hosts`` and the loopback names, once each, in order."""
    return list(dict.fromkeys([*hosts, *LOCAL_HOSTS]))


def issue_server_cert(ca: CertKey, common_name: str, hosts: Sequence[str]) -> CertKey:
    """A server (and route client) certificate for ``hosts``, signed by ``ca``."""
    key = _new_key()
    now = _now()
    ca_cert = ca.cert
    ca_key = ca.private_key()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS),
                                 ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def covers(cert_key: CertKey, ca: CertKey, hosts: Iterable[str]) -> bool:
    """True when the certificate is ``ca``'s, names every host and is not about to expire:
    what decides whether a data dir's server certificate can be kept."""
    cert = cert_key.cert
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return all(_normal(h) in present for h in hosts)


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host

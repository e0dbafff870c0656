"""A self-signed TLS certificate for 127.0.0.1 / localhost, made with ``cryptography``, and contexts that use it.

Import-safe in any process (no ferrovent or gevent import): the compat scenarios use it in their children too.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTNAME = "localhost"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def make_self_signed(directory: Path, hostname: str = HOSTNAME) -> CertFiles:
    """Writes ``cert.pem`` and ``key.pem`` for ``hostname`` and 127.0.0.1 into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = CertFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


def temporary_cert() -> CertFiles:
    """A fresh certificate in a new temporary directory (for child processes that have no pytest fixture)."""
    return make_self_signed(Path(tempfile.mkdtemp(prefix="ferrovent-tls-")))


def server_context(files: CertFiles, ssl_module=ssl) -> ssl.SSLContext:
    """A server context from ``ssl_module`` (stdlib ``ssl`` or a cooperative one) serving ``files``."""
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    return context


def client_context(files: CertFiles, ssl_module=ssl) -> ssl.SSLContext:
    """A verifying client context (hostname and chain) from ``ssl_module`` that trusts only ``files``' certificate.

    Built from the class, not ``create_default_context``: gevent's unpatched ``create_default_context`` returns
    the stdlib's (blocking) context.
    """
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(files.cert))
    return context

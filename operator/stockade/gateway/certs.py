"""The gateway's CA and the per-host leaf certificates it signs (``cryptography``).

Keys are ECDSA P-256. The CA is valid for 10 years, constrained to issue leaf
certificates only (``pathlen=0``); a leaf names exactly one DNS name, is valid from an
hour ago for :data:`LEAF_VALIDITY`, and its key is shared by every leaf of a process
(a per-host key buys nothing: whoever holds the gateway's memory holds the CA key too).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=7)
CA_COMMON_NAME = "Stockade egress gateway CA"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key, both PEM.

    Attributes:
        cert_pem: the certificate (``tls.crt`` of the CA Secret, ``ca.crt`` of the ConfigMap).
        key_pem: the PKCS#8 private key (``tls.key``), unencrypted.

    """

    cert_pem: bytes
    key_pem: bytes

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Parse both PEMs.

        Raises:
            ValueError: unparsable PEM, or the key is not an EC key.

        """
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(now: datetime.datetime, common_name: str = CA_COMMON_NAME) -> CertificateAuthority:
    """A new self-signed CA valid from `now` (UTC) for :data:`CA_VALIDITY`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate_leaf_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key for the leaf certificates."""
    return ec.generate_private_key(ec.SECP256R1())


def issue_leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    leaf_key: ec.EllipticCurvePrivateKey,
    host: str,
    now: datetime.datetime,
) -> tuple[bytes, bytes]:
    """A server certificate for DNS name `host`, signed by `ca`.

    Returns:
        ``(chain PEM (leaf then CA), key PEM)``: what ``SSLContext.load_cert_chain`` reads.

    """
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(min(now + LEAF_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    return chain, _key_pem(leaf_key)


def ca_bundle(public_roots_pem: bytes, ca_pem: bytes) -> bytes:
    """``ca-bundle.crt``: the public roots (certifi's) followed by the gateway's CA."""
    roots = public_roots_pem if public_roots_pem.endswith(b"\n") else public_roots_pem + b"\n"
    return roots + ca_pem

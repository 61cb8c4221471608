"""Client certificates for devices, signed by the fleet's own CA (mutual TLS to the broker).

Each device gets a fresh EC P-256 key and a certificate whose common name is its device id
(what a broker's ``use_identity_as_username`` takes as the user name), for client
authentication only. Uses the ``cryptography`` package, imported here only.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config.secrets import mode_problem
from edge.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

VALIDITY_DAYS = 3 * 365  # a device's lifetime on one card, give or take; capped by the CA's


@dataclass(frozen=True)
class Authority:
    """The CA that signs device certificates: its certificate and private key."""

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    """A device's key and certificate (PEM), and what the cloud side records of it."""

    key_pem: bytes
    cert_pem: bytes
    sha256: str  # of the certificate's DER bytes, lowercase hex
    serial: str  # hex
    not_after: str  # ISO 8601, UTC


def _crypto() -> None:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise UsageError(
            "--ca needs the cryptography library: pip install 'edgeline[deploy]'"
        ) from None


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    """The CA in ``cert_path`` (PEM, the first certificate) and ``key_path`` (PEM, not
    encrypted, readable by its owner only); UsageError naming the file otherwise."""
    _crypto()
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise UsageError(f"--ca: cannot read {cert_path}: {exc.strerror or exc}") from None
    except ValueError:
        raise UsageError(f"--ca: {cert_path} is not a PEM certificate") from None
    try:
        with open(key_path, "rb") as handle:
            problem = mode_problem(os.fstat(handle.fileno()).st_mode, key_path)
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"--ca-key: cannot read {key_path}: {exc.strerror or exc}") from None
    if problem:
        raise UsageError(f"--ca-key: {key_path}: {problem}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UsageError(
            f"--ca-key: {key_path} is encrypted; give an unencrypted copy (openssl pkey -in"
            " KEY -out CA.key, then chmod 600 CA.key)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"--ca-key: {key_path} is not a PEM private key ({exc})") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
    ):  # fmt: skip
        raise UsageError(f"--ca-key: {key_path} holds a key that cannot sign certificates")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != certificate.public_key().public_bytes(
        der, public
    ):
        raise UsageError(f"--ca-key: {key_path} is not the key of the CA in {cert_path}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise UsageError(f"--ca: {cert_path} is not a CA certificate (no basicConstraints CA)")
    if certificate.not_valid_after_utc <= _now():
        raise UsageError(f"--ca: {cert_path} expired on {certificate.not_valid_after_utc:%F}")
    return Authority(certificate, key)


def issue(authority: Authority, device_id: str, days: int = VALIDITY_DAYS) -> Issued:
    """A new EC P-256 key and a client certificate for ``device_id`` (CN), signed by the
    authority, valid from an hour ago (clock skew) for ``days`` or until the CA expires."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), authority.certificate.not_valid_after_utc)
    ca_public = authority.certificate.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),  # type: ignore[arg-type]
            critical=False,
        )
    )
    algorithm = None if _hashless(authority.key) else hashes.SHA256()
    signed = certificate.sign(authority.key, algorithm)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(
        key_pem=key_pem,
        cert_pem=signed.public_bytes(serialization.Encoding.PEM),
        sha256=signed.fingerprint(hashes.SHA256()).hex(),
        serial=f"{signed.serial_number:x}",
        not_after=signed.not_valid_after_utc.isoformat(),
    )


def _hashless(key: object) -> bool:
    """Ed25519 and Ed448 sign without a separate hash."""
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)

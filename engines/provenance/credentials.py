"""The key and certificate chain that sign C2PA manifests.

An operator gives a PEM certificate chain (signer first) and its private key.
Without them, a development chain is made on first use and kept in the
provenance state folder (`c2pa-dev/`): a small CA and an end-entity
certificate it issued (ES256, digitalSignature, emailProtection EKU), because
C2PA validators refuse a self-signed signer. A development certificate proves
nothing to anyone else: it is on no trust list, and `facecast verify` says so.
Production needs a certificate from a CA on the C2PA trust list.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEV_ORGANIZATION", "SigningCredentials", "load_credentials"]

# Every development certificate carries this organisation name; verify reports it.
DEV_ORGANIZATION = "facecast development certificate (untrusted)"
_DEV_DIR = "c2pa-dev"


@dataclass(frozen=True)
class SigningCredentials:
    """chain_pem: the signer's certificate then its issuers; key_pem: its private key;
    alg: the C2PA signing algorithm the key makes ("es256", "ps256", ...)."""

    chain_pem: bytes
    key_pem: bytes
    alg: str
    development: bool


def load_credentials(cert: Path | None, key: Path | None, state_dir: Path) -> SigningCredentials:
    """The operator's chain and key when given, else the development chain in `state_dir`."""
    if cert is not None and key is not None:
        chain, key_pem = cert.read_bytes(), key.read_bytes()
        return SigningCredentials(chain, key_pem, _algorithm(chain, key_pem), False)
    folder = state_dir / _DEV_DIR
    chain_path, key_path = folder / "chain.pem", folder / "key.pem"
    if not (chain_path.exists() and key_path.exists()):
        _make_dev_chain(folder)
    chain, key_pem = chain_path.read_bytes(), key_path.read_bytes()
    return SigningCredentials(chain, key_pem, _algorithm(chain, key_pem), True)


def _algorithm(chain: bytes, key_pem: bytes) -> str:
    """The C2PA algorithm for this key, after checking that the key is the signer's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        certs = x509.load_pem_x509_certificates(chain)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ValueError(
            f"the C2PA signing certificate or key is not an unencrypted PEM file: {exc}"
        ) from exc
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = (
        certs[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if public != signer:
        raise ValueError("the C2PA signing key does not belong to the first certificate")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in bits:
            raise ValueError(f"C2PA signs with P-256, P-384 or P-521 keys, not {key.curve.name}")
        return bits[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"C2PA cannot sign with a {type(key).__name__}")


def _make_dev_chain(folder: Path) -> None:
    """A CA (10 years) and an ES256 signer it issued (2 years), written to `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
            ]
        )

    def usage(sign: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"),
            False,
        )
        return x509.KeyUsage(
            digital_signature=sign,
            key_cert_sign=not sign,
            crl_sign=not sign,
            encipher_only=False,
            decipher_only=False,
            **flags,
        )

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("facecast development CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("facecast development signer"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Made in a folder of its own, then renamed into place: a second process that
    # makes one at the same time loses the rename and uses the first one's chain.
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}")
    partial.mkdir(exist_ok=True)
    _write(partial / "ca.pem", ca.public_bytes(pem), 0o644)
    _write(partial / "chain.pem", leaf.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    _write(partial / "key.pem", key_pem, 0o600)
    try:
        partial.rename(folder)
    except OSError:  # another process made it first (or an incomplete one is in the way)
        for child in partial.iterdir():
            child.unlink()
        partial.rmdir()
        if not (folder / "key.pem").exists():
            raise ValueError(
                f"{folder} holds no complete development certificate; delete it to make one"
            ) from None


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)

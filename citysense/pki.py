"""The cryptographic pieces of provisioning: Mosquitto password hashes and X.509 certificates.

Password entries are what ``mosquitto_passwd`` writes (Mosquitto 2.0's default, ``$7$``:
PBKDF2-HMAC-SHA512 with a 12-byte salt). Its 101 iterations are kept on purpose: the broker
hashes on every CONNECT in its one thread, so a city's stations reconnecting after a broker
restart would queue behind a costly hash, and the passwords issued here are 256-bit random
tokens, which no iteration count needs to protect. ``$6$`` entries (salted SHA-512, Mosquitto
1.x) are still verified.

Keys are ECDSA P-256; certificates carry the extensions that strict verifiers (Python's ssl,
OpenSSL 3) check: basic constraints, key usage, extended key usage, key identifiers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
RENEW_BEFORE = timedelta(days=30)
"""A certificate that expires sooner than this is re-issued by the next provisioning run."""
ORGANIZATION = "citysense"

PrivateKey = ec.EllipticCurvePrivateKey


def new_password() -> str:
    """A 256-bit random token; URL-safe, so it needs no quoting in env files or the CLI."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The hash part of a Mosquitto password-file line (``user:<this>``)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, entry: str) -> bool:
    """Does ``password`` match a password-file hash (``$7$`` or ``$6$``)?"""
    parts = entry.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, expected = int(parts[2]), parts[3], parts[4]
            digest = hashlib.pbkdf2_hmac(
                "sha512", password.encode(), base64.b64decode(salt), iterations
            )
        elif len(parts) == 4 and parts[1] == "6":
            salt, expected = parts[2], parts[3]
            digest = hashlib.sha512(password.encode() + base64.b64decode(salt)).digest()
        else:
            return False
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except ValueError:  # bad base64 or iteration count
        return False


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return builder.not_valid_before(now - timedelta(minutes=5)).not_valid_after(
        now + timedelta(days=days)
    )


def create_ca(common_name: str, days: int) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key()
    builder = _validity(x509.CertificateBuilder(), days)
    cert = (
        builder.subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    *,
    days: int,
    server_names: Sequence[str] = (),
) -> tuple[x509.Certificate, PrivateKey]:
    """A leaf certificate: a server's (``server_names`` given: DNS names or IP addresses) or a
    client's, whose common name is its MQTT username."""
    key = new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def problem(
    cert: x509.Certificate,
    key: PrivateKey,
    ca: x509.Certificate,
    common_name: str,
    server_names: Sequence[str] = (),
) -> str | None:
    """Why this certificate must be re-issued, or None when it is good to keep."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by this CA"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not server_names and [n.value for n in names] != [common_name]:  # a server: its SANs
        return f"issued for {names[0].value if names else '?'!r}"
    if cert.public_key() != key.public_key():
        return "the key does not match the certificate"
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if server_names and sorted(_san(cert)) != sorted(_canonical(n) for n in server_names):
        return f"names {', '.join(_san(cert))} are not {', '.join(server_names)}"
    return None


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _san(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    return dns + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]

"""Make and keep the lab's certificates, Docker's and etcd's: keys, signatures, files (the I/O).

What each certificate says and where it lives is ``labs.docker_tls`` and
``labs.etcd_tls`` (pure); this module turns those specs into keys and X.509 certificates with PyPI's
``cryptography`` (the only module that imports it) and writes them root-only:
directories 0700, private keys 0600.

Keys are ECDSA P-256 (docker-machine used RSA 2048; P-256 is as strong and made
in a millisecond, so ``lab up`` does not wait on key generation).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from discovery.errors import DiscoveryError
from labs import docker_tls as tls
from labs import etcd_tls
from labs.docker_tls import CertLayout, CertSpec
from labs.etcd_tls import EtcdCertLayout


class CertificateError(DiscoveryError):
    pass


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue(spec: CertSpec, ca: Issued | None = None) -> Issued:
    """A new key and a certificate for ``spec``, signed by ``ca`` (self-signed when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name),
        ]
    )
    signer_key: ec.EllipticCurvePrivateKey = key
    issuer = subject
    if ca is not None:
        loaded = serialization.load_pem_private_key(ca.key_pem, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CertificateError("the lab's CA key is not an ECDSA key")
        signer_key, issuer = loaded, x509.load_pem_x509_certificate(ca.cert_pem).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if spec.usage == "ca":
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True)
        purposes = {
            "server": [ExtendedKeyUsageOID.SERVER_AUTH],
            "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
            "peer": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        }[spec.usage]
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), False)
    builder = builder.add_extension(
        x509.KeyUsage(
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        True,
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.dns_names]
    names += [x509.IPAddress(address) for address in spec.ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    cert = builder.sign(signer_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


# ------------------------------------------------------------ files


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically, with ``mode`` from the start (a key is never readable by others)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, mode)
    temporary.replace(path)


def _save(cert_path: Path, key_path: Path, issued: Issued) -> None:
    _write(key_path, issued.key_pem, 0o600)
    _write(cert_path, issued.cert_pem, 0o644)


def _load(cert_path: Path, key_path: Path) -> Issued | None:
    try:
        return Issued(cert_path.read_bytes(), key_path.read_bytes())
    except FileNotFoundError:
        return None


def ensure_lab_ca(layout: CertLayout, lab_name: str) -> Issued:
    """The lab's CA and the learner's client certificate: made once, then kept."""
    _private_dir(layout.root / "certs")
    ca = _load(layout.ca_cert, layout.ca_key)
    if ca is None:
        ca = issue(tls.ca_spec(lab_name, now()))
        _save(layout.ca_cert, layout.ca_key, ca)
        layout.client_cert.unlink(missing_ok=True)  # signed by a CA that is gone
    if not _signed_by(layout.client_cert, layout) or not layout.client_key.exists():
        _save(layout.client_cert, layout.client_key, issue(tls.client_spec(lab_name, now()), ca))
    return ca


def renew_client(layout: CertLayout, lab_name: str) -> None:
    """A new client certificate and key from the lab's CA (the old one stays valid until
    it expires: the lab keeps no revocation list)."""
    ca = ensure_lab_ca(layout, lab_name)
    _save(layout.client_cert, layout.client_key, issue(tls.client_spec(lab_name, now()), ca))


def ensure_host_certs(
    layout: CertLayout, lab_name: str, host: str, address: str, renew: bool = False
) -> Path:
    """HOST's server certificate, and the learner's client files beside it (DOCKER_CERT_PATH),
    as docker-machine's ``machines/HOST/``; ``renew`` makes a new server certificate
    (``regenerate-certs``). Returns that directory."""
    ca = ensure_lab_ca(layout, lab_name)
    machine = layout.machine_dir(host)
    _private_dir(machine.parent)
    _private_dir(machine)
    if (
        renew
        or not _signed_by(layout.server_cert(host), layout)
        or not layout.server_key(host).exists()
    ):
        spec = tls.server_spec(host, ipaddress.IPv4Address(address), now())
        _save(layout.server_cert(host), layout.server_key(host), issue(spec, ca))
    for source, name, mode in (
        (layout.ca_cert, tls.CA_CERT, 0o644),
        (layout.client_cert, tls.CLIENT_CERT, 0o644),
        (layout.client_key, tls.CLIENT_KEY, 0o600),
    ):
        _write(machine / name, source.read_bytes(), mode)
    return machine


def ensure_etcd_certs(
    layout: CertLayout, lab_name: str, members: dict[str, str], components: tuple[str, ...]
) -> EtcdCertLayout:
    """A certificate for each etcd member (name -> its address) and each component,
    signed by the lab's CA: made once, kept while that CA signed them."""
    ca = ensure_lab_ca(layout, lab_name)
    etcd = EtcdCertLayout(layout.root)
    _private_dir(etcd.directory)
    specs = [etcd_tls.member_spec(name, address, now()) for name, address in members.items()]
    specs += [etcd_tls.component_spec(component, now()) for component in components]
    for spec in specs:
        cert, key = etcd.cert_file(spec.common_name), etcd.key_file(spec.common_name)
        if not _signed_by(cert, layout) or not key.exists():
            _save(cert, key, issue(spec, ca))
    return etcd


def _signed_by(cert_path: Path, layout: CertLayout) -> bool:
    """The certificate exists and the lab's current CA signed it (a CA made again, after
    its files were lost, makes every older certificate useless)."""
    try:
        return read_cert(cert_path, layout.ca_cert).signed_by_ca
    except CertificateError:
        return False


def remove_host_certs(layout: CertLayout, host: str) -> None:
    shutil.rmtree(layout.machine_dir(host), ignore_errors=True)


# ------------------------------------------------------------ reading


@dataclass(frozen=True)
class CertFacts:
    """What a certificate file says, for a one-line verdict before a client uses it."""

    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int
    signed_by_ca: bool
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


def read_cert(cert_path: Path, ca_path: Path) -> CertFacts:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except FileNotFoundError as error:
        raise CertificateError(f"{error.filename} is missing") from None
    except ValueError as error:
        raise CertificateError(f"{cert_path} is not a PEM certificate: {error}") from None
    try:
        cert.verify_directly_issued_by(ca)
        signed = True
    except (ValueError, TypeError, InvalidSignature):
        signed = False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
        signed_by_ca=signed,
        dns_names=dns,
        ip_addresses=ips,
    )


def client_cert_problem(cert_path: Path, at: dt.datetime | None = None) -> str | None:
    """Why the client files in DOCKER_CERT_PATH would be refused, in words; None if fine."""
    at = at or now()
    try:
        facts = read_cert(cert_path / tls.CLIENT_CERT, cert_path / tls.CA_CERT)
    except CertificateError as error:
        return str(error)
    if not (cert_path / tls.CLIENT_KEY).exists():
        return f"{cert_path / tls.CLIENT_KEY} is missing"
    if not facts.signed_by_ca:
        return f"{cert_path / tls.CLIENT_CERT} is not signed by the lab's CA ({tls.CA_CERT})"
    if at > facts.not_after:
        return f"{cert_path / tls.CLIENT_CERT} expired on {facts.not_after:%Y-%m-%d %H:%M} UTC"
    if at < facts.not_before:
        return f"{cert_path / tls.CLIENT_CERT} is not valid before {facts.not_before} UTC"
    return None

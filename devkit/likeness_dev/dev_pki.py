"""A throwaway certificate authority for the dev stack and the tests: one certificate per identity.

`likeness dev up` makes a new CA each time, issues every process of the stack its certificate and writes
it where the process reads it (`LIKENESS_TLS_DIR`: `tls.crt`, `tls.key`, `ca.crt`, the layout of
cert-manager's Secrets), so the stack runs mutual TLS exactly as a cluster does. The CA's key lives only in
the memory of whoever made it: nothing on disk can issue another certificate.

Certificates are EC P-256 and short-lived; each carries its identity as the SPIFFE ID
`spiffe://likeness/<identity>` (what servers authorize) and as a DNS name (what clients check a server
against), see `likeness.grpc_tls`.

    ca = DevCertificateAuthority.create()
    ca.issue("gateway").write(tls_dir)             # a process's TLS directory
    material = ca.issue("retention").material      # in memory, for a test's own server or channel
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from likeness.grpc_tls import CA_FILE, CERTIFICATE_FILE, PRIVATE_KEY_FILE, TlsMaterial, spiffe_id

#: Long enough for a dev stack left running over a week (as long as its dev token), short enough to die.
CERTIFICATE_VALIDITY = datetime.timedelta(days=7)
CA_VALIDITY = datetime.timedelta(days=8)
#: Clocks of the processes may lag the one that issued: certificates are valid from a little earlier.
BACKDATE = datetime.timedelta(minutes=5)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(scratch, path)


@dataclass(frozen=True, repr=False)
class IssuedCertificate:
    identity: str
    certificate: x509.Certificate
    private_key_pem: bytes
    ca_pem: bytes

    @property
    def certificate_pem(self) -> bytes:
        return _pem(self.certificate)

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number

    @property
    def material(self) -> TlsMaterial:
        return TlsMaterial(self.certificate_pem, self.private_key_pem, self.ca_pem)

    def write(self, directory: Path) -> Path:
        """`tls.crt`, `tls.key` (owner only) and `ca.crt` in `directory` (made owner-only).

        Each file is replaced atomically, the key before the certificate: a reader between the two sees a
        key that does not match and keeps what it had (`likeness.grpc_tls`), never a broken pair.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        _write_atomically(directory / CA_FILE, self.ca_pem, 0o644)
        _write_atomically(directory / PRIVATE_KEY_FILE, self.private_key_pem, 0o600)
        _write_atomically(directory / CERTIFICATE_FILE, self.certificate_pem, 0o644)
        return directory


class DevCertificateAuthority:
    """A CA in memory that issues a certificate for any identity."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    @classmethod
    def create(
        cls, name: str = "likeness dev CA", validity: datetime.timedelta = CA_VALIDITY
    ) -> DevCertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def ca_pem(self) -> bytes:
        return _pem(self.certificate)

    def issue(
        self,
        identity: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        validity: datetime.timedelta = CERTIFICATE_VALIDITY,
        trusted_ca_pem: bytes | None = None,
    ) -> IssuedCertificate:
        """A certificate of `identity` (SPIFFE ID and DNS name), for serving and for calling.

        dns_names: more names it may serve as (a test double standing in for several services).
        ip_addresses: addresses it may serve as (a server its clients reach by IP, e.g. kube-apiserver).
        trusted_ca_pem: the CAs its holder trusts (default: this CA alone; a CA rotation hands a bundle).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(identity))]
        names += [x509.DNSName(name) for name in dict.fromkeys([identity, *dns_names])]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + validity, self.certificate.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(identity, certificate, _key_pem(key), trusted_ca_pem or self.ca_pem)

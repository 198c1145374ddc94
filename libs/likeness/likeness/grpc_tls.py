"""Mutual TLS for every gRPC hop: this process's certificate, key and trusted CAs, read from one directory
(`LIKENESS_TLS_DIR`, laid out as cert-manager writes a Secret: `tls.crt`, `tls.key`, `ca.crt`) and read
again when those files change, so a renewed certificate or CA serves new handshakes without a restart.

Identities. Each process kind has one identity (`gateway`, `retention`, `trainer-worker`...), and its
certificate carries it twice:
- as the SPIFFE ID `spiffe://likeness/<identity>` (a URI SAN): what a server reads to learn who calls
  (`peer_identity`). A certificate holds exactly one, in a namespace of its own, so a DNS name added for
  routing (`retention.likeness.svc`) can never be read as an identity.
- as the DNS SAN `<identity>`: what a client checks the server against. gRPC Python matches a server's
  name only against DNS SANs (it has no URI matcher), so channels set `grpc.ssl_target_name_override` to
  the identity they expect: the gateway talks to retention only when the far end holds retention's
  certificate, whatever address it dialled.

Nothing here falls back to plaintext: without the three files a server or channel refuses to start.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    ChannelOptions = Sequence[tuple[str, Any]]
    ClientInterceptors = Sequence[grpc.aio.ClientInterceptor]

log = logging.getLogger(__name__)

CERTIFICATE_FILE = "tls.crt"
PRIVATE_KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
TLS_FILES = (CERTIFICATE_FILE, PRIVATE_KEY_FILE, CA_FILE)
#: The SPIFFE trust domain of our identities: `spiffe://likeness/<identity>`.
TRUST_DOMAIN = "likeness"
IDENTITY_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
#: A file's identity on disk: a Secret volume swaps files by renaming a symlink, which changes the inode.
Fingerprint = tuple[tuple[int, int, int], ...]


class TlsMaterialError(RuntimeError):
    """The TLS directory is missing, incomplete, or its key does not match its certificate."""


def spiffe_id(identity: str) -> str:
    if not IDENTITY_PATTERN.fullmatch(identity):
        raise ValueError(f"not an identity: {identity!r}")
    return f"spiffe://{TRUST_DOMAIN}/{identity}"


def identity_of_spiffe_id(value: str) -> str | None:
    """`spiffe://likeness/gateway` -> `gateway`; None for anything else (another trust domain, a path)."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    if not value.startswith(prefix):
        return None
    identity = value.removeprefix(prefix)
    return identity if IDENTITY_PATTERN.fullmatch(identity) else None


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """PEM bytes: this process's certificate chain and private key, and the CAs it trusts for its peers."""

    certificate_chain: bytes
    private_key: bytes
    ca_certificates: bytes

    def check(self) -> TlsMaterial:
        """Refuses material that cannot work: unparsable PEM, no CA, or a key of another certificate (a
        renewal caught between writing `tls.crt` and `tls.key`)."""
        try:
            leaf = x509.load_pem_x509_certificates(self.certificate_chain)[0]
            key = serialization.load_pem_private_key(self.private_key, password=None)
            x509.load_pem_x509_certificates(self.ca_certificates)
        except (ValueError, TypeError, IndexError) as error:
            raise TlsMaterialError(f"unreadable TLS material: {type(error).__name__}") from None
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
            raise TlsMaterialError("the private key does not belong to the certificate")
        return self


class TlsFiles:
    """The three files of a TLS directory: their fingerprint (cheap: three stats) and their contents."""

    def __init__(self, directory: str | Path) -> None:
        if not str(directory).strip():
            raise TlsMaterialError(
                "LIKENESS_TLS_DIR is not set: gRPC is mutual TLS only "
                "(`likeness dev up` writes each process's certificates; a cluster mounts cert-manager's)"
            )
        self.directory = Path(directory)

    def fingerprint(self) -> Fingerprint:
        try:
            stats = [os.stat(self.directory / name) for name in TLS_FILES]
        except OSError as error:
            raise TlsMaterialError(f"missing TLS file in {self.directory}: {error.strerror}") from None
        return tuple((stat.st_ino, stat.st_size, stat.st_mtime_ns) for stat in stats)

    def load(self) -> TlsMaterial:
        try:
            chain, key, ca = ((self.directory / name).read_bytes() for name in TLS_FILES)
        except OSError as error:
            raise TlsMaterialError(f"missing TLS file in {self.directory}: {error.strerror}") from None
        return TlsMaterial(chain, key, ca).check()

    def load_with_fingerprint(self) -> tuple[Fingerprint, TlsMaterial]:
        # Fingerprint first: files renewed during the read only cause one more (harmless) reload later.
        fingerprint = self.fingerprint()
        return fingerprint, self.load()


# ---------------------------------------------------------------------------------------------- server


def server_certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)], root_certificates=material.ca_certificates
    )


def static_server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    """Credentials that require a client certificate of our CA (for test doubles: no reload)."""
    return grpc.ssl_server_credentials(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.ca_certificates,
        require_client_auth=True,
    )


class ReloadingServerCredentials:
    """Server credentials that require a client certificate and follow the files on disk.

    gRPC asks `_fetch` before every new connection's handshake: it compares the files' fingerprint with
    what it last loaded (three stats) and hands gRPC the new material only when they changed. Material
    that does not load (a renewal half written) leaves the current one in place until the next handshake.
    """

    def __init__(self, directory: str | Path) -> None:
        self._files = TlsFiles(directory)
        self._loaded, initial = self._files.load_with_fingerprint()
        self._failed: Fingerprint | None = None
        self._lock = threading.Lock()  # gRPC may call the fetcher from several threads at once
        self.credentials = grpc.dynamic_ssl_server_credentials(
            server_certificate_configuration(initial),
            self._fetch,  # type: ignore[arg-type]  # None means "unchanged" (grpc's docs); the stubs omit it
            require_client_authentication=True,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                fingerprint = self._files.fingerprint()
                if fingerprint == self._loaded:
                    return None
                fingerprint, material = self._files.load_with_fingerprint()
            except Exception as error:  # never raise into gRPC's handshake: keep the current certificate
                if fingerprint != self._failed:  # say it once per attempt, not once per connection
                    self._failed = fingerprint
                    log.warning(
                        "TLS material not reloaded; keeping the current one", extra={"error": str(error)}
                    )
                return None
            self._loaded = fingerprint
            log.info("TLS material reloaded", extra={"tls_dir": str(self._files.directory)})
            return server_certificate_configuration(material)


# ---------------------------------------------------------------------------------------------- client


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_certificates,
        private_key=material.private_key,
        certificate_chain=material.certificate_chain,
    )


def secure_channel(
    address: str,
    material: TlsMaterial,
    server_identity: str,
    options: ChannelOptions = (),
    interceptors: ClientInterceptors | None = None,
) -> grpc.aio.Channel:
    """A mutual-TLS channel that accepts only a server holding `server_identity`'s certificate.

    One channel keeps one connection (one handshake) for all its calls: open it once, not per call.
    """
    if not IDENTITY_PATTERN.fullmatch(server_identity):
        raise ValueError(f"not an identity: {server_identity!r}")
    return grpc.aio.secure_channel(
        address,
        channel_credentials(material),
        options=[*options, ("grpc.ssl_target_name_override", server_identity)],
        interceptors=interceptors,
    )


class ClientTls:
    """This process's client side of mutual TLS: the current material, and whether the files changed.

    gRPC Python cannot swap a channel's certificate, so a process that keeps channels open rebuilds them
    when `reload_if_changed()` says so (see `gateway.backends`).
    """

    def __init__(self, directory: str | Path) -> None:
        self._files = TlsFiles(directory)
        self._fingerprint, self.material = self._files.load_with_fingerprint()

    def reload_if_changed(self) -> bool:
        """Loads the files again if they changed since; True when `material` is new."""
        try:
            fingerprint = self._files.fingerprint()
            if fingerprint == self._fingerprint:
                return False
            fingerprint, material = self._files.load_with_fingerprint()
        except TlsMaterialError as error:
            log.warning("TLS material not reloaded; keeping the current one", extra={"error": str(error)})
            return False
        self._fingerprint, self.material = fingerprint, material
        log.info("TLS material reloaded", extra={"tls_dir": str(self._files.directory)})
        return True

    def channel(
        self,
        address: str,
        server_identity: str,
        options: ChannelOptions = (),
        interceptors: ClientInterceptors | None = None,
    ) -> grpc.aio.Channel:
        return secure_channel(address, self.material, server_identity, options, interceptors)

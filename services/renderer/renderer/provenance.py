"""C2PA: a signed manifest in every output stating it was created by a trained algorithm.

Signing runs offline and in memory (c2pa-python's Rust library over BytesIO streams: no temp files, no
network: no timestamp authority is configured and OCSP is not fetched). The private key stays a Python
`cryptography` object; the library only sees a signing callback, so the key could equally live in an HSM
or Vault Transit (`transit/sign`) behind that callback.

Credentials: production configures a certificate chain (leaf first, PEM) and its EC P-256 private key;
development generates a throwaway CA and leaf in memory at start (manifests then validate as "Valid",
not "Trusted", since no verifier trusts that CA).
"""

from __future__ import annotations

import datetime
import importlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renderer.marking import DIGITAL_SOURCE_TYPE

log = logging.getLogger(__name__)

PNG = "image/png"
CLAIM_GENERATOR = "likeness-renderer"
_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class ProvenanceUnavailable(RuntimeError):
    """C2PA signing was asked for but cannot be done (library missing or bad credentials)."""


@dataclass(frozen=True)
class Credentials:
    """A signing key and its certificate chain (PEM, leaf first)."""

    private_key: ec.EllipticCurvePrivateKey
    chain_pem: str

    @classmethod
    def from_pem(cls, chain_pem: str, private_key_pem: str) -> Credentials:
        key = serialization.load_pem_private_key(private_key_pem.encode("utf-8"), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ProvenanceUnavailable("the C2PA signing key must be an EC P-256 key (ES256)")
        leaf = x509.load_pem_x509_certificates(chain_pem.encode("utf-8"))[0]
        if leaf.public_key() != key.public_key():
            raise ProvenanceUnavailable("the C2PA certificate does not belong to the signing key")
        return cls(private_key=key, chain_pem=chain_pem)

    @classmethod
    def ephemeral(cls) -> tuple[Credentials, str]:
        """A throwaway CA and a leaf signed by it, in memory; returns (credentials, CA certificate PEM)."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Likeness (development)"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Likeness development CA"),
            ]
        )
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signing=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Likeness (development)"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Likeness renderer"),
                    ]
                )
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signing=True), critical=True)
            # C2PA requires a signer certificate with an EKU it recognises (emailProtection is one).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        chain = _pem(leaf) + _pem(ca)
        return cls(private_key=key, chain_pem=chain), _pem(ca)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_usage(signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _load_c2pa() -> Any | None:
    """The c2pa module, or None where c2pa-python is not installed (it ships no type information)."""
    try:
        return importlib.import_module("c2pa")
    except ImportError:
        return None


def c2pa_available() -> bool:
    return _load_c2pa() is not None


def _manifest_definition() -> str:
    # Nothing about the person or the job goes in: only what made the image and how.
    return json.dumps(
        {
            "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": "1"}],
            "format": PNG,
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": DIGITAL_SOURCE_TYPE,
                                "softwareAgent": {"name": "Likeness renderer"},
                            }
                        ]
                    },
                }
            ],
        }
    )


class ManifestSigner:
    """Signs PNG outputs with a C2PA manifest. Thread-safe: each call builds its own Builder."""

    def __init__(self, credentials: Credentials) -> None:
        c2pa = _load_c2pa()
        if c2pa is None:
            raise ProvenanceUnavailable("c2pa-python is not installed")
        self._c2pa = c2pa
        key = credentials.private_key

        def sign(data: bytes) -> bytes:
            return key.sign(data, ec.ECDSA(hashes.SHA256()))

        self._signer = c2pa.Signer.from_callback(sign, c2pa.C2paSigningAlg.ES256, credentials.chain_pem, None)
        # No thumbnail: the manifest would otherwise carry a second copy of the face.
        self._context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
        self._definition = _manifest_definition()

    def sign_png(self, png: bytes) -> bytes:
        builder = self._c2pa.Builder(self._definition, context=self._context)
        out = io.BytesIO()
        builder.sign(self._signer, PNG, io.BytesIO(png), out)
        return out.getvalue()


@dataclass(frozen=True)
class ManifestReport:
    """What a C2PA reader found: validation_state is "Invalid", "Valid" or "Trusted"."""

    validation_state: str
    digital_source_types: tuple[str, ...]
    signer: str
    failures: tuple[str, ...]

    @property
    def says_ai_generated(self) -> bool:
        return DIGITAL_SOURCE_TYPE in self.digital_source_types and self.validation_state != "Invalid"


def read_manifest(data: bytes, image_format: str, trust_anchors_pem: str = "") -> ManifestReport | None:
    """The active C2PA manifest of an image (None when it has none or c2pa-python is missing)."""
    c2pa = _load_c2pa()
    if c2pa is None:
        return None
    mime = _MIME_BY_FORMAT.get(image_format.upper())
    if mime is None:
        return None
    settings: dict[str, Any] = {}
    if trust_anchors_pem:
        settings = {"verify": {"verify_trust": True}, "trust": {"trust_anchors": trust_anchors_pem}}
    try:
        context = c2pa.Context.from_dict(settings) if settings else None
        reader = c2pa.Reader(mime, io.BytesIO(data), context=context)
        manifest = reader.get_active_manifest() or {}
        state = reader.get_validation_state() or "Invalid"
        results = reader.get_validation_results() or {}
    except c2pa.C2paError:
        return None
    types = tuple(
        str(action.get("digitalSourceType", ""))
        for assertion in manifest.get("assertions", [])
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in assertion.get("data", {}).get("actions", [])
    )
    failures = tuple(
        str(item.get("code", "")) for item in (results.get("activeManifest") or {}).get("failure", [])
    )
    signature = manifest.get("signature_info") or {}
    return ManifestReport(
        validation_state=str(state),
        digital_source_types=types,
        signer=str(signature.get("common_name", "")),
        failures=failures,
    )

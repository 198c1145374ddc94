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
import io
import json
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from likeness_marks.c2pa_reading import load_c2pa
from likeness_marks.iptc import DIGITAL_SOURCE_TYPE

log = logging.getLogger(__name__)

PNG = "image/png"
CLAIM_GENERATOR = "likeness-renderer"


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
        c2pa = load_c2pa()
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

"""Per-subject keys in Vault Transit: create, data keys, batch decrypt, destroy (cryptographic erase).

Every subject has one Transit key, `likeness-subject-<subject_id>` (aes256-gcm96, not exportable, no
plaintext backup, deletion allowed). Blobs are encrypted with their own data key, wrapped by it; once
the key is destroyed the wrapped data keys (and so every copy of every blob) can never be unwrapped.

hvac is synchronous: async callers run these methods in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
import hvac.exceptions
import requests

from likeness.config import CommonSettings
from likeness.envelope import DataKey

KEY_PREFIX = "likeness-subject-"
#: A login's token is renewed by logging in again once this share of its TTL has passed.
RENEW_AT_SHARE_OF_TTL = 0.7

T = TypeVar("T")
#: Logs a client in and returns its token's lease in seconds (0: no expiry known).
Login = Callable[[hvac.Client], float]


class KeyError_(Exception):
    """Base of the key errors (named so it never shadows the builtin KeyError)."""


class KeyDestroyed(KeyError_):
    """The subject's key no longer exists: their data is cryptographically erased."""


class VaultUnavailable(KeyError_):
    """Vault could not be reached or failed; the operation may be retried."""


class KeyAccessDenied(KeyError_):
    """This service's Vault policy does not allow the operation."""


def key_name(subject_id: str) -> str:
    return f"{KEY_PREFIX}{subject_id}"


def _key_version(wrapped: str) -> int:
    # Transit ciphertexts look like "vault:v3:..." where 3 is the key version that wrapped them.
    try:
        return int(wrapped.split(":", 2)[1].removeprefix("v"))
    except (IndexError, ValueError) as exc:
        raise KeyError_("malformed wrapped data key") from exc


class _Translate:
    """Maps hvac/requests failures to our distinct errors, without leaking response bodies. The original
    is not chained: its message names the request URL, which holds the key name and so a subject id."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, hvac.exceptions.Forbidden):
            raise KeyAccessDenied(f"Vault denied {self.operation}") from None
        if isinstance(exc, hvac.exceptions.InvalidPath):
            raise KeyDestroyed(f"{self.operation}: key not found") from None
        if isinstance(exc, hvac.exceptions.InvalidRequest) and "not found" in str(exc):
            raise KeyDestroyed(f"{self.operation}: key not found") from None
        if isinstance(exc, requests.exceptions.RequestException | hvac.exceptions.VaultDown):
            raise VaultUnavailable(f"Vault unreachable during {self.operation}") from None
        if isinstance(exc, hvac.exceptions.InternalServerError | hvac.exceptions.BadGateway):
            raise VaultUnavailable(f"Vault failed during {self.operation}") from None
        if isinstance(exc, hvac.exceptions.VaultError):
            raise KeyError_(f"Vault refused {self.operation}") from None
        return False


def kubernetes_login(role: str, token_path: str) -> Login:
    """Vault's Kubernetes auth. The service account token is read again at every login: the kubelet
    rotates projected tokens, so the one read at start-up would be refused after an hour or so."""

    def login(client: hvac.Client) -> float:
        jwt = Path(token_path).read_text().strip()
        with _Translate("kubernetes login"):
            response = client.auth.kubernetes.login(role=role, jwt=jwt)
        return float(response["auth"].get("lease_duration") or 0)

    return login


class SubjectKeys:
    """A subject's Transit key operations. With a `login`, the Vault token is renewed before its TTL runs
    out (short-lived tokens are the point of Kubernetes auth) and once more when Vault refuses a call, so
    a long-running service never ends up denied by an expired token."""

    def __init__(
        self,
        client: hvac.Client,
        mount: str = "transit",
        login: Login | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._mount = mount
        self._login = login
        self._clock = clock
        self._login_lock = threading.Lock()
        self._renew_at: float | None = None  # None: log in before the next call
        if login is None:
            self._renew_at = float("inf")

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> SubjectKeys:
        client = hvac.Client(url=settings.vault_addr, timeout=settings.vault_timeout_seconds)
        if settings.vault_auth == "kubernetes":
            keys = cls(
                client,
                settings.vault_transit_mount,
                login=kubernetes_login(settings.vault_role, settings.vault_kubernetes_token_path),
            )
            keys._log_in(stale=None)  # fail at start-up, not at the first request, on a wrong role
            return keys
        client.token = settings.vault_token.get_secret_value()
        return cls(client, settings.vault_transit_mount)

    def _log_in(self, stale: float | None) -> None:
        """Logs in unless another thread already did since the caller saw `stale` as the renewal time."""
        assert self._login is not None
        with self._login_lock:
            if stale is not None and self._renew_at != stale:
                return
            started = self._clock()
            lease = self._login(self._client)
            self._renew_at = started + lease * RENEW_AT_SHARE_OF_TTL if lease > 0 else float("inf")

    def _vault(self, operation: str, call: Callable[[], T]) -> T:
        """Runs one Vault call with our error mapping, renewing the token when it is due or refused."""
        renew_at = self._renew_at
        if self._login is not None and (renew_at is None or self._clock() >= renew_at):
            self._log_in(stale=renew_at)
        seen = self._renew_at
        try:
            with _Translate(operation):
                return call()
        except KeyAccessDenied:
            if self._login is None:
                raise
            self._log_in(stale=seen)  # revoked or expired early: one fresh login, one more try
            with _Translate(operation):
                return call()

    @property
    def _transit(self) -> hvac.api.secrets_engines.Transit:
        return self._client.secrets.transit

    def create(self, subject_id: str) -> str:
        name = key_name(subject_id)

        def create() -> None:
            self._transit.create_key(
                name,
                key_type="aes256-gcm96",
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=self._mount,
            )
            self._transit.update_key_configuration(name, deletion_allowed=True, mount_point=self._mount)

        self._vault("create key", create)
        return name

    def exists(self, subject_id: str) -> bool:
        try:
            self._vault(
                "read key", lambda: self._transit.read_key(key_name(subject_id), mount_point=self._mount)
            )
        except KeyDestroyed:
            return False
        return True

    def data_key(self, subject_id: str) -> DataKey:
        """A fresh 256-bit data key: plaintext for this process only, wrapped for the envelope header."""
        name = key_name(subject_id)
        response: dict[str, Any] = self._vault(
            "data key",
            lambda: self._transit.generate_data_key(name, key_type="plaintext", mount_point=self._mount),
        )
        data = response["data"]
        wrapped = str(data["ciphertext"])
        return DataKey(
            plaintext=base64.b64decode(data["plaintext"]),
            wrapped=wrapped,
            key_name=name,
            key_version=_key_version(wrapped),
        )

    def unwrap(self, subject_id: str, wrapped_keys: Sequence[str]) -> list[bytes]:
        """Unwraps many data keys in one round trip (`batch_input`)."""
        if not wrapped_keys:
            return []
        name = key_name(subject_id)
        batch = [{"ciphertext": wrapped} for wrapped in wrapped_keys]
        response: dict[str, Any] = self._vault(
            "decrypt",
            lambda: self._transit.decrypt_data(
                name, ciphertext="", batch_input=batch, mount_point=self._mount
            ),
        )
        results = response["data"]["batch_results"]
        failed = [r for r in results if r.get("error")]
        if failed:
            message = str(failed[0]["error"])
            if "not found" in message:
                raise KeyDestroyed("decrypt: key not found")
            raise KeyError_("Vault could not unwrap a data key")
        return [base64.b64decode(r["plaintext"]) for r in results]

    def destroy(self, subject_id: str) -> bool:
        """Deletes the subject's key. Returns False when it was already gone (idempotent)."""
        if not self.exists(subject_id):
            return False
        name = key_name(subject_id)

        def destroy() -> None:
            self._transit.update_key_configuration(name, deletion_allowed=True, mount_point=self._mount)
            self._transit.delete_key(name, mount_point=self._mount)

        self._vault("destroy key", destroy)
        return True

    def is_available(self) -> bool:
        try:
            status = self._client.sys.read_health_status(method="GET")
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            return False
        if isinstance(status, dict):
            return not status.get("sealed", False)
        return bool(getattr(status, "ok", False))

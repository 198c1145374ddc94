"""Vault tokens for the dev stack's processes, each carrying only its identity's policy from deploy/vault.

In a cluster each pod logs in with its service account (Kubernetes auth, role `likeness-<identity>`) and
gets a short-lived token with policy `likeness-<identity>` and nothing else. The dev stack has no cluster,
so it writes the same policy files into its OpenBao and mints each process a token with the same single
policy (no default policy) from the root token, which no service then holds. A process that calls Transit
beyond what its policy names fails in the dev stack and the tests as it would in production.

The dev OpenBao keeps everything in memory: after a restart of it (not a pause) these tokens are gone, and
the stack must be started again. A persistent one (`Infra(persistent_vault=True)`) keeps them, with the
policies and every transit key, across restarts.
"""

from __future__ import annotations

from pathlib import Path

from likeness_dev.infra import TRANSIT_MOUNT, Infra

#: deploy/vault/policies of this checkout (the dev kit is installed editable from it).
POLICY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "vault" / "policies"


def policy_name(identity: str) -> str:
    return f"likeness-{identity}"


def policy_text(identity: str, transit_mount: str = TRANSIT_MOUNT) -> str:
    """The identity's policy with the Transit mount substituted, as deploy/vault/bootstrap.sh writes it."""
    path = POLICY_DIR / f"{identity}.hcl"
    if not path.is_file():
        raise FileNotFoundError(
            f"no Vault policy for {identity!r} at {path}: every process that talks to Vault needs one in "
            "deploy/vault/policies (and a role in deploy/vault/roles)"
        )
    text = path.read_text()
    return text.replace('"transit/', f'"{transit_mount}/').replace('"transit"', f'"{transit_mount}"')


def identity_vault_token(infra: Infra, identity: str, transit_mount: str = TRANSIT_MOUNT) -> str:
    """Writes the identity's policy into the stack's OpenBao (idempotent) and returns a new token that
    carries that policy alone."""
    client = infra.vault_client()
    name = policy_name(identity)
    client.sys.create_or_update_acl_policy(name=name, policy=policy_text(identity, transit_mount))
    created = client.auth.token.create(
        policies=[name], no_default_policy=True, display_name=identity, meta={"identity": identity}
    )
    return str(created["auth"]["client_token"])

"""A persistent OpenBao's first initialisation and its unsealing, as an operator does them, for the dev stack.

`bao server -dev` keeps everything in memory and comes up unsealed: a restart loses every subject's key, so
fault tests could only freeze it. A persistent OpenBao (file storage, `Infra(persistent_vault=True)`) keeps
its keys across restarts (integrated raft storage, one node: this OpenBao has no plain file storage) but
starts sealed: it is initialised once with a single key share (development
only: production splits the key or auto-unseals with a KMS) and unsealed after every start with that key.
The unseal key and the root token stay in one file of the stack's state dir, readable by its owner only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

#: One share, threshold one: enough for a dev server whose keys file sits beside its data anyway.
DEV_KEY_SHARES = 1
INIT_FILE = "vault-init.json"


@dataclass(frozen=True)
class VaultKeys:
    """What initialisation handed out once: the unseal key and the root token."""

    unseal_key: str
    root_token: str


def read_keys(path: Path) -> VaultKeys | None:
    """The keys of an OpenBao initialised earlier (None: never initialised from this state dir)."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return VaultKeys(unseal_key=stored["unseal_key"], root_token=stored["root_token"])


def initialise(addr: str, path: Path) -> VaultKeys:
    """`bao operator init` with one key share; the keys go to `path` (0600) before anything else uses them."""
    response = httpx.put(
        f"{addr}/v1/sys/init",
        json={"secret_shares": DEV_KEY_SHARES, "secret_threshold": DEV_KEY_SHARES},
        timeout=30.0,
    )
    response.raise_for_status()
    answer = response.json()
    keys = VaultKeys(unseal_key=answer["keys_base64"][0], root_token=answer["root_token"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"unseal_key": keys.unseal_key, "root_token": keys.root_token}, out)
    os.chmod(path, 0o600)
    return keys


def unseal(addr: str, keys: VaultKeys) -> bool:
    """Hands OpenBao the unseal key; whether it is unsealed now."""
    response = httpx.put(f"{addr}/v1/sys/unseal", json={"key": keys.unseal_key}, timeout=10.0)
    response.raise_for_status()
    return not bool(response.json().get("sealed", True))


def config_text(port: int, cluster_port: int, data_dir: Path) -> str:
    """The server's HCL: one raft node storing under `data_dir` (encrypted by OpenBao's barrier), plain
    HTTP on loopback as the dev server has."""
    return (
        f'storage "raft" {{\n  path = "{data_dir}"\n  node_id = "likeness-dev"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  cluster_address = "127.0.0.1:{cluster_port}"\n'
        "  tls_disable = true\n}\n"
        f'api_addr = "http://127.0.0.1:{port}"\n'
        f'cluster_addr = "http://127.0.0.1:{cluster_port}"\n'
        "ui = false\n"
    )

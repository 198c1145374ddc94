"""Where the gateway is and which token to use, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from likeness_client.errors import LikenessError

USER_AGENT = "likeness-client/0.1"
URL_VARIABLE = "LIKENESS_GATEWAY_URL"
TOKEN_VARIABLES = ("LIKENESS_TOKEN", "LIKENESS_DEV_TOKEN")


def request_headers(token: str) -> dict[str, str]:
    """Headers of every request; without a token, only the public routes (receipt keys, health) answer."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    token: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        """`LIKENESS_GATEWAY_URL` and `LIKENESS_TOKEN` (else `LIKENESS_DEV_TOKEN`, as `likeness dev up`
        writes it into .likeness/dev.env)."""
        values = os.environ if env is None else env
        url = values.get(URL_VARIABLE, "").strip()
        token = next((values[name].strip() for name in TOKEN_VARIABLES if values.get(name, "").strip()), "")
        if not url:
            raise LikenessError(f"no gateway URL: set {URL_VARIABLE}")
        if not token:
            raise LikenessError(f"no token: set {TOKEN_VARIABLES[0]}")
        return cls(base_url=url, token=token)

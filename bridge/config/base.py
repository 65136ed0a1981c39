"""The pieces every section is built from: the strict base model and small shared checks."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """User configuration rejects unknown keys: a typo must be an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any address

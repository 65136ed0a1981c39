"""The `web:` section: where the page listens and who may use it."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import StrictModel, is_loopback


class WebConfig(StrictModel):
    """The web page (bridge/extensions/web/): live plates, search, visits, watch lists, usage."""

    enabled: bool = Field(
        False, description="Serve the web page (needs history.enabled: it shows the store)."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on; off loopback it needs a password, a token or trusted_proxies.",
    )
    port: int = Field(8099, ge=0, le=65535, description="Port to listen on (0: any free port).")
    base_path: str = Field(
        "",
        max_length=200,
        description="Path prefix the page is served under behind a reverse proxy that keeps it (/plates); "
        "empty when the proxy strips it. Home Assistant's ingress path is read from X-Ingress-Path.",
    )
    password: SecretStr | None = Field(
        None, min_length=8, description="Password of the login form (a session cookie follows); never shown."
    )
    token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Token a script sends as `Authorization: Bearer ...` (the login form takes it "
        "too); never shown.",
    )
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses of proxies that log users in themselves (Home Assistant's ingress: "
        "172.30.32.2): their requests need no password; everyone else's do.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="Host names the page may be asked for without a login besides localhost and loopback "
        "addresses (a name a local reverse proxy passes on); refuses DNS-rebinding pages.",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="Hours a login lasts.")
    max_upload_bytes: int = Field(
        1024 * 1024, ge=1024, le=10 * 1024 * 1024, description="Largest watch-list CSV accepted, bytes."
    )
    live_clients: int = Field(8, ge=1, le=64, description="Pages following the live feed at once, at most.")

    @field_validator("base_path")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError(f"{value!r} must look like /plates or /a/b (letters, digits, . _ ~ -)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _login_off_loopback(self) -> WebConfig:
        # The page edits watch lists (gates, alerts) and shows who came and went: beyond this machine,
        # only with a login or behind a proxy that does its own.
        if (
            self.enabled
            and not is_loopback(self.host)
            and not (self.password or self.token or self.trusted_proxies)
        ):
            raise ValueError(
                f"host {self.host!r} serves the page to other machines: set web.password (or web.token, "
                "or trusted_proxies for Home Assistant's ingress), or listen on 127.0.0.1"
            )
        return self

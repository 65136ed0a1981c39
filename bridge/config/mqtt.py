"""The `mqtt:` section: the broker, its TLS files and the bridge's base topic."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator, model_validator

from bridge.config.base import StrictModel
from bridge.core.messages import check_publish_topic


class TLSConfig(StrictModel):
    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker's certificate.")
    certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    keyfile: Path | None = Field(None, description="Private key of the client certificate.")
    insecure: bool = Field(
        False,
        description="Skip the broker hostname check (self-signed test brokers); logged as a warning.",
    )

    @model_validator(mode="after")
    def _files_load(self) -> TLSConfig:
        if self.keyfile and not self.certfile:
            raise ValueError("tls.keyfile is set without tls.certfile")
        # Checked here, so `check-config` fails on what `run` would fail on: each file by its path.
        for key in ("ca_certs", "certfile", "keyfile"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ValueError(f"{key} {path}: no such file")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_certs is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_certs))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ca_certs {self.ca_certs}: cannot be loaded as a CA bundle: {_ssl_reason(exc)}"
                ) from None
        if self.certfile is not None:
            try:
                context.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
            except (OSError, ssl.SSLError) as exc:
                files = f"{self.certfile}" + (f" with {self.keyfile}" if self.keyfile else "")
                raise ValueError(
                    f"certfile {files}: cannot be loaded as a certificate and its key: {_ssl_reason(exc)}"
                ) from None
        return self


# OpenSSL's reason codes for files that do not load, in words.
_SSL_REASONS = {
    "PEM_LIB": "not readable as PEM",
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "NO_CERTIFICATE_OR_CRL_FOUND": "no certificate in it",
    "NO_START_LINE": "not PEM",
}


def _ssl_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        # Python leaves `reason` empty for some errors: "[SSL] PEM lib (_ssl.c:3905)".
        reason = exc.reason or ("PEM_LIB" if "PEM lib" in str(exc) else str(exc))
        return _SSL_REASONS.get(reason, reason.lower().replace("_", " "))
    return str(exc.strerror or exc)


# Tags of the `tls` union's two forms; left out of the key a problem is reported at.
_TLS_SWITCH, _TLS_FILES = "tls-switch", "tls-files"
UNION_TAGS = {_TLS_SWITCH, _TLS_FILES}


class MQTTConfig(StrictModel):
    host: str = Field("localhost", description='Broker host, or "embedded" to run a broker in the bridge.')
    port: int = Field(1883, ge=0, le=65535, description="Broker port (0 with embedded: any free port).")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password; never logged.")
    tls: Annotated[
        Annotated[bool, Tag(_TLS_SWITCH)] | Annotated[TLSConfig, Tag(_TLS_FILES)],
        # Told apart by the value's type, so a problem in the files is reported alone, not next to
        # "Input should be a valid boolean".
        Discriminator(lambda value: _TLS_SWITCH if isinstance(value, bool | str | int) else _TLS_FILES),
    ] = Field(False, description="false, true (system CAs) or CA/client cert files.")
    client_id: str = Field("plate-bridge", min_length=1, description="MQTT client id.")
    base_topic: str = Field("plate-bridge", min_length=1, description="Prefix of every topic published.")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    keepalive: int = Field(60, ge=5, le=65535, description="Keep-alive interval in seconds.")
    persistent_session: bool = Field(
        True,
        description="Keep the session across reconnects, so QoS 1 frames sent meanwhile are delivered.",
    )
    session_expiry: int = Field(
        3600, ge=0, description="MQTT 5: seconds the broker keeps the session after a disconnect."
    )
    health_interval: float = Field(
        60.0, ge=0, description="Seconds between health documents on {base_topic}/bridge/health; 0: never."
    )

    @field_validator("base_topic")
    @classmethod
    def _base_topic_publishable(cls, value: str) -> str:
        return check_publish_topic(value.rstrip("/"))

    @model_validator(mode="after")
    def _password_needs_username(self) -> MQTTConfig:
        if self.password is not None and not self.username:
            raise ValueError("mqtt.password is set without mqtt.username")
        return self

    @property
    def embedded(self) -> bool:
        return self.host == "embedded"

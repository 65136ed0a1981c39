"""The exception tree of plate-bridge; each error's `code` is what error events publish.

    BridgeError
    ├── ConfigError                 bad configuration (file, environment, CLI)
    ├── PayloadError                an MQTT payload the bridge cannot turn into an image
    │   ├── PayloadTooLarge
    │   ├── PayloadNotImage
    │   └── EnvelopeInvalid
    ├── ReaderError                 the Plate Recognizer service (cloud or SDK) did not give a reading
    │   ├── ReaderForbidden             403: bad token, no credits
    │   ├── ReaderPayloadTooLarge       413
    │   ├── ReaderRateLimited           429 (keeps `retry_after`)
    │   ├── ReaderRejected              any other 4xx
    │   ├── ReaderUnavailable           5xx, connection refused/reset, timeout (`ambiguous`
    │   │                               when the request went out and may have been billed)
    │   └── ReaderInvalidResponse       a body that is not JSON or fails its schema
    ├── SchemaViolation             a document that fails one of the project's JSON schemas
    ├── FrameDropped                a frame dropped unread (a newer frame of its camera, shutdown)
    ├── NodeError                   a flow node failed in a way it did not expect
    ├── BrokerError                 the MQTT broker refused the bridge or cannot be reached
    └── PublishError                an event could not be handed to the broker

Messages never carry secrets: the reader client never puts its token or full headers into an error,
and `redact()` is available to anyone formatting text that might contain one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class BridgeError(Exception):
    """Raised for every failure plate-bridge expects and reports; the root of the tree."""

    code: str = "bridge_error"

    def __init__(self, message: str, *, problems: Iterable[str] = (), **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.problems = [str(problem) for problem in problems]
        self.context = context

    def __str__(self) -> str:
        return self.message


class ConfigError(BridgeError):
    """Raised when configuration (file, environment or command line) is invalid."""

    code = "config_invalid"

    def __init__(self, message: str, *, problems: Iterable[str] = ()) -> None:
        super().__init__(message, problems=list(problems) or [message])


class PayloadError(BridgeError):
    """Raised when an MQTT payload cannot be turned into an image to read."""

    code = "payload_invalid"


class PayloadTooLarge(PayloadError):
    """Raised when a payload is over the configured size limit (checked before any decoding)."""

    code = "payload_too_large"


class PayloadNotImage(PayloadError):
    """Raised when the decoded bytes are not a JPEG or PNG image (checked by magic bytes)."""

    code = "payload_not_image"


class EnvelopeInvalid(PayloadError):
    """Raised when a JSON envelope does not match `schemas/image-message.schema.json`."""

    code = "envelope_invalid"


class ReaderError(BridgeError):
    """Raised when the Plate Recognizer service did not return a reading."""

    code = "reader_error"

    @property
    def status_code(self) -> int | None:
        value = self.context.get("status_code")
        return value if isinstance(value, int) else None


class ReaderForbidden(ReaderError):
    """Raised on HTTP 403: the token was refused or the account has no credits left."""

    code = "reader_forbidden"


class ReaderPayloadTooLarge(ReaderError):
    """Raised on HTTP 413: the service refused the image as too large."""

    code = "reader_payload_too_large"


class ReaderRateLimited(ReaderError):
    """Raised on HTTP 429; `retry_after` is the wait in seconds the service asked for."""

    code = "reader_rate_limited"

    @property
    def retry_after(self) -> float | None:
        value = self.context.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class ReaderRejected(ReaderError):
    """Raised on any other HTTP 4xx (a bad image, a bad parameter)."""

    code = "reader_rejected"


class ReaderUnavailable(ReaderError):
    """Raised on 5xx, refused or dropped connections and timeouts: the service may heal."""

    code = "reader_unavailable"

    @property
    def ambiguous(self) -> bool:
        """True when the request went out whole and no answer came back (a timeout, a dropped
        connection): the service may have read, and billed, the frame."""
        return self.context.get("ambiguous") is True


class ReaderInvalidResponse(ReaderError):
    """Raised when the service answered 2xx with a body that is not JSON or fails its schema."""

    code = "reader_invalid_response"


class SchemaViolation(BridgeError):
    """Raised when a document fails one of the project's JSON schemas; `problems` lists why."""

    code = "schema_violation"

    def __init__(self, message: str, *, schema: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message, problems=problems, schema=schema)


class FrameDropped(BridgeError):
    """Raised (reported) when an accepted frame is dropped before it was read: overload or shutdown."""

    code = "frame_dropped"


class NodeError(BridgeError):
    """Raised when a flow node fails unexpectedly; the flow reports it and other routes go on."""

    code = "node_failed"


class BrokerError(BridgeError):
    """Raised when the MQTT broker refuses the connection (bad credentials) or cannot be reached."""

    code = "broker_unavailable"


class PublishError(BridgeError):
    """Raised when an event cannot be handed to the MQTT client."""

    code = "publish_failed"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return `text` with every non-empty secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text

"""Webhooks: in, Plate Recognizer's webhooks become plate events; out, plate events go to your URLs.

In: the SDK and Stream POST each reading to a webhook target — JSON (`{"hook": {...}, "data": {...}}`,
`schemas/webhook.schema.json`), or multipart with that JSON in a `json` field and the image in `upload`.
The receiver validates the body and hands the reading to the routes with the frame's metadata carrying
it (`reading`), so the flow skips decode and the reader call — the reading is already made — and runs
validate, the route's nodes (watch lists, dedupe) and publish as for any camera frame.

Out: each plate (or error) event is POSTed as JSON to the configured targets, from a bounded queue,
with retries and jittered exponential backoff; the targets' headers (tokens) are never logged. On a
route with a consensus node a vehicle is POSTed once: its vehicle event, not its frames' plate events.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config import StrictModel, is_loopback
from bridge.core import schemas
from bridge.core.events import decode_json, encode
from bridge.core.messages import check_publish_topic, topic_level
from bridge.core.redact import shown_url
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.extensions.httpserver import HTTPListener, ListenerRequestHandler

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger(__name__)

# Room for the JSON and the multipart framing beside the largest image the bridge accepts.
BODY_MARGIN_BYTES = 256 * 1024
# Webhooks read at the same time; more get 503 (and the sender retries), so memory stays bounded by
# this times the largest body, whatever arrives.
CONCURRENT_REQUESTS = 4
# Seconds a sender has for its whole request and our answer, however it trickles: a stalled or slow
# one does not hold a slot longer.
REQUEST_TIMEOUT = 30.0


class WebhookListenConfig(StrictModel):
    """Receive Plate Recognizer webhooks (SDK, Stream) and publish them as plate events."""

    enabled: bool = Field(False, description="Listen for Plate Recognizer webhooks over HTTP.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 for others.")
    port: int = Field(8081, ge=0, le=65535, description="Port to listen on (0: any free port).")
    path: str = Field("/plate-recognizer", description="URL path the webhook is POSTed to.")
    token: SecretStr | None = Field(
        None,
        description="Shared secret a sender must give (?token= or `Authorization: Token ...`); never logged.",
    )
    topic: str = Field(
        "plate-recognizer/webhook/{camera_id}",
        description="Topic the readings are handed to the routes on ({camera_id}); a route must match it.",
    )

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        return value

    @field_validator("topic")
    @classmethod
    def _topic_placeholders(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(camera_id="c"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{camera_id}} may be used ({exc})") from None
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebhookListenConfig:
        # Whoever reaches the port can publish plate events (watch-list alerts, gate automations):
        # beyond this machine, only with the shared secret.
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} takes webhooks from other machines: set webhooks.listen.token "
                "(senders add ?token=... or `Authorization: Token ...`), or listen on 127.0.0.1"
            )
        return self


class WebhookTarget(StrictModel):
    url: str = Field(description="Where plate events are POSTed as JSON.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent with each POST (Authorization, ...); never logged."
    )
    events: tuple[Literal["plate", "error"], ...] = Field(
        ("plate",),
        min_length=1,
        description="Kinds sent: plate (a consensus route's vehicle events, not its frames'), error.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook URL must start with http:// or https://")
        return value


class WebhooksConfig(StrictModel):
    """Webhooks in (Plate Recognizer to the bridge) and out (plate events to your URLs)."""

    listen: WebhookListenConfig = Field(default={}, description="Receiving Plate Recognizer webhooks.")  # type: ignore[assignment]
    targets: list[WebhookTarget] = Field(default_factory=list, description="URLs plate events are sent to.")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for one delivery.")
    retries: int = Field(
        5, ge=0, le=20, description="Retries of a delivery that failed (5xx, 429, no answer)."
    )
    backoff_initial: float = Field(1.0, ge=0, description="First retry's backoff ceiling, seconds.")
    backoff_max: float = Field(60.0, ge=0, description="Largest backoff, seconds (full jitter below it).")
    queue_size: int = Field(
        100, ge=1, description="Deliveries waiting at most; the oldest is dropped beyond."
    )


class WebhookBodyError(ValueError):
    """Raised when a webhook body cannot be used; carries the HTTP status to answer."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []


def parse_webhook(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """The webhook document and, for the multipart variant, the image; WebhookBodyError otherwise."""
    media = content_type.split(";", 1)[0].strip().lower()
    image = None
    if media == "application/json":
        text: bytes | str = body
    elif media == "multipart/form-data":
        # The stdlib's MIME parser, on a body already bounded in size.
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        if not message.is_multipart():
            raise WebhookBodyError(HTTPStatus.BAD_REQUEST, "the multipart body has no parts")
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "json" not in fields:
            raise WebhookBodyError(HTTPStatus.BAD_REQUEST, "the multipart body has no 'json' field")
        text = fields["json"].get_payload(decode=True) or b""
        if "upload" in fields:
            image = fields["upload"].get_payload(decode=True) or None
    else:
        raise WebhookBodyError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"{media or 'no content type'}: send JSON or multipart/form-data",
        )
    try:
        document = decode_json(text)
    except ValueError as exc:
        raise WebhookBodyError(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({exc})") from None
    problems = schemas.problems("webhook", document)
    if problems:
        raise WebhookBodyError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "the body is not a Plate Recognizer webhook", problems[:10]
        )
    return document, image


def _taken_at(data: Mapping[str, Any]) -> datetime | None:
    value = data.get("timestamp")
    try:
        moment = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo is not None else None


class WebhookReceiver(Extension):
    """An HTTP endpoint (the bounded server of `httpserver`, a thread of its own) for Plate Recognizer
    webhooks."""

    name = "webhook-receiver"
    config_key = "webhooks"
    config_model = WebhooksConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.settings = context.config.webhooks.listen
        self.max_body = context.config.max_payload_bytes + BODY_MARGIN_BYTES
        self._http = HTTPListener(
            "webhooks.listen",
            self.settings.host,
            self.settings.port,
            self._handler(),
            thread_name="webhook-receiver",
            max_concurrent=CONCURRENT_REQUESTS,
            deadline=REQUEST_TIMEOUT,
        )

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.webhooks.listen.enabled

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        listen: WebhookListenConfig = config.webhooks.listen
        topic = listen.topic.format(camera_id="camera")
        if listen.enabled and not any(route.topic_filter.match(topic) is not None for route in config.routes):
            raise ValueError(
                f"webhooks.listen.topic: no route takes {topic!r}; add a route such as "
                f"{{topic: {listen.topic.format(camera_id='+')!r}}}"
            )

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when `webhooks.listen.port` is 0)."""
        return self._http.port

    def start(self) -> None:
        self._http.start()
        log.info("receiving webhooks on http://%s:%d%s", self.settings.host, self.port, self.settings.path)

    def stop(self) -> None:
        self._http.stop()

    def authorized(self, query: str, authorization: str | None) -> bool:
        if self.settings.token is None:
            return True
        expected = self.settings.token.get_secret_value().encode()
        given = [value.encode() for value in parse_qs(query).get("token", [])]
        if authorization and authorization.startswith("Token "):
            given.append(authorization.removeprefix("Token ").strip().encode())
        return any(hmac.compare_digest(expected, value) for value in given)

    def accept(self, document: dict[str, Any], image: bytes | None) -> bool:
        """Hand the webhook's reading to the routes; False when none takes it."""
        assert self.context.submit is not None
        data = document["data"]
        camera_id = topic_level(str(data.get("camera_id") or "webhook"))
        topic = self.settings.topic.format(camera_id=camera_id)
        return self.context.submit(topic, image or b"", reading=data, taken_at=_taken_at(data))

    def _handler(self) -> type[ListenerRequestHandler]:
        receiver = self

        class Handler(ListenerRequestHandler):
            def do_POST(self) -> None:
                path, _, query = self.path.partition("?")
                if path != receiver.settings.path:
                    self._answer(HTTPStatus.NOT_FOUND, {"detail": "not found"})
                    return
                if not receiver.authorized(query, self.headers.get("Authorization")):
                    log.warning("webhook from %s refused: wrong or missing token", self.client_address[0])
                    self._answer(HTTPStatus.FORBIDDEN, {"detail": "wrong or missing token"})
                    return
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    self._answer(HTTPStatus.LENGTH_REQUIRED, {"detail": "Content-Length is required"})
                    return
                if int(length) > receiver.max_body:
                    self.close_connection = True  # the unread body must not be taken for a request
                    self._answer(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        {"detail": f"bodies above {receiver.max_body} bytes"},
                    )
                    return
                body = self.rfile.read(int(length))
                try:
                    document, image = parse_webhook(self.headers.get("Content-Type", ""), body)
                except WebhookBodyError as exc:
                    log.warning("webhook refused: %s %s", exc, "; ".join(exc.problems[:3]))
                    self._answer(exc.status, {"detail": str(exc), "problems": exc.problems})
                    return
                if not receiver.accept(document, image):
                    self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "no route takes webhooks"})
                    return
                self._answer(HTTPStatus.OK, {"accepted": True})

            def do_GET(self) -> None:
                self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "POST a webhook here"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


class WebhookSender(Extension):
    """POSTs events to `webhooks.targets` from one thread: bounded queue, retries, jittered backoff."""

    name = "webhook-sender"
    config_key = "webhooks"
    config_model = WebhooksConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.settings = context.config.webhooks
        self._queue: deque[tuple[WebhookTarget, bytes]] = deque()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return bool(config.webhooks.targets)

    def start(self) -> None:
        import urllib3

        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(self.settings.timeout), retries=False)
        self._thread = threading.Thread(target=self._work, name="webhook-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(self.settings.timeout + 1)
        with self._changed:
            left = len(self._queue)
        if left:
            log.warning("webhooks: %d event(s) not delivered before shutdown", left)

    def on_event(self, published: PublishedEvent) -> None:
        # A vehicle is sent once: a consensus route's vehicle events go to the targets that take plate
        # events (a vehicle event is a plate event by its schema), its frames' plate events do not.
        if published.superseded:
            return
        kind = "plate" if published.kind == "vehicle" else published.kind
        body: bytes | None = None
        for target in self.settings.targets:
            if kind not in target.events:
                continue
            body = body or encode(dict(published.event))
            with self._changed:
                if len(self._queue) >= self.settings.queue_size:
                    dropped_target, _ = self._queue.popleft()
                    self.dropped += 1
                    log.warning(
                        "webhooks: %d deliveries waiting; dropped the oldest (to %s)",
                        self.settings.queue_size,
                        shown_url(dropped_target.url),
                    )
                self._queue.append((target, body))
                self._changed.notify()

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._stopping.is_set())
                if self._stopping.is_set():
                    return
                target, body = self._queue.popleft()
            if self._deliver(target, body):
                self.delivered += 1
            else:
                self.failed += 1

    def _deliver(self, target: WebhookTarget, body: bytes) -> bool:
        # Not urllib3's `Retry`: it sleeps inside `request()` (time.sleep), so a shutdown would wait out
        # a backoff of up to backoff_max (60 s) on the one thread that serves every target, where this
        # loop waits on the stop event; and its backoff is exponential plus a bounded jitter, not full
        # jitter. urllib3 still pools the connections (`retries=False` on the PoolManager).
        import urllib3

        headers = {"Content-Type": "application/json", "User-Agent": "plate-bridge"}
        headers.update({name: value.get_secret_value() for name, value in target.headers.items()})
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._http.request("POST", target.url, body=body, headers=headers)
            except urllib3.exceptions.HTTPError as exc:
                problem = f"no answer ({type(exc).__name__})"
            else:
                if response.status < 300:
                    return True
                problem = f"answered {response.status}"
                if response.status != 429 and response.status < 500:
                    log.warning("webhooks: %s %s; not retried", shown_url(target.url), problem)
                    return False
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = float(retry_after)
            if attempt >= self.settings.retries:
                log.warning(
                    "webhooks: %s %s; gave up after %d attempt(s)",
                    shown_url(target.url),
                    problem,
                    attempt + 1,
                )
                return False
            ceiling = min(self.settings.backoff_max, self.settings.backoff_initial * 2**attempt)
            wait = min(self.settings.backoff_max, wait) if wait is not None else random.uniform(0, ceiling)
            attempt += 1
            log.info("webhooks: %s %s; retry %d in %.1f s", shown_url(target.url), problem, attempt, wait)
            if self._stopping.wait(wait):
                return False

"""Plate Recognizer client (cloud and on-premise SDK) over HTTP; it knows nothing of MQTT."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.core import schemas
from bridge.core.cloud import CLOUD_STATISTICS_URL, CLOUD_URL, is_cloud_url
from bridge.core.errors import (
    ReaderError,
    ReaderForbidden,
    ReaderInvalidResponse,
    ReaderPayloadTooLarge,
    ReaderRateLimited,
    ReaderRejected,
    ReaderUnavailable,
    SchemaViolation,
    redact,
)
from bridge.core.events import decode_json
from bridge.core.redact import redacted, shown_url
from bridge.core.regions import normalize_regions
from bridge.imaging.images import CONTENT_TYPES, sniff_format
from bridge.reader.transport import Failure, HttpResponse, TransportError, TransportName, make_transport

USER_AGENT = "plate-bridge"

log = logging.getLogger(__name__)

# "Request was throttled. Expected available in 1 second." (the 429 body the service sends)
_EXPECTED_AVAILABLE = re.compile(r"available in (\d+(?:\.\d+)?) second", re.IGNORECASE)


def api_timestamp(moment: datetime | str) -> str:
    """The `timestamp` parameter: ISO 8601 in UTC (naive datetimes are taken as UTC)."""
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat rather than strftime: a third of the time, on every call.
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_retry_after(headers: Mapping[str, str], detail: str | None) -> float | None:
    """Seconds to wait after a 429: the Retry-After header (seconds or HTTP date), else the body text."""
    header = next((value for name, value in headers.items() if name.lower() == "retry-after"), None)
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    if detail:
        found = _EXPECTED_AVAILABLE.search(detail)
        if found:
            return float(found.group(1))
    return None


def _sibling_url(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _detail(response: HttpResponse) -> str | None:
    """The `detail` of an error body, or a short excerpt of a non-JSON body (never the request)."""
    try:
        body = json.loads(response.body)
    except ValueError:
        text = response.body.decode("utf-8", "replace").strip().replace("\n", " ")
        return text[:200] or None
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        # DRF field errors, e.g. {"upload": ["No file was submitted."]}
        return "; ".join(f"{key}: {value}" for key, value in body.items())[:200]
    return str(body)[:200]


def _quote(value: str) -> str:
    """A form-data parameter value: quotes and line breaks escaped as browsers do (WHATWG HTML)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


# Boundaries: a random prefix per process and a counter, rather than 16 fresh random bytes (a
# getrandom system call) per frame. A boundary must not occur in any part: with 64 random bits that
# no camera ever sees, it practically never does, so parts are not scanned for it (as browsers do not;
# the scan was 9 of the 13 µs this function took per frame).
_BOUNDARY_PREFIX = secrets.token_hex(8)
_boundary_numbers = itertools.count()


def _new_boundary() -> str:
    return f"{_BOUNDARY_PREFIX}{next(_boundary_numbers):016x}"


def encode_multipart(
    fields: Iterable[tuple[str, str]], upload: tuple[str, bytes, str] | str
) -> tuple[bytes, str]:
    """A multipart/form-data body: the text `fields`, then `upload` as a file part (name, bytes,
    content type) or as a text part (base64). Returns the body and its Content-Type.

    Built by hand with one join: requests' encoder costs about 0.3 ms per frame more (benchmarks/).
    """
    image = upload[1] if isinstance(upload, tuple) else upload.encode("ascii")
    boundary = _new_boundary()
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    if isinstance(upload, tuple):
        filename, _, content_type = upload
        disposition = f'form-data; name="upload"; filename="{_quote(filename)}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
        parts.append(head.encode())
    else:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="upload"\r\n\r\n'.encode())
    parts.append(image)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class PlateReader:
    """Reads plates through `POST /v1/plate-reader/` (cloud) or an SDK URL over keep-alive connections.

    Every failure is raised as a `ReaderError` subclass with a stable `code`; the token is sent only
    in the Authorization header and never appears in an error, log line or repr.

    The multipart body is built by hand and sent by `bridge.reader.transport`: libcurl when pycurl is
    installed (the `fast` extra), else urllib3. requests spent ~0.6 ms of CPU per call on environment
    look-ups and re-encoding that a bridge making hundreds of calls a second to one URL does not need
    (measured in benchmarks/); proxies from the environment are still honoured, read once.
    """

    def __init__(
        self,
        url: str = CLOUD_URL,
        *,
        token: str | None = None,
        timeout: float = 15.0,
        upload_base64: bool = False,
        validate: bool = True,
        transport: TransportName = "auto",
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.upload_base64 = upload_base64
        self.validate = validate
        self._token = token
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self._transport = make_transport(url, timeout, transport)

    @property
    def transport(self) -> str:
        """The HTTP transport in use: "curl" or "urllib3"."""
        return self._transport.name

    def __repr__(self) -> str:
        return f"PlateReader(url={shown_url(self.url)!r}, token={'***' if self._token else None})"

    @property
    def is_cloud(self) -> bool:
        return is_cloud_url(self.url)

    @property
    def kind(self) -> str:
        """`cloud` or `sdk`: what events say answered (`reader`)."""
        return "cloud" if self.is_cloud else "sdk"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> PlateReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read(
        self,
        image: bytes | str,
        *,
        regions: Iterable[str] = (),
        camera_id: str | None = None,
        timestamp: datetime | str | None = None,
        mmc: bool | None = None,
        config: Mapping[str, Any] | None = None,
        filename: str = "image.jpg",
    ) -> dict[str, Any]:
        """Read the plates of one image (bytes, or base64 text sent as is); return the response body."""
        fields: list[tuple[str, str]] = [("regions", code) for code in normalize_regions(list(regions))]
        if camera_id is not None:
            fields.append(("camera_id", camera_id))
        if timestamp is not None:
            fields.append(("timestamp", api_timestamp(timestamp)))
        if mmc is not None:
            fields.append(("mmc", "true" if mmc else "false"))
        if config:
            fields.append(("config", json.dumps(dict(config), separators=(",", ":"))))
        upload: tuple[str, bytes, str] | str
        if isinstance(image, str):
            upload = image
        elif self.upload_base64:
            upload = base64.b64encode(image).decode("ascii")
        else:
            upload = (
                filename,
                image,
                CONTENT_TYPES.get(sniff_format(image) or "", "application/octet-stream"),
            )
        body, content_type = encode_multipart(fields, upload)
        response = self._request("POST", self.url, body=body, content_type=content_type)
        document = self._json(response)
        if self.validate:
            self._check_schema("plate-reader-response", document)
        return document

    def statistics(self) -> dict[str, Any]:
        """`GET /v1/statistics/` (cloud): the calls used this month and the plan's total."""
        url = CLOUD_STATISTICS_URL if self.is_cloud else _sibling_url(self.url, "/v1/statistics/")
        body = self._json(self._request("GET", url))
        self._check_schema("statistics", body)
        return body

    def info(self) -> dict[str, Any]:
        """`GET /info/` (on-premise SDK): version, license and usage."""
        body = self._json(self._request("GET", _sibling_url(self.url, "/info/")))
        self._check_schema("sdk-info", body)
        return body

    def _request(
        self, method: str, url: str, *, body: bytes | None = None, content_type: str | None = None
    ) -> HttpResponse:
        """Send one request; translate every transport failure into a ReaderError here only."""
        # Where, as errors (and the error events they become) may show it: never user info, path or query.
        where = shown_url(url)
        headers = self._headers if content_type is None else {**self._headers, "Content-Type": content_type}
        try:
            response = self._transport.request(method, url, headers, body)
        except TransportError as exc:
            if exc.failure is Failure.TIMEOUT:
                message = f"no answer from {where} within {self.timeout:g} s"
            elif exc.failure is Failure.UNREACHABLE:
                message = f"cannot reach {where}: {exc.reason}"
            elif exc.failure is Failure.TLS:
                message = f"TLS with {where} failed: {exc.reason}"
            else:
                message = f"the connection to {where} failed: {exc.reason}"
            message = redacted(message)  # a transport's reason may quote the whole URL
            if exc.sent and method == "POST":
                # The service may have read this frame and billed it: whether to send it again is
                # the guard's decision (reader.retry_ambiguous), so the error says so.
                raise ReaderUnavailable(
                    redact(message, [self._token]) + " after the request was sent",
                    url=where,
                    ambiguous=True,
                    cloud=self.is_cloud,
                ) from None
            raise ReaderUnavailable(redact(message, [self._token]), url=where) from None
        if response.status >= 400:
            raise self._status_error(response, where)
        return response

    def _status_error(self, response: HttpResponse, where: str) -> ReaderError:
        status = response.status
        detail = _detail(response)
        if detail:
            # A service (or a proxy) that echoes the request must not put the token into our errors.
            detail = redact(detail, [self._token])
        said = f" ({detail})" if detail else ""
        if status == 403:
            return ReaderForbidden(
                f"403: the token was refused or the account has no credits left{said}", status_code=403
            )
        if status == 413:
            return ReaderPayloadTooLarge(
                f"413: the image is too large for the service{said}", status_code=413
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers, detail)
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return ReaderRateLimited(
                f"429: rate limited by the service{wait}{said}", status_code=429, retry_after=retry_after
            )
        if status >= 500:
            return ReaderUnavailable(f"{status}: the service failed at {where}{said}", status_code=status)
        return ReaderRejected(f"{status}: the service rejected the request{said}", status_code=status)

    @staticmethod
    def _json(response: HttpResponse) -> dict[str, Any]:
        try:
            body = decode_json(response.body)
        except ValueError:
            raise ReaderInvalidResponse(
                f"{response.status}: the service answered with a body that is not JSON",
                status_code=response.status,
            ) from None
        if not isinstance(body, dict):
            raise ReaderInvalidResponse(
                f"the service answered with a JSON {type(body).__name__}, not an object",
                status_code=response.status,
            )
        return body

    @staticmethod
    def _check_schema(name: str, body: Any) -> None:
        try:
            schemas.validate(name, body)
        except SchemaViolation as exc:
            raise ReaderInvalidResponse(
                f"the service's answer does not match {name}: {exc.problems[0] if exc.problems else exc}",
                schema=name,
            ) from exc

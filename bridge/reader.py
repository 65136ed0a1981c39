"""Plate Recognizer client (cloud and on-premise SDK) over requests; it knows nothing of MQTT."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from bridge import schemas
from bridge.errors import (
    ReaderError,
    ReaderForbidden,
    ReaderInvalidResponse,
    ReaderPayloadTooLarge,
    ReaderRateLimited,
    ReaderRejected,
    ReaderUnavailable,
    SchemaViolation,
)
from bridge.images import CONTENT_TYPES, sniff_format
from bridge.regions import normalize_regions

CLOUD_URL = "https://api.platerecognizer.com/v1/plate-reader/"
CLOUD_STATISTICS_URL = "https://api.platerecognizer.com/v1/statistics/"
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
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_retry_after(headers: Mapping[str, str], detail: str | None) -> float | None:
    """Seconds to wait after a 429: the Retry-After header (seconds or HTTP date), else the body text."""
    header = headers.get("Retry-After")
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


def _detail(response: requests.Response) -> str | None:
    """The `detail` of an error body, or a short excerpt of a non-JSON body (never the request)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return text[:200] or None
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        # DRF field errors, e.g. {"upload": ["No file was submitted."]}
        return "; ".join(f"{key}: {value}" for key, value in body.items())[:200]
    return str(body)[:200]


class PlateReader:
    """Reads plates through `POST /v1/plate-reader/` (cloud) or an SDK URL, one keep-alive session.

    Every failure is raised as a `ReaderError` subclass with a stable `code`; the token is sent only
    in the Authorization header and never appears in an error, log line or repr.
    """

    def __init__(
        self,
        url: str = CLOUD_URL,
        *,
        token: str | None = None,
        timeout: float = 15.0,
        upload_base64: bool = False,
        validate: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.upload_base64 = upload_base64
        self.validate = validate
        self._token = token
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        if token:
            self._session.headers["Authorization"] = f"Token {token}"

    def __repr__(self) -> str:
        return f"PlateReader(url={self.url!r}, token={'***' if self._token else None})"

    @property
    def is_cloud(self) -> bool:
        return urlsplit(self.url).hostname == "api.platerecognizer.com"

    def close(self) -> None:
        self._session.close()

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
        data: list[tuple[str, str]] = [("regions", code) for code in normalize_regions(list(regions))]
        if camera_id is not None:
            data.append(("camera_id", camera_id))
        if timestamp is not None:
            data.append(("timestamp", api_timestamp(timestamp)))
        if mmc is not None:
            data.append(("mmc", "true" if mmc else "false"))
        if config:
            data.append(("config", json.dumps(dict(config), separators=(",", ":"))))
        if isinstance(image, str) or self.upload_base64:
            text = image if isinstance(image, str) else base64.b64encode(image).decode("ascii")
            # base64 `upload` goes as a multipart text part (no filename), so the request has the same
            # shape as a file upload and the base64 text is not percent-encoded as in a urlencoded form.
            upload: tuple[str | None, str | bytes, str | None] = (None, text, None)
        else:
            content_type = CONTENT_TYPES.get(sniff_format(image) or "", "application/octet-stream")
            upload = (filename, image, content_type)
        response = self._post(data=data, files={"upload": upload})
        body = self._json(response)
        if self.validate:
            self._check_schema("plate-reader-response", body)
        return body

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

    def _post(self, **kwargs: Any) -> requests.Response:
        return self._request("POST", self.url, **kwargs)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request; translate every requests/transport failure into a ReaderError here only."""
        where = _sibling_url(url, urlsplit(url).path)
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise ReaderUnavailable(f"no answer from {where} within {self.timeout:g} s", url=where) from exc
        except requests.ConnectionError as exc:
            raise ReaderUnavailable(
                f"cannot reach {where}: {type(exc).__name__}: {_root_cause(exc)}", url=where
            ) from exc
        except requests.RequestException as exc:
            raise ReaderError(f"request to {where} failed: {type(exc).__name__}", url=where) from exc
        if response.status_code >= 400:
            raise self._status_error(response, where)
        return response

    def _status_error(self, response: requests.Response, where: str) -> ReaderError:
        status = response.status_code
        detail = _detail(response)
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
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ReaderInvalidResponse(
                f"{response.status_code}: the service answered with a body that is not JSON",
                status_code=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise ReaderInvalidResponse(
                f"the service answered with a JSON {type(body).__name__}, not an object",
                status_code=response.status_code,
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


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's class name: short, and free of URLs or headers."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text += f" ({exc.strerror})"
    return text

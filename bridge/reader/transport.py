"""HTTP transports for the reader client: libcurl (pycurl) when installed, urllib3 otherwise.

The reader makes one small request per frame to one URL, hundreds of times a second. With urllib3,
http.client's pure-Python request writing and header parsing (email.feedparser) and several GIL
hand-offs per call cost ~280 µs of CPU per call; libcurl does the whole exchange in C with the GIL
released once, for ~90 µs (measured in benchmarks/README.md). pycurl has wheels for Linux glibc
(x86-64, ARM64), macOS and Windows, but none for musl (Alpine) or 32-bit ARM, so it is the `fast`
extra, the way uvicorn[standard] adds its C parsers; without it the reader falls back to urllib3.

Both transports answer the same way: an `HttpResponse` for any status, or a `TransportError` saying
what went wrong with the connection — in words that never contain a header (the token is one).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

log = logging.getLogger(__name__)

TransportName = Literal["auto", "curl", "urllib3"]


class Failure(Enum):
    """What went wrong below HTTP; the reader turns each into a ReaderUnavailable."""

    UNREACHABLE = "cannot reach"  # refused, unresolvable, no route
    TIMEOUT = "no answer"  # nothing (or not all) came back in time
    DROPPED = "connection dropped"  # closed or reset mid-exchange, or not HTTP
    TLS = "TLS failed"  # handshake or certificate verification


class TransportError(Exception):
    """`sent`: the whole request went out before it failed, so the server may have acted on it (and,
    for a paid API, billed it) even though no answer came back: a timeout waiting for the answer, a
    connection closed or reset after the body was sent. False when it surely did not go out
    (refused, unresolvable, connect timeout, TLS handshake)."""

    def __init__(self, failure: Failure, reason: str, *, sent: bool = False) -> None:
        super().__init__(f"{failure.value}: {reason}")
        self.failure = failure
        self.reason = reason
        self.sent = sent


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    # Names in lower case. libcurl's transport gives only `retry-after` (when the server sent one):
    # it is all the reader reads, and collecting the rest costs a Python call per header line.
    headers: Mapping[str, str]


class Transport(Protocol):
    name: str

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> HttpResponse: ...

    def close(self) -> None: ...


def _proxy_for(url: str) -> str | None:
    """The proxy from HTTPS_PROXY/HTTP_PROXY/NO_PROXY (as urllib reads them) for `url`, read once."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if proxy and not proxy_bypass(parts.hostname or ""):
        return proxy
    return None


def make_transport(url: str, timeout: float, choice: TransportName = "auto") -> Transport:
    """The transport for `url`: libcurl when pycurl is installed (or asked for), else urllib3."""
    if choice in ("auto", "curl"):
        try:
            return CurlTransport(url, timeout)
        except ImportError:
            if choice == "curl":
                raise ImportError(
                    "reader.transport 'curl' needs pycurl: pip install 'plate-bridge[fast]'"
                ) from None
            log.info("pycurl is not installed: the reader uses urllib3 (pip install 'plate-bridge[fast]')")
    return Urllib3Transport(url, timeout)


# --- libcurl ---------------------------------------------------------------------------------------

# libcurl's error numbers (curl/curl.h), grouped by what the user can do about them.
_CURL_FAILURES: dict[int, Failure] = {
    5: Failure.UNREACHABLE,  # couldn't resolve proxy
    6: Failure.UNREACHABLE,  # couldn't resolve host
    7: Failure.UNREACHABLE,  # couldn't connect
    28: Failure.TIMEOUT,  # operation timed out
    35: Failure.TLS,  # SSL connect error
    51: Failure.TLS,  # peer certificate or fingerprint not OK (older libcurl)
    53: Failure.TLS,  # SSL crypto engine not found
    58: Failure.TLS,  # problem with the local client certificate
    59: Failure.TLS,  # couldn't use the specified cipher
    60: Failure.TLS,  # peer certificate cannot be authenticated with known CA certificates
    77: Failure.TLS,  # problem with reading the CA cert
    80: Failure.TLS,  # failed to shut down the SSL connection
    83: Failure.TLS,  # issuer check failed
    90: Failure.TLS,  # pinned public key mismatch
    91: Failure.TLS,  # invalid certificate status
}
_CURL_REASONS: dict[int, str] = {
    65: "the connection closed after the request was sent, before any answer (not re-sent)",
}


def _trust_store() -> tuple[str | None, str | None]:
    """The CA file and folder Python's ssl module trusts (SSL_CERT_FILE/SSL_CERT_DIR included), so
    both transports verify servers against the same certificates, not against a path compiled into
    the pycurl wheel's own libcurl."""
    paths = ssl.get_default_verify_paths()
    cafile = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
    capath = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
    return cafile, capath


UPLOAD_BUFFER_BYTES = 512 * 1024


class _BodyReader:
    """A request body for libcurl's read callback, handed over whole when it fits the upload buffer
    (no copy, unlike BytesIO.read), else in slices; it cannot rewind, on purpose (see request()).
    Once all is handed over it lets go of the body: the idle handle keeps this reader until its next
    request, and should not keep a frame of up to several MB alive with it."""

    __slots__ = ("_body", "_offset", "sent")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._offset = 0
        self.sent = not body  # the whole body was handed to libcurl (so it may have reached the server)

    def read(self, size: int) -> bytes:
        body, offset = self._body, self._offset
        chunk = body[offset : offset + size]  # the body itself, not a copy, when it fits whole
        self._offset = offset + len(chunk)
        if self._offset >= len(body):
            self._body = b""
            self._offset = 0
            self.sent = True
        return chunk


class CurlTransport:
    """libcurl easy handles, one per concurrent caller, each keeping its connection alive.

    An easy handle may be used by one thread at a time; the idle ones wait in a deque (whose append
    and pop are atomic), so a worker takes one, uses it, and gives it back — with a steady pool of
    workers each ends up with a warm connection of its own.
    """

    name = "curl"

    def __init__(self, url: str, timeout: float) -> None:
        import pycurl

        self._pycurl = pycurl
        self.timeout = timeout
        self._proxy = _proxy_for(url)
        self._cafile, self._capath = _trust_store()
        self._idle: deque[Any] = deque()
        self._closed = False

    def _new_handle(self) -> Any:
        pycurl = self._pycurl
        log.debug("new libcurl handle (the others are busy)")
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.TIMEOUT_MS, max(1, round(self.timeout * 1000)))
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, round(self.timeout * 1000)))
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        # Room for a whole frame, so the body's read callback runs once per request: each Python
        # callback inside perform() takes the GIL back from the other workers.
        curl.setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_BYTES)
        # The proxy decided as urllib decides it; "" turns off libcurl's own reading of the environment.
        curl.setopt(pycurl.PROXY, self._proxy or "")
        if self._cafile:
            curl.setopt(pycurl.CAINFO, self._cafile)
        if self._capath:
            curl.setopt(pycurl.CAPATH, self._capath)
        return curl

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> HttpResponse:
        pycurl = self._pycurl
        try:
            curl = self._idle.pop()
        except IndexError:
            curl = self._new_handle()
        chunks: list[bytes] = []
        body_reader: _BodyReader | None = None
        # "Expect:" (empty) keeps libcurl from waiting for a "100 Continue" before large bodies.
        lines = [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Expect:")
        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.HTTPHEADER, lines)
            if method == "POST":
                # The body through a read callback with no way to rewind it, not POSTFIELDS: libcurl
                # silently re-sends a request whose reused connection closed before any answer, which
                # would bypass the rate limit and may bill a frame twice. Unable to rewind, it fails
                # instead (error 65), and the reader's guard decides, as with urllib3.
                # A connection found closed before sending is still replaced without a word.
                payload = body or b""
                body_reader = _BodyReader(payload)
                curl.setopt(pycurl.POST, 1)
                curl.setopt(pycurl.POSTFIELDSIZE_LARGE, len(payload))
                curl.setopt(pycurl.READFUNCTION, body_reader.read)
            else:
                curl.setopt(pycurl.HTTPGET, 1)
            curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
            curl.perform()
            status = curl.getinfo(pycurl.RESPONSE_CODE)
            # No header callback (one GIL round trip per header line): the only header the reader
            # reads is Retry-After, which libcurl parses (seconds or an HTTP date; 0 when absent).
            retry_after = curl.getinfo(pycurl.RETRY_AFTER) if status >= 400 else 0
        except pycurl.error as exc:
            # The handle may hold a broken connection: drop it rather than give it back.
            curl.close()
            number, text = exc.args if len(exc.args) == 2 else (0, str(exc))
            failure = _CURL_FAILURES.get(number, Failure.DROPPED)
            reason = _CURL_REASONS.get(number, text)
            # The host only: neither the path's query nor any header (the token) goes to the log.
            log.debug("%s to %s failed: libcurl error %s: %s", method, urlsplit(url).hostname, number, text)
            # Sent: libcurl took the whole body (a GET has none) and the failure is not one of
            # connecting; a timeout or a drop after that leaves the server's side unknown.
            sent = (body_reader is None or body_reader.sent) and failure in (Failure.TIMEOUT, Failure.DROPPED)
            raise TransportError(failure, f"{reason} (libcurl error {number})", sent=sent) from None
        # The handle keeps this call's callbacks until its next call replaces them: the answer's chunks
        # (~1 kB) and a body reader that has let go of the body.
        if self._closed:
            curl.close()
        else:
            self._idle.append(curl)
        answer_headers = {"retry-after": str(retry_after)} if retry_after > 0 else {}
        return HttpResponse(status, b"".join(chunks), answer_headers)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


# --- urllib3 ---------------------------------------------------------------------------------------


class Urllib3Transport:
    """urllib3 (the library under requests) with its pool of keep-alive connections."""

    name = "urllib3"

    def __init__(self, url: str, timeout: float) -> None:
        import urllib3

        self._urllib3 = urllib3
        self.timeout = timeout
        proxy = _proxy_for(url)
        self._pool = (
            urllib3.ProxyManager(proxy, num_pools=2, maxsize=64)
            if proxy
            else urllib3.PoolManager(num_pools=2, maxsize=64)
        )
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> HttpResponse:
        exceptions = self._urllib3.exceptions
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        # Most specific first: urllib3's NewConnectionError is also a ConnectTimeoutError.
        # urllib3 does not say how much of the body went out before a drop or a read timeout: those
        # count as sent (the server may have acted on the request), only connecting as not.
        except exceptions.NewConnectionError as exc:
            raise TransportError(Failure.UNREACHABLE, _root_cause(exc)) from None
        except exceptions.ConnectTimeoutError:
            raise TransportError(Failure.TIMEOUT, f"no connection within {self.timeout:g} s") from None
        except exceptions.SSLError as exc:
            raise TransportError(Failure.TLS, _root_cause(exc)) from None
        except exceptions.ProtocolError as exc:
            raise TransportError(Failure.DROPPED, _root_cause(exc), sent=True) from None
        except exceptions.TimeoutError:
            raise TransportError(Failure.TIMEOUT, f"nothing within {self.timeout:g} s", sent=True) from None
        except (OSError, exceptions.HTTPError) as exc:
            raise TransportError(Failure.DROPPED, _root_cause(exc), sent=True) from None
        return HttpResponse(
            response.status, response.data, {name.lower(): value for name, value in response.headers.items()}
        )

    def close(self) -> None:
        self._pool.clear()


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's class name (and errno text): short, and free of URLs or headers."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text += f" ({exc.strerror})"
    return text


__all__ = [
    "CurlTransport",
    "Failure",
    "HttpResponse",
    "Transport",
    "TransportError",
    "TransportName",
    "Urllib3Transport",
    "make_transport",
]

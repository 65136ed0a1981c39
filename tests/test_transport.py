"""Both HTTP transports over real sockets on 127.0.0.1: keep-alive, closed and dropped connections,
TLS verification, proxies, and the fallback when pycurl is missing."""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from bridge.config import load_config
from bridge.core.errors import ConfigError, ReaderUnavailable
from bridge.reader import PlateReader
from bridge.reader.transport import Failure, TransportError, make_transport
from bridge.readers import build_reader
from tests.emulator import ReaderEmulator
from tests.images import jpeg

TRANSPORTS = ["curl", "urllib3"]


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with `{"ok": true}` and records its request line and Host header.

    `close_after_answer`: close the connection after each answer *without* saying so (no
    `Connection: close`), as a server whose keep-alive timeout expires does.
    """

    protocol_version = "HTTP/1.1"
    close_after_answer = False
    seen: ClassVar[list[tuple[str, str, str]]] = []
    bodies: ClassVar[list[bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length) if length else b"")
        self.seen.append((self.command, self.path, self.headers.get("Host", "")))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.close_after_answer:
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[ThreadingHTTPServer, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer, scheme: str = "http", path: str = "/v1/plate-reader/") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}{path}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_answers_any_status_with_lower_case_headers(emulator: ReaderEmulator, transport: str) -> None:
    emulator.fail_next(429, retry_after=4)
    http = make_transport(emulator.url, 5, transport)  # type: ignore[arg-type]
    try:
        answer = http.request("POST", emulator.url, {"Content-Type": "text/plain"}, b"x")
    finally:
        http.close()
    assert http.name == transport
    assert answer.status == 429
    assert answer.headers["retry-after"] == "4"
    assert json.loads(answer.body)["detail"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("size", [0, 1, 90_000, 3 * 1024 * 1024 + 7])
def test_bodies_arrive_whole_at_any_size(
    recorder: tuple[ThreadingHTTPServer, type[_Recorder]], transport: str, size: int
) -> None:
    # libcurl takes the body through a read callback, whole when it fits its 512 kB upload buffer
    # and in slices when it does not.
    server, handler = recorder
    body = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    http = make_transport(_url(server), 10, transport)  # type: ignore[arg-type]
    try:
        assert (
            http.request("POST", _url(server), {"Content-Type": "application/octet-stream"}, body).status
            == 200
        )
    finally:
        http.close()
    assert handler.bodies == [body]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_idle_connection_keeps_no_frame_alive(
    recorder: tuple[ThreadingHTTPServer, type[_Recorder]], transport: str
) -> None:
    # Eight idle workers' handles each holding their last frame would be 8 frames of memory for nothing.
    server, _ = recorder
    body = bytes(200_000)
    before = sys.getrefcount(body)
    http = make_transport(_url(server), 5, transport)  # type: ignore[arg-type]
    try:
        assert http.request("POST", _url(server), {}, body).status == 200
        assert sys.getrefcount(body) == before
    finally:
        http.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_request_dropped_unanswered_is_reported_not_re_sent(
    emulator: ReaderEmulator, transport: str
) -> None:
    # libcurl re-sends on its own a request whose reused connection closes before any answer; for a
    # paid, rate-limited API that is a second call the rate limit never saw.
    with PlateReader(emulator.url, transport=transport) as reader:  # type: ignore[arg-type]
        for _ in range(3):
            reader.read(jpeg())  # a warm, reused connection
        emulator.drop_next()
        with pytest.raises(ReaderUnavailable) as caught:
            reader.read(jpeg())
        assert len(emulator.requests) == 4, "the dropped request reached the service once"
        assert "failed" in str(caught.value)
        reader.read(jpeg())  # and the next one goes out on a new connection
    assert len(emulator.requests) == 5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_closed_while_idle_is_replaced_without_an_error(
    recorder: tuple[ThreadingHTTPServer, type[_Recorder]], transport: str
) -> None:
    server, handler = recorder
    handler.close_after_answer = True
    http = make_transport(_url(server), 5, transport)  # type: ignore[arg-type]
    try:
        first = http.request("POST", _url(server), {}, b"frame").status
        # Idle for over a second: libcurl checks whether a pooled connection is still alive only
        # once it has been idle that long (a server closing faster is met as a dropped request).
        time.sleep(1.1)
        second = http.request("POST", _url(server), {}, b"frame").status
    finally:
        http.close()
    assert (first, second) == (200, 200)
    assert len(handler.seen) == 2


@pytest.fixture
def tls_server(
    recorder: tuple[ThreadingHTTPServer, type[_Recorder]], tmp_path: Any
) -> tuple[ThreadingHTTPServer, str]:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")
    authority = trustme.CA()
    server, _ = recorder
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tls_verifies_the_server_against_the_trust_store(
    tls_server: tuple[ThreadingHTTPServer, str], transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_file = tls_server
    url = _url(server, "https")
    untrusting = make_transport(url, 5, transport)  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        untrusting.request("GET", url, {})
    untrusting.close()
    assert caught.value.failure is Failure.TLS
    # SSL_CERT_FILE is how a user adds a private CA, for Python's ssl and so for both transports.
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    trusting = make_transport(url, 5, transport)  # type: ignore[arg-type]
    try:
        assert trusting.request("GET", url, {}).status == 200
    finally:
        trusting.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_reader_names_a_tls_failure(tls_server: tuple[ThreadingHTTPServer, str], transport: str) -> None:
    server, _ = tls_server
    reader = PlateReader(_url(server, "https"), token="t0k3n", transport=transport)  # type: ignore[arg-type]
    with reader, pytest.raises(ReaderUnavailable, match=r"TLS with https://127\.0\.0\.1") as caught:
        reader.read(jpeg())
    assert "t0k3n" not in str(caught.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_proxies_from_the_environment_are_used_and_bypassed(
    recorder: tuple[ThreadingHTTPServer, type[_Recorder]], transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, handler = recorder
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    far = "http://reader.invalid:8080/v1/plate-reader/"
    http = make_transport(far, 5, transport)  # type: ignore[arg-type]
    try:
        assert http.request("POST", far, {}, b"frame").status == 200
    finally:
        http.close()
    # An HTTP proxy gets the absolute URL, and the host the request is really for.
    assert handler.seen == [("POST", far, "reader.invalid:8080")]

    monkeypatch.setenv("NO_PROXY", "reader.invalid")
    monkeypatch.setenv("no_proxy", "reader.invalid")
    bypassing = make_transport(far, 1, transport)  # type: ignore[arg-type]
    try:
        with pytest.raises(TransportError) as caught:
            bypassing.request("POST", far, {}, b"frame")  # straight to a host that does not resolve
    finally:
        bypassing.close()
    assert caught.value.failure in (Failure.UNREACHABLE, Failure.TIMEOUT)
    assert len(handler.seen) == 1


def test_without_pycurl_auto_falls_back_and_curl_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pycurl", None)  # what `import pycurl` meets when it is not installed
    with caplog.at_level(logging.INFO, logger="bridge.reader.transport"):
        assert make_transport("http://127.0.0.1:9/", 5, "auto").name == "urllib3"
    assert "plate-bridge[fast]" in caplog.text
    with pytest.raises(ImportError, match=r"pip install 'plate-bridge\[fast\]'"):
        make_transport("http://127.0.0.1:9/", 5, "curl")
    config = load_config(reader={"url": "http://127.0.0.1:9/v1/plate-reader/", "transport": "curl"})
    with pytest.raises(ConfigError, match="needs pycurl"):
        build_reader(config.reader)

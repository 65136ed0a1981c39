"""HTTPListener, the HTTP lifecycle metrics and the webhook receiver share, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.core.errors import ConfigError
from bridge.extensions.httpserver import HTTPListener, ListenerRequestHandler

LIMIT = 2
DEADLINE = 1.0


class _Hello(ListenerRequestHandler):
    """Answers every GET with `hello`."""

    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def listener(port: int = 0, section: str = "test") -> HTTPListener:
    return HTTPListener(
        section,
        "127.0.0.1",
        port,
        _Hello,
        thread_name="test-http",
        max_concurrent=LIMIT,
        deadline=DEADLINE,
    )


def trickle(port: int, head: bytes, *, every: float, give_up: float) -> float | None:
    """Send `head`, then one more byte of a header line every `every` s (a slowloris); the seconds
    until the server closed the connection, or None when it still listened after `give_up` s."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        sock.settimeout(every)  # how long each recv waits for the close: the pace of the trickle
        while time.monotonic() - started < give_up:
            try:
                sock.sendall(b"a")
                if sock.recv(4096) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue  # still open: the next byte
            except OSError:
                return time.monotonic() - started  # reset: closed too
    return None


@pytest.fixture
def started() -> Iterator[HTTPListener]:
    running = listener()
    running.start()
    yield running
    running.stop()


def test_port_0_reports_the_port_the_system_chose_and_serves_there(started: HTTPListener) -> None:
    assert started.port != 0
    answer = requests.get(f"http://127.0.0.1:{started.port}/", timeout=5)
    assert (answer.status_code, answer.text) == (200, "hello")
    assert any(thread.name == "test-http" for thread in threading.enumerate())


def test_a_taken_port_is_a_config_error_naming_the_setting(started: HTTPListener) -> None:
    second = listener(started.port, section="webhooks.listen")
    with pytest.raises(ConfigError, match=f"webhooks.listen: cannot listen on 127.0.0.1:{started.port}: "):
        second.start()
    second.stop()  # the bridge stops every extension after a failed start


def test_stop_releases_the_port_and_ends_the_thread() -> None:
    first = listener()
    first.start()
    port = first.port
    first.stop()
    assert not any(thread.name == "test-http" for thread in threading.enumerate())
    again = listener(port)
    again.start()  # would be a ConfigError had the socket stayed open
    again.stop()


def test_stop_without_start_is_harmless_and_port_says_why() -> None:
    idle = listener()
    idle.stop()
    with pytest.raises(RuntimeError, match="test: the HTTP server is not started"):
        _ = idle.port


def test_a_client_trickling_its_request_line_is_closed_at_the_deadline(started: HTTPListener) -> None:
    # Each byte arrives well within any per-recv timeout; only a deadline on the whole request ends it.
    closed_after = trickle(started.port, b"GET / HTTP/1.1\r\nX-Slow: ", every=0.2, give_up=DEADLINE + 4)
    assert closed_after is not None, "the trickling client was never cut off"
    assert DEADLINE * 0.9 <= closed_after <= DEADLINE + 1.5


def test_a_client_trickling_its_body_is_closed_at_the_deadline() -> None:
    class _Reads(ListenerRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

    running = HTTPListener(
        "test", "127.0.0.1", 0, _Reads, thread_name="test-http", max_concurrent=LIMIT, deadline=DEADLINE
    )
    running.start()
    try:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        closed_after = trickle(running.port, head, every=0.2, give_up=DEADLINE + 4)
    finally:
        running.stop()
    assert closed_after is not None and closed_after <= DEADLINE + 1.5


def test_connections_beyond_the_limit_are_answered_503_not_given_threads(started: HTTPListener) -> None:
    idle = [socket.create_connection(("127.0.0.1", started.port)) for _ in range(LIMIT)]
    try:
        # The idle ones hold every slot (they are served as soon as they are accepted) ...
        answer = requests.get(f"http://127.0.0.1:{started.port}/", timeout=5)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        serving = [thread for thread in threading.enumerate() if thread.name == "test-http-request"]
        assert len(serving) == LIMIT
    finally:
        for sock in idle:
            sock.close()
    # ... and their slots come back once they are gone.
    assert _get_eventually(f"http://127.0.0.1:{started.port}/") == 200


def _get_eventually(url: str, tries: int = 50) -> int:
    """The status of a GET once the server has released the slots of closed connections (each try
    waits for an answer, so this is bounded by the server, not by sleeps)."""
    status = 0
    for _ in range(tries):
        status = requests.get(url, timeout=5).status_code
        if status != 503:
            break
    return status

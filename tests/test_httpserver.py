"""HTTPListener, the HTTP lifecycle metrics and the webhook receiver share, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from bridge.errors import ConfigError
from bridge.extensions.httpserver import HTTPListener


class _Hello(BaseHTTPRequestHandler):
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
    return HTTPListener(section, "127.0.0.1", port, _Hello, thread_name="test-http")


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

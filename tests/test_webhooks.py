"""Webhooks over real HTTP on 127.0.0.1: Plate Recognizer's webhooks in, plate events out."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.core.redact import shown_url
from bridge.extensions import webhooks
from bridge.extensions.webhooks import CONCURRENT_REQUESTS, WebhookReceiver
from bridge.service import Bridge
from tests.conftest import RESPONSES, BrokerAddress, Collector, free_port, needs_shared, start_bridge
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.test_httpserver import trickle

WEBHOOK_ROUTE = {"topic": "plate-recognizer/webhook/+"}
TOKEN = "s3cret-webhook-token"


def webhook_body(camera_id: str | None = "gate") -> dict[str, Any]:
    """An `image.done` webhook as the API reference documents it (WebHooks, "Example of POST payload")."""
    return {
        "hook": {"target": "http://localhost:8081/", "id": 2, "event": "image.done"},
        "data": {
            "processing_time": 0.186,
            "timestamp": "2019-08-31T14:22:06.983Z",
            "results": [
                {
                    "box": {"xmin": 563, "ymin": 530, "ymax": 579, "xmax": 702},
                    "plate": "765410",
                    "score": 0.9131534678711563,
                    "dscore": 0.4084282568529709,
                }
            ],
            "filename": "14_22_test.jpeg",
            "version": 1,
            "camera_id": camera_id,
        },
    }


def receiver_url(bridge: Bridge, path: str = "/plate-recognizer") -> str:
    [receiver] = [e for e in bridge.extensions if isinstance(e, WebhookReceiver)]
    return f"http://127.0.0.1:{receiver.port}{path}"


@pytest.fixture
def receiving_bridge(broker: BrokerAddress, emulator: ReaderEmulator) -> Iterator[Bridge]:
    bridge = start_bridge(
        broker,
        emulator,
        routes=[WEBHOOK_ROUTE],
        webhooks={"listen": {"enabled": True, "port": free_port(), "token": TOKEN}},
    )
    yield bridge
    bridge.stop(deadline=5)


def test_a_json_webhook_becomes_a_plate_event_without_a_reader_call(
    broker: BrokerAddress, emulator: ReaderEmulator, receiving_bridge: Bridge, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    body = webhook_body()
    answer = requests.post(
        receiver_url(receiving_bridge), json=body, headers={"Authorization": f"Token {TOKEN}"}
    )
    assert answer.status_code == 200 and answer.json() == {"accepted": True}
    [event] = collector.wait_for("plate-bridge/gate/result")
    assert event["results"] == body["data"]["results"]
    assert event["timestamp"] == "2019-08-31T14:22:06.983Z"
    assert event["topic"] == "plate-recognizer/webhook/gate" and event["camera_id"] == "gate"
    assert "reading" not in event
    assert emulator.calls == 0  # the reading was already made: no reader call


def test_the_multipart_variant_carries_the_image_too(
    broker: BrokerAddress, emulator: ReaderEmulator, receiving_bridge: Bridge, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    body = webhook_body(camera_id=None)
    answer = requests.post(
        f"{receiver_url(receiving_bridge)}?token={TOKEN}",
        data={"json": json.dumps(body)},
        files={"upload": ("14_22_test.jpeg", jpeg(), "image/jpeg")},
    )
    assert answer.status_code == 200
    [event] = collector.wait_for("plate-bridge/webhook/result")  # no camera_id: "webhook"
    assert event["results"][0]["plate"] == "765410"
    assert emulator.calls == 0


def test_bad_webhooks_are_refused_with_the_reason_and_the_token_is_never_logged(
    receiving_bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver_url(receiving_bridge)
    auth = {"Authorization": f"Token {TOKEN}"}
    assert requests.post(url, json=webhook_body()).status_code == 403
    assert requests.post(f"{url}?token=wrong", json=webhook_body()).status_code == 403
    assert requests.post(url + "x", json=webhook_body(), headers=auth).status_code == 404
    not_json = requests.post(url, data=b"{", headers={**auth, "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
    no_hook = requests.post(url, json={"data": webhook_body()["data"]}, headers=auth)
    assert no_hook.status_code == 422
    assert any("hook" in problem for problem in no_hook.json()["problems"])
    bad_result = webhook_body()
    bad_result["data"]["results"][0]["score"] = "high"
    assert requests.post(url, json=bad_result, headers=auth).status_code == 422
    text = requests.post(url, data=b"plate 123", headers={**auth, "Content-Type": "text/plain"})
    assert text.status_code == 415
    no_json_field = requests.post(url, files={"upload": ("a.jpg", jpeg(), "image/jpeg")}, headers=auth)
    assert no_json_field.status_code == 400
    assert TOKEN not in caplog.text


def test_senders_beyond_the_concurrent_limit_are_told_to_come_back(receiving_bridge: Bridge) -> None:
    url = receiver_url(receiving_bridge)
    port = int(url.split(":")[2].split("/")[0])
    stalled = []
    try:
        # Senders that announce a body and never send it hold every slot ...
        for _ in range(CONCURRENT_REQUESTS):
            sender = socket.create_connection(("127.0.0.1", port))
            sender.sendall(
                f"POST /plate-recognizer?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
            )
            stalled.append(sender)
        # ... so the next one is answered 503 at once, its body not read into memory.
        busy = requests.post(
            url, json=webhook_body(), headers={"Authorization": f"Token {TOKEN}"}, timeout=10
        )
        assert busy.status_code == 503
    finally:
        for sender in stalled:
            sender.close()


def test_a_sender_trickling_its_body_is_cut_off_at_the_request_deadline(
    broker: BrokerAddress, emulator: ReaderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "REQUEST_TIMEOUT", 1.0)
    bridge = start_bridge(
        broker,
        emulator,
        routes=[WEBHOOK_ROUTE],
        webhooks={"listen": {"enabled": True, "port": free_port(), "token": TOKEN}},
    )
    try:
        port = int(receiver_url(bridge).split(":")[2].split("/")[0])
        head = (
            f"POST /plate-recognizer?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        # A byte every 0.2 s never trips a timeout per recv; the whole request's deadline ends it.
        closed_after = trickle(port, head, every=0.2, give_up=5)
    finally:
        bridge.stop(deadline=1)
    assert closed_after is not None, "the trickling sender was never cut off"
    assert closed_after <= 2.5


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "bridge.example"])
def test_listening_off_loopback_without_a_token_is_a_config_error(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            reader={"url": "http://127.0.0.1:1/alpr"},
            routes=[WEBHOOK_ROUTE],
            webhooks={"listen": {"enabled": True, "host": host}},
        )
    [problem] = caught.value.problems
    assert "webhooks.listen" in problem and "token" in problem and host in problem


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token_and_a_token_allows_any_host(host: str) -> None:
    load_config(
        reader={"url": "http://127.0.0.1:1/alpr"},
        routes=[WEBHOOK_ROUTE],
        webhooks={"listen": {"enabled": True, "host": host}},
    )
    load_config(
        reader={"url": "http://127.0.0.1:1/alpr"},
        routes=[WEBHOOK_ROUTE],
        webhooks={"listen": {"enabled": True, "host": "0.0.0.0", "token": TOKEN}},
    )


@needs_shared
def test_the_real_webhook_payload_is_accepted(receiving_bridge: Bridge) -> None:
    body = json.loads((RESPONSES / "parkpow_platerec-documentation_webhook_2019.json").read_text())
    answer = requests.post(
        receiver_url(receiving_bridge), json=body, headers={"Authorization": f"Token {TOKEN}"}
    )
    assert answer.status_code == 200


def test_the_webhook_topic_needs_a_route() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": "http://127.0.0.1:1/alpr"}, webhooks={"listen": {"enabled": True}})
    assert any("plate-recognizer/webhook/+" in problem for problem in caught.value.problems)


class Target:
    """A webhook target on 127.0.0.1 answering scripted statuses, recording what it receives."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], Any]] = []
        self._changed = threading.Condition()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with target._changed:
                    target.received.append((dict(self.headers), json.loads(body)))
                    status = target.statuses.pop(0) if target.statuses else 200
                    target._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/plates?key=in-the-query"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[dict[str, str], Any]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            assert len(self.received) >= count, f"{len(self.received)} request(s), wanted {count}"
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_plate_events_are_delivered_with_retries_and_secret_headers_stay_out_of_logs(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    flaky, refusing = Target([500, 503]), Target([400])
    bridge = start_bridge(
        broker,
        emulator,
        webhooks={
            "targets": [
                {
                    "url": flaky.url,
                    "headers": {"Authorization": "Bearer hook-secret"},
                    "events": ["plate", "error"],
                },
                {"url": refusing.url},
            ],
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        },
    )
    try:
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("cameras/drive/image", jpeg())
        [event] = collector.wait_for("plate-bridge/drive/result")
        # Two failures, then delivered on the third attempt: the same event each time.
        attempts = flaky.wait_for(3)
        assert [body for _, body in attempts] == [event, event, event]
        assert all(headers["Authorization"] == "Bearer hook-secret" for headers, _ in attempts)
        # A 400 is not retried; error events go only to the target that asked for them.
        collector.publish("cameras/drive/image", b"not an image")
        [error] = collector.wait_for("plate-bridge/drive/error")
        assert flaky.wait_for(4)[3][1] == error
        assert [body for _, body in refusing.wait_for(1)] == [event]
    finally:
        bridge.stop(deadline=5)
        flaky.close()
        refusing.close()
    assert len(refusing.received) == 1
    assert "hook-secret" not in caplog.text
    # The bridge's own logs show a target by scheme, host and port only (urllib3's debug log shows
    # request lines with their query: docs/integrations/webhooks.md says to put tokens in headers).
    assert not [r for r in caplog.records if r.name.startswith("bridge") and "in-the-query" in r.getMessage()]
    assert "answered 500; retry 1" in caplog.text


def test_logged_urls_lose_their_secrets() -> None:
    assert shown_url("https://user:pw@hooks.example.com:8443/p/a?token=x") == "https://hooks.example.com:8443"

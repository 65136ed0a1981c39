"""MQTT 5 request/response over a real mosquitto: publish a frame with a response topic, await the answer."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.mqtt.message import publish_properties
from bridge.service import Bridge
from tests.conftest import BrokerAddress, Collector
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.test_frigate import wait_until


class Requester:
    """A caller as a script would write it: paho with MQTT 5, one reply topic, answers by correlation."""

    def __init__(self, host: str, port: int, reply_topic: str) -> None:
        self.reply_topic = reply_topic
        self.answers: list[tuple[bytes | None, dict[str, Any], Properties]] = []
        self._changed = threading.Condition()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"requester-{id(self)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe(reply_topic, qos=1)
        assert subscribed.wait(10), "the requester could not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            correlation = getattr(message.properties, "CorrelationData", None)
            self.answers.append((correlation, json.loads(message.payload), message.properties))
            self._changed.notify_all()

    def request(
        self, topic: str, payload: bytes, correlation: bytes | None, reply_to: str | None = None
    ) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = reply_to or self.reply_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        self._client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(10)

    def plain(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(
        self, count: int, timeout: float = 15.0
    ) -> list[tuple[bytes | None, dict[str, Any], Properties]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.answers) >= count, timeout)
            answers = list(self.answers)
        assert len(answers) >= count, f"{len(answers)} answer(s) after {timeout} s, wanted {count}"
        return answers

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def v5_bridge(broker: BrokerAddress, emulator: ReaderEmulator) -> Any:
    if broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only; response topics are MQTT 5")
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "protocol": "5"},
        # One worker: the answers come back in the order the frames went in.
        reader={"url": emulator.url, "max_calls_per_second": None, "concurrency": 1},
        requests={"enabled": True},
        # Tests send a few frames of one camera at once: none may be pushed out unread.
        queued_frames_per_camera=8,
    )
    bridge = Bridge(config)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    yield bridge
    bridge.stop(deadline=5)


def test_a_frame_with_a_response_topic_is_answered_with_its_correlation_data(
    broker: BrokerAddress, v5_bridge: Bridge, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    requester = Requester(broker.host, broker.port, "scripts/me/replies")
    try:
        requester.request("cameras/drive/image", jpeg(), b"request-1")
        [(correlation, answer, properties)] = requester.wait_for(1)
        assert correlation == b"request-1"
        assert answer["results"] and answer["camera_id"] == "drive"
        assert properties.ContentType == "application/json"
        assert ("kind", "plate") in properties.UserProperty
        # The usual result topic still gets the event: answering is in addition, not instead.
        [event] = collector.wait_for("plate-bridge/drive/result")
        assert event == answer

        # A frame that cannot be read is answered with its error event, same correlation.
        requester.request("cameras/drive/image", b"not an image", b"request-2")
        correlation, error, properties = requester.wait_for(2)[1]
        assert correlation == b"request-2"
        assert error["code"] == "payload_not_image"
        assert ("kind", "error") in properties.UserProperty

        # One answer each: a marker frame's answer comes after any late second answer (one worker,
        # answers in order), so only the marker may have arrived since.
        requester.request("cameras/drive/image", jpeg(text="MARKER"), b"marker")
        answers = requester.wait_for(3)
        assert [correlation for correlation, _, _ in answers] == [b"request-1", b"request-2", b"marker"]
    finally:
        requester.close()


def test_only_frames_that_ask_are_answered_and_never_on_the_bridges_own_topics(
    broker: BrokerAddress, v5_bridge: Bridge, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    requester = Requester(broker.host, broker.port, "scripts/me/replies")
    try:
        requester.plain("cameras/drive/image", jpeg())  # no response topic: no answer
        requester.request("cameras/drive/image", jpeg(), b"spoof", reply_to="plate-bridge/bridge/state")
        requester.request("cameras/drive/image", jpeg(), None)  # no correlation data: still answered
        collector.wait_for("plate-bridge/drive/result", 3)
        # A marker frame's answer comes after the answers of the three before it (one worker, in
        # order): by then an answer to the plain frame or on the spoofed topic would be here too.
        requester.request("cameras/drive/image", jpeg(text="MARKER"), b"marker")
        answers = requester.wait_for(2)
        assert [correlation for correlation, _, _ in answers] == [None, b"marker"]
        answer = answers[0][1]
        assert answer["results"] and answer["topic"] == "cameras/drive/image"
        assert all("results" not in state for state in collector.on("plate-bridge/bridge/state"))
    finally:
        requester.close()


def test_requests_need_mqtt_5() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": "http://127.0.0.1:1/alpr"}, requests={"enabled": True})
    assert any("mqtt.protocol '5'" in problem for problem in caught.value.problems)


def test_publish_properties_by_snake_case_name() -> None:
    properties = publish_properties({"correlation_data": b"x", "message_expiry_interval": 5})
    assert properties.CorrelationData == b"x" and properties.MessageExpiryInterval == 5
    with pytest.raises(ValueError, match="session_expiry_interval"):
        publish_properties({"session_expiry_interval": 5})


def v5_config(broker: BrokerAddress, emulator: ReaderEmulator, **sections: Any) -> Any:
    return load_config(
        mqtt={"host": broker.host, "port": broker.port, "protocol": "5", "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None, "concurrency": 1},
        queued_frames_per_camera=16,
        **sections,
    )


def refused_count(bridge: Bridge) -> int:
    return int(bridge.health()["extensions"]["requests"]["refused"])


def test_answers_are_refused_on_topics_the_bridge_home_assistant_or_a_route_reads(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only; response topics are MQTT 5")
    caplog.set_level(logging.INFO, logger="bridge.extensions.requests")
    config = v5_config(
        broker,
        emulator,
        requests={"enabled": True},
        routes=[
            {"topic": "cameras/+/image", "result_topic": "alpr/{camera_id}/plate"},
            {"topic": "frigate/+/+/event_snapshot"},
        ],
        # Frigate is followed (its events topic is read) but never called: no event arrives.
        frigate={"enabled": True, "url": "http://127.0.0.1:9"},
    )
    bridge = Bridge(config)
    bridge.start()
    collector: Collector = collector_factory(broker.host, broker.port, ["#"])
    requester = Requester(broker.host, broker.port, "scripts/me/replies")
    refused = [
        "homeassistant/sensor/evil/config",  # discovery, though Home Assistant discovery is off
        "cameras/loop/image",  # a route's camera input: the answer would be read again, a loop
        "frigate/events",  # what the Frigate extension reads
        "frigate/cam/car/event_snapshot",  # a route's filter
        "$SYS/x",
        "plate-bridge",  # the base topic and its subtree
        "plate-bridge/bridge/state",
        "alpr/other/plate",  # another camera's events (a route's result topic template)
    ]
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        for topic in refused:
            requester.request("cameras/drive/image", jpeg(), topic.encode(), reply_to=topic)
        # The same topic again: counted again, logged once.
        requester.request("cameras/drive/image", jpeg(), b"again", reply_to="cameras/loop/image")
        requester.request("cameras/drive/image", jpeg(), b"fine")  # answered on scripts/me/replies
        # Every frame was still read and its event published on the route's result topic.
        collector.wait_for("alpr/drive/plate", len(refused) + 2)
        [(correlation, _, _)] = requester.wait_for(1)
        assert correlation == b"fine"
        # The bridge publishes in order: once the last answer is in, any answer before it would be.
        collector.wait_for("scripts/me/replies")
        answered = {name for name, payload, _ in collector.messages if b'"results"' in payload}
        assert answered.isdisjoint(refused), answered
        wait_until(lambda: refused_count(bridge) == len(refused) + 1, "the refused answers to be counted")
    finally:
        requester.close()
        bridge.stop(deadline=5)
    logged = [r.getMessage() for r in caplog.records if r.name == "bridge.extensions.requests"]
    for topic in refused:
        assert sum(f"response topic {topic} " in line for line in logged) == 1, (topic, logged)


def test_an_allow_list_narrows_the_response_topics_answered(
    broker: BrokerAddress, emulator: ReaderEmulator
) -> None:
    if broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only; response topics are MQTT 5")
    config = v5_config(
        broker, emulator, requests={"enabled": True, "allowed_topics": ["scripts/+/replies", "#"]}
    )
    narrow = v5_config(broker, emulator, requests={"enabled": True, "allowed_topics": ["scripts/+/replies"]})
    assert config.requests.allowed_topics == ("scripts/+/replies", "#")
    bridge = Bridge(narrow)
    bridge.start()
    allowed = Requester(broker.host, broker.port, "scripts/me/replies")
    elsewhere = Requester(broker.host, broker.port, "other/replies")
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        elsewhere.request("cameras/drive/image", jpeg(), b"not-allowed")
        allowed.request("cameras/drive/image", jpeg(), b"allowed")
        [(correlation, answer, _)] = allowed.wait_for(1)
        assert correlation == b"allowed" and answer["results"]
        wait_until(lambda: refused_count(bridge) == 1, "the answer off the allow-list to be refused")
        assert elsewhere.answers == []
    finally:
        allowed.close()
        elsewhere.close()
        bridge.stop(deadline=5)


@pytest.mark.parametrize("bad", ["a/#/b", "x+/y", "$share/g/replies/#", ""])
def test_allowed_topics_must_be_filters(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            mqtt={"protocol": "5"},
            reader={"url": "http://127.0.0.1:1/alpr"},
            requests={"enabled": True, "allowed_topics": [bad]},
        )
    problems = caught.value.problems
    assert any(p.startswith("requests.allowed_topics") and "unknown key" not in p for p in problems), problems

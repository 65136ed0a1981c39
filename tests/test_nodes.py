"""Nodes and flows on hand-built messages: no broker, no HTTP."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from bridge.config import RouteConfig
from bridge.core import schemas
from bridge.core.errors import ConfigError, EnvelopeInvalid, PayloadNotImage, PayloadTooLarge
from bridge.core.messages import Message, TopicFilter
from bridge.flows import Flow, resolve_node_type
from bridge.nodes import DecodeNode, FilterNode, Node, NodeContext, SplitNode, WatchlistNode
from tests.canned import READING, CannedReader, RecordingPublisher
from tests.images import jpeg, png

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def context(route: RouteConfig | None = None, reader: Any = None, max_bytes: int = 1_000_000) -> NodeContext:
    return NodeContext(
        route=route or RouteConfig(topic="cameras/+/image", regions=["gb"]),
        base_topic="plate-bridge",
        publisher=RecordingPublisher(),
        reader=reader,
        max_payload_bytes=max_bytes,
    )


def message(payload: bytes, **fields: Any) -> Message:
    return Message(
        topic="cameras/drive/image", payload=payload, received_at=RECEIVED, camera_id="drive", **fields
    )


def decode(payload: bytes, max_bytes: int = 1_000_000) -> Message:
    return DecodeNode.from_settings({}, context(max_bytes=max_bytes)).process(message(payload))


@pytest.mark.parametrize("kind", ["raw-jpeg", "raw-png", "base64", "base64-lines", "data-uri", "envelope"])
def test_decode_accepts_every_payload_format(kind: str) -> None:
    image = png() if kind == "raw-png" else jpeg()
    text = base64.b64encode(image)
    payload = {
        "raw-jpeg": image,
        "raw-png": image,
        "base64": text,
        "base64-lines": b"\n".join(text[i : i + 76] for i in range(0, len(text), 76)) + b"\n",
        "data-uri": b"data:image/jpeg;base64," + text,
        "envelope": json.dumps({"image": text.decode()}).encode(),
    }[kind]
    decoded = decode(payload)
    assert decoded.image == image
    assert decoded.image_format == ("png" if kind == "raw-png" else "jpeg")
    assert (decoded.image_base64 is None) == kind.startswith("raw")


def test_envelope_fields_override_the_route() -> None:
    envelope = {
        "image": "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode(),
        "camera_id": "gate/1",
        "timestamp": "2026-01-02T03:04:05+01:00",
        "regions": ["FR", "de"],
        "mmc": True,
        "config": '{"mode": "redaction"}',
    }
    decoded = decode(json.dumps(envelope).encode())
    assert decoded.camera_id == "gate_1"  # a topic level cannot hold '/'
    assert decoded.timestamp == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert decoded.regions == ("fr", "de")
    assert decoded.mmc is True
    assert decoded.engine_config == {"mode": "redaction"}


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"", PayloadNotImage, "empty payload"),
        (b"hello world", PayloadNotImage, "not valid base64"),
        (base64.b64encode(b"GIF89a not supported"), PayloadNotImage, "not a JPEG or PNG"),
        (base64.b64encode(jpeg())[:-3], PayloadNotImage, "not valid base64"),
        (b"data:image/jpeg,abc", PayloadNotImage, "data URI"),
        (b'{"image": ', EnvelopeInvalid, "does not parse"),
        (b"[" * 100_000, PayloadNotImage, "base64"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, EnvelopeInvalid, "does not parse"),
        (b'{"camera_id": "x"}', EnvelopeInvalid, "'image' is a required property"),
        (b'{"image": 5}', EnvelopeInvalid, "image"),
        (
            json.dumps({"image": base64.b64encode(jpeg()).decode(), "regions": ["zz"]}).encode(),
            EnvelopeInvalid,
            "unknown region code 'zz'",
        ),
        (
            json.dumps({"image": base64.b64encode(jpeg()).decode(), "timestamp": "yesterday"}).encode(),
            EnvelopeInvalid,
            "timestamp",
        ),
        (b"\xff\xfe\x00garbage", PayloadNotImage, "base64"),
        # NaN and Infinity are not JSON, although Python's parser takes them.
        (b'{"image": "/9j/", "timestamp": Infinity}', EnvelopeInvalid, "does not parse"),
        (b'{"image": "/9j/", "mmc": NaN}', EnvelopeInvalid, "does not parse"),
    ],
)
def test_decode_refuses_bad_payloads_with_a_specific_error(payload: bytes, error: type, words: str) -> None:
    with pytest.raises(error) as caught:
        decode(payload)
    assert words in str(caught.value)


def test_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="over the 1,000-byte limit"):
        decode(b"A" * 1001, max_bytes=1000)


def test_filter_drops_weak_and_unmatched_plates() -> None:
    node = FilterNode.from_settings(
        {"min_score": 0.5, "plate_pattern": "[A-Z]{2}[0-9]{2}[A-Z]{3}"}, context()
    )
    kept = node.process(message(b"", result=READING))
    assert kept is not None and [r["plate"] for r in kept.result["results"]] == ["ab12cde"]
    none_left = FilterNode.from_settings({"min_score": 0.99}, context()).process(message(b"", result=READING))
    assert none_left is None


def test_node_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"nodes\.filter\.min_score"):
        FilterNode.from_settings({"min_score": 2}, context())
    with pytest.raises(ConfigError, match="plate_pattern is not a regular expression"):
        FilterNode.from_settings({"plate_pattern": "("}, context())
    with pytest.raises(ConfigError, match="colour"):
        FilterNode.from_settings({"colour": "red"}, context())


def test_split_yields_one_message_per_plate() -> None:
    parts = list(SplitNode.from_settings({}, context()).process(message(b"", result=READING)))
    assert [p.result["results"][0]["plate"] for p in parts] == ["ab12cde", "x1"]
    assert all(len(p.result["results"]) == 1 for p in parts)


def test_flow_publishes_schema_valid_events() -> None:
    route = RouteConfig(topic="cameras/+/image", regions=["gb"], nodes=["split"])
    reader = CannedReader(READING)
    ctx = context(route, reader)
    flow = Flow.build(route, ctx)
    assert [node.name for node in flow.nodes] == ["decode", "recognize", "validate", "split", "publish"]
    flow.run(message(base64.b64encode(jpeg()), regions=route.regions))
    sent = ctx.publisher.sent  # type: ignore[attr-defined]
    assert [topic for topic, *_ in sent] == ["plate-bridge/drive/result"] * 2
    for _, event, qos, retain in sent:
        schemas.validate("plate-event", event)
        assert (qos, retain) == (1, False)
    # The split event's own `plate` as written on the plate; its `results` as the reader answered.
    assert [event["plate"] for _, event, *_ in sent] == ["AB12CDE", "X1"]
    assert [event["results"][0]["plate"] for _, event, *_ in sent] == ["ab12cde", "x1"]
    assert reader.calls[0]["regions"] == ("gb",)
    assert reader.calls[0]["camera_id"] == "drive"


def test_flow_turns_failures_into_error_events() -> None:
    route = RouteConfig(topic="cameras/+/image")
    ctx = context(route, CannedReader({"results": "not a list"}))
    flow = Flow.build(route, ctx)
    flow.run(message(b"garbage!"))
    flow.run(message(jpeg()))
    sent = ctx.publisher.sent  # type: ignore[attr-defined]
    assert [event["code"] for _, event, *_ in sent] == ["payload_not_image", "reader_invalid_response"]
    for topic, event, *_ in sent:
        assert topic == "plate-bridge/drive/error"
        schemas.validate("error-event", event)


class Exploding(Node):
    type = "exploding"

    def process(self, msg: Message) -> Message:
        raise ZeroDivisionError("boom")


def test_an_unexpected_node_failure_is_reported_not_raised() -> None:
    route = RouteConfig(topic="cameras/+/image", nodes=[{"type": "tests.test_nodes:Exploding"}])
    ctx = context(route, CannedReader(READING))
    Flow.build(route, ctx).run(message(jpeg()))
    [(_, event, *_)] = ctx.publisher.sent  # type: ignore[attr-defined]
    assert event["code"] == "node_failed" and "ZeroDivisionError: boom" in event["message"]


class ReturnsAMapping(Node):
    type = "returns_a_mapping"

    def process(self, msg: Message) -> Any:
        return {"plate": "ab12cde"}


def test_a_node_returning_something_else_is_reported_by_name() -> None:
    route = RouteConfig(topic="cameras/+/image", nodes=[{"type": "tests.test_nodes:ReturnsAMapping"}])
    ctx = context(route, CannedReader(READING))
    Flow.build(route, ctx).run(message(jpeg()))
    [(_, event, *_)] = ctx.publisher.sent  # type: ignore[attr-defined]
    assert event["code"] == "node_failed"
    assert "node returns_a_mapping failed" in event["message"] and "returned dict" in event["message"]


def test_node_names_resolve() -> None:
    assert resolve_node_type("split") is SplitNode
    assert resolve_node_type("tests.test_nodes:Exploding") is Exploding
    with pytest.raises(ConfigError, match="unknown node 'nope'"):
        resolve_node_type("nope")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        resolve_node_type("no_such_module:Thing")
    with pytest.raises(ConfigError, match=r"not a bridge\.nodes\.Node subclass"):
        resolve_node_type("json:dumps")


def test_a_built_in_name_wins_over_a_plugin_of_the_same_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What an installed plugin that registered the name `watchlist` leaves behind.
    dist = tmp_path / "old_watchlist-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: old-watchlist\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[plate_bridge.nodes]\nwatchlist = tests.test_nodes:Exploding\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "watchlist" in [ep.name for ep in entry_points(group="plate_bridge.nodes")]
    assert resolve_node_type("watchlist") is WatchlistNode


@pytest.mark.parametrize(
    ("pattern", "topic", "captured"),
    [
        ("cameras/+/image", "cameras/drive/image", ("drive",)),
        ("cameras/+/image", "cameras/drive/other", None),
        ("cameras/#", "cameras/a/b", ("a/b",)),
        ("cameras/#", "cameras", ("",)),  # '#' also matches the parent level (MQTT 3.1.1 §4.7.1.2)
        ("cameras/#", "other/a", None),
        ("+/x", "$SYS/x", None),
        ("$share/g/cameras/+", "cameras/a", ("a",)),
        ("a/b", "a/b", ()),
    ],
)
def test_topic_filters(pattern: str, topic: str, captured: tuple[str, ...] | None) -> None:
    assert TopicFilter.parse(pattern).match(topic) == captured


def test_shared_subscription_filter() -> None:
    parsed = TopicFilter.parse("$share/replicas/cameras/+/image")
    assert parsed.share_group == "replicas" and parsed.filter == "cameras/+/image"
    assert parsed.subscription == "$share/replicas/cameras/+/image"

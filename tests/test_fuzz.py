"""Hostile payloads through the decode node and a whole flow: generated (hypothesis) and hand-made."""

from __future__ import annotations

import base64
import json
import logging
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import unicodedata
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.config import RouteConfig
from bridge.core import schemas
from bridge.core.errors import BridgeError, EnvelopeInvalid, PayloadTooLarge, ReaderPayloadTooLarge
from bridge.core.messages import Message
from bridge.flows import Flow
from bridge.imaging.images import sniff_format
from bridge.nodes import DecodeNode, NodeContext
from tests.canned import CannedReader, RecordingPublisher
from tests.images import jpeg, png

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MAX_PAYLOAD_BYTES = 1_000_000
# What a payload may fail with: the decode node's own codes, nothing else (docs/reference/topics.md, "Codes").
PAYLOAD_CODES = {"payload_too_large", "payload_not_image", "envelope_invalid"}
# Events quote short values on purpose (a schema problem shows values up to 60 characters, a message
# names the expected "data:image/jpeg;base64,"); a longer run of payload bytes can only be a leak.
LEAK_CHECK_MIN_BYTES = 64

IMAGES = [jpeg(), png(), jpeg(width=16, height=12, text="X", quality=30), png(width=3, height=2)]

FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": None,
    # The same examples on every run and machine, so a CI failure reproduces; no example database.
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@pytest.fixture(autouse=True, scope="module")
def quiet_flows() -> Iterator[None]:
    """Every refused payload logs a warning; thousands of them would only slow the run down."""
    flows_log = logging.getLogger("bridge.flows")
    level = flows_log.level
    flows_log.setLevel(logging.ERROR)
    yield
    flows_log.setLevel(level)


# --- the system under test, without a broker or HTTP ------------------------------------------------


class TooLargeReader(CannedReader):
    """Refuses every upload with a 413, which sends the image through the downscaling path."""

    def read(self, image: bytes | str, **params: Any) -> dict[str, Any]:
        raise ReaderPayloadTooLarge("413: the image is too large for the service", status_code=413)


def node_context(reader: Any = None, max_bytes: int = MAX_PAYLOAD_BYTES) -> NodeContext:
    return NodeContext(
        route=RouteConfig(topic="cameras/+/image", regions=["gb"]),
        base_topic="plate-bridge",
        publisher=RecordingPublisher(),
        reader=reader,
        max_payload_bytes=max_bytes,
    )


def frame(payload: bytes) -> Message:
    return Message(
        topic="cameras/drive/image",
        payload=payload,
        received_at=RECEIVED,
        route="cameras/+/image",
        camera_id="drive",
        regions=("gb",),
    )


DECODE = DecodeNode.from_settings({}, node_context())


def run_flow(payload: bytes, reader: Any = None) -> list[tuple[str, bytes]]:
    route = RouteConfig(topic="cameras/+/image", regions=["gb"])
    context = node_context(reader or CannedReader())
    Flow.build(route, context).run(frame(payload))
    return [(topic, payload) for topic, payload, *_ in context.publisher.raw]  # type: ignore[attr-defined]


def mqtt_topic_problem(topic: str) -> str | None:
    """Why mosquitto would refuse to take a PUBLISH on `topic` (and drop the connection), or None.

    MQTT 3.1.1 §1.5.3 and §4.7.3: well-formed UTF-8 without U+0000, at most 65,535 bytes, no wildcards
    in a topic name; mosquitto also refuses control characters and non-characters (utf8_mosq.c).
    """
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        return "not encodable as UTF-8 (a lone surrogate)"
    if not encoded or len(encoded) > 65_535:
        return f"{len(encoded)} bytes long"
    if "+" in topic or "#" in topic:
        return "holds a wildcard"
    for char in topic:
        code = ord(char)
        if unicodedata.category(char) == "Cc" or (code & 0xFFFE) == 0xFFFE or 0xFDD0 <= code <= 0xFDEF:
            return f"holds U+{code:04X}, which mosquitto refuses"
    return None


def check_decoded(payload: bytes) -> None:
    """The decode node's contract: a JPEG/PNG image out, or a BridgeError with a payload code."""
    refused: BridgeError | None = None
    try:
        decoded = DECODE.process(frame(payload))
    except BridgeError as error:  # anything else escapes and fails the property
        refused = error
    if refused is not None:
        assert refused.code in PAYLOAD_CODES, f"{type(refused).__name__} has code {refused.code!r}"
        assert refused.code == type(refused).code, "the code is the class's, never set per instance"
        assert refused.message, "an error says what is wrong"
        return
    assert decoded.image is not None
    assert decoded.image_format in ("jpeg", "png")
    assert sniff_format(decoded.image) == decoded.image_format


def secrets_of(payload: bytes) -> list[bytes]:
    """The parts of a payload an event must never carry: the payload itself and any image text."""
    found = [payload]
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("image"), str):
        found.append(document["image"].encode("utf-8", "replace"))
    found += [base64.b64encode(part) for part in list(found)]
    return [part for part in found if len(part) >= LEAK_CHECK_MIN_BYTES]


def check_flow(payload: bytes) -> None:
    """One payload through decode → recognize → validate → publish: exactly one well-formed event."""
    sent = run_flow(payload)
    assert len(sent) == 1, f"{len(sent)} events for one frame: {[topic for topic, _ in sent]}"
    [(topic, body)] = sent
    assert mqtt_topic_problem(topic) is None, f"event topic {topic!r}: {mqtt_topic_problem(topic)}"
    event = json.loads(body.decode("utf-8"))
    if topic.endswith("/error"):
        schemas.validate("error-event", event)
        # node_failed means an exception nobody expected: a payload must never cause one.
        assert event["code"] in PAYLOAD_CODES, event
    else:
        assert topic.endswith("/result"), topic
        schemas.validate("plate-event", event)
    for secret in secrets_of(payload):
        assert secret not in body, "the event carries (part of) the payload"


# --- payload strategies -----------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR that claim any size, with a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose start-of-frame marker claims another size."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


images = st.sampled_from(IMAGES)
image_base64 = images.map(base64.b64encode)

truncated_base64 = st.tuples(image_base64, st.integers(min_value=0, max_value=4000)).map(
    lambda pair: pair[0][: pair[1] % (len(pair[0]) + 1)]
)
wrong_padding = st.tuples(image_base64, st.sampled_from(["strip", "extra", "inside", "half"])).map(
    lambda pair: {
        "strip": pair[0].rstrip(b"="),
        "extra": pair[0] + b"==",
        "inside": pair[0][:8] + b"=" + pair[0][8:],
        "half": pair[0][:-1] if pair[0].endswith(b"=") else pair[0] + b"=",
    }[pair[1]]
)
non_image_base64 = st.binary(max_size=512).map(base64.b64encode)
invalid_utf8 = st.tuples(
    st.binary(max_size=64), st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
).map(lambda pair: pair[0] + pair[1] + pair[0])
bomb_images = st.one_of(
    st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)).map(lambda size: png_claiming(*size)),
    st.tuples(st.integers(0, 65_535), st.integers(0, 65_535)).map(lambda size: jpeg_claiming(*size)),
    st.just(png_claiming(100_000, 100_000)),
    st.just(jpeg_claiming(65_535, 65_535)),
)
image_like = st.one_of(images, bomb_images, st.binary(max_size=256))
data_uris = st.builds(
    lambda mime, marker, comma, data: b"data:" + mime + marker + comma + data,
    st.sampled_from([b"image/jpeg", b"image/png", b"", b"text/plain", b"image/jpeg;charset=utf-8"])
    | st.binary(max_size=20),
    st.sampled_from([b";base64", b"", b";BASE64", b";base64;"]),
    st.sampled_from([b",", b"", b",,"]),
    st.one_of(image_base64, truncated_base64, image_like.map(base64.b64encode), st.binary(max_size=128)),
)


def nested(depth: int, kind: str) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if kind == "object" else ("[" * depth + "]" * depth)


deep_json = st.builds(
    lambda depth, kind, where: (
        nested(depth, kind)
        if where == "bare"
        else json.dumps({"image": base64.b64encode(IMAGES[0]).decode(), where: "@"}).replace(
            '"@"', nested(depth, kind)
        )
    ),
    st.integers(min_value=1, max_value=3000),
    st.sampled_from(["object", "list"]),
    st.sampled_from(["bare", "config", "camera_id", "extra"]),
).map(str.encode)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
good_image_text = st.one_of(
    image_base64.map(bytes.decode), image_base64.map(lambda text: "data:image/jpeg;base64," + text.decode())
)
# Each field of the envelope (schemas/image-message.schema.json) gets values of the wrong type, and
# values of the right type that are still unusable.
envelope_fields: dict[str, st.SearchStrategy[Any]] = {
    "image": st.one_of(
        good_image_text,
        st.integers(),
        st.floats(),
        st.lists(json_values, max_size=3),
        st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        st.just(""),
        truncated_base64.map(bytes.decode),
        non_image_base64.map(bytes.decode),
        data_uris.map(lambda uri: uri.decode("latin-1")),
        st.text(max_size=40),
    ),
    "regions": st.one_of(
        st.just(["gb"]),
        st.just("us-ca"),
        st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        st.lists(json_values, max_size=4),
        st.text(max_size=10),
        st.integers(),
        st.just([]),
    ),
    "mmc": st.one_of(st.booleans(), st.text(max_size=10), st.integers(), st.none(), st.lists(json_values)),
    "timestamp": st.one_of(
        st.just("2026-11-25T10:00:00Z"),
        st.text(max_size=30),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.lists(json_values, max_size=3),
        st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?\Z"),
    ),
    "config": st.one_of(
        st.just({"mode": "fast"}),
        st.lists(json_values, max_size=3),
        st.text(max_size=20),
        st.just("{not json"),
        st.just('{"mode": "fast"}'),
        st.integers(),
        st.none(),
    ),
    # Camera ids of the wrong type; unusual camera-id text has its own test below.
    "camera_id": st.one_of(
        st.just("gate"), st.integers(), st.none(), st.lists(json_values, max_size=3), st.booleans()
    ),
}
envelopes = st.fixed_dictionaries(
    {}, optional={**envelope_fields, "extra": json_values, "frigate": json_values}
).map(lambda document: json.dumps(document).encode())
envelopes_with_image = st.fixed_dictionaries(
    {"image": envelope_fields["image"]}, optional={k: v for k, v in envelope_fields.items() if k != "image"}
).map(lambda document: json.dumps(document).encode())
not_json_envelopes = st.builds(
    lambda head, tail: b"{" + head + tail,
    st.binary(max_size=64),
    st.sampled_from([b"", b"}", b'"image": "', b'"image": "/9j/4AAQ"}']),
)
whitespace_wrapped = st.tuples(
    st.sampled_from([b"", b" ", b"\n", b"\r\n\t "]), st.one_of(image_base64, images), st.binary(max_size=3)
).map(lambda parts: parts[0] + parts[1] + parts[0] + parts[2])

payloads = st.one_of(
    images,
    image_base64,
    whitespace_wrapped,
    truncated_base64,
    wrong_padding,
    non_image_base64,
    invalid_utf8,
    data_uris,
    deep_json,
    envelopes,
    envelopes_with_image,
    not_json_envelopes,
    bomb_images,
    bomb_images.map(base64.b64encode),
    st.binary(max_size=2048),
)


# --- properties ------------------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=6_000, **FUZZ_SETTINGS)
@given(payload=payloads)
@example(payload=b"")
@example(payload=b'{"image": 5}')
@example(payload=png_claiming(100_000, 100_000))
def test_decode_gives_an_image_or_a_payload_error(payload: bytes) -> None:
    check_decoded(payload)


@pytest.mark.slow
@settings(max_examples=4_000, **FUZZ_SETTINGS)
@given(payload=payloads)
@example(payload=b"[" * 100_000)
@example(payload=json.dumps({"image": base64.b64encode(IMAGES[0]).decode(), "regions": {"gb": 1}}).encode())
def test_flow_publishes_exactly_one_valid_event_per_payload(payload: bytes) -> None:
    check_flow(payload)


any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
fixed_offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
hostile_envelopes = st.fixed_dictionaries(
    {"image": image_base64.map(bytes.decode)},
    optional={
        # Right types, hostile contents: any code point (lone surrogates and controls included) and
        # any date the ISO pattern lets through, with any offset.
        "camera_id": any_text,
        "timestamp": st.one_of(
            st.builds(
                lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
                st.datetimes(),
                fixed_offsets,
            ),
            st.floats(min_value=0),
            st.integers(min_value=0),
        ),
        "regions": st.lists(any_text, max_size=3),
        "config": st.dictionaries(any_text, json_values, max_size=3),
    },
).map(lambda document: json.dumps(document).encode())


@pytest.mark.slow
@settings(max_examples=1_000, **FUZZ_SETTINGS)
@given(payload=hostile_envelopes)
def test_flow_copes_with_hostile_envelope_values(payload: bytes) -> None:
    check_flow(payload)


# --- regressions found by the properties above ------------------------------------------------------


@pytest.mark.parametrize(
    "camera_id", ["gate\x01one", "ga\x7fte", "ga\x85te", "ga\ufffete", "ga\ud800te", "g" * 70_000]
)
def test_an_envelope_camera_id_never_makes_an_unpublishable_topic(camera_id: str) -> None:
    payload = json.dumps({"image": base64.b64encode(IMAGES[0]).decode(), "camera_id": camera_id})
    check_flow(payload.encode())


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_timestamp_outside_the_utc_range_is_an_envelope_error(timestamp: str) -> None:
    payload = json.dumps({"image": base64.b64encode(IMAGES[0]).decode(), "timestamp": timestamp})
    check_flow(payload.encode())


def test_json_nested_up_to_the_recursion_limit_is_an_envelope_error() -> None:
    # The depth at which the parser gives up depends on the caller's stack, so every depth up to past
    # the limit is tried: the ones just below it are where the bug hides.
    failures: dict[int, str] = {}
    for depth in range(1, sys.getrecursionlimit() + 50):
        for payload in (b'{"a":' + nested(depth, "list").encode() + b"}", nested(depth, "object").encode()):
            try:
                DECODE.process(frame(payload))
            except EnvelopeInvalid:
                continue
            except Exception as error:
                failures.setdefault(depth, type(error).__name__)
    assert not failures, f"nesting depths that escape as other errors: {failures}"


# --- size and memory --------------------------------------------------------------------------------


def test_a_100_mb_payload_is_refused_before_decoding_and_memory_stays_flat() -> None:
    # Valid base64 wrapped in whitespace: decoding it, or even stripping it, would allocate ~75-100 MB.
    payload = b" " + b"QUFB" * (25 * 1024 * 1024) + b"\n"
    context = node_context(CannedReader(), max_bytes=10 * 1024 * 1024)
    route = RouteConfig(topic="cameras/+/image", regions=["gb"])
    flow = Flow.build(route, context)
    node = DecodeNode.from_settings({}, context)
    message = frame(payload)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge) as refused:
            node.process(message)
        flow.run(message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"processing a refused payload allocated {peak:,} bytes"
    assert refused.value.context["size"] == len(payload)
    [(topic, body, *_)] = context.publisher.raw  # type: ignore[attr-defined]
    event = json.loads(body)
    schemas.validate("error-event", event)
    assert topic == "plate-bridge/drive/error" and event["code"] == "payload_too_large"
    assert len(body) < 1000


BOMB_PROBE = """
import json, resource, sys
# A cap on the address space, so a regression cannot take the machine's memory with it.
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from tests.test_fuzz import TooLargeReader, jpeg_claiming, png_claiming, run_flow
image = {"jpeg": jpeg_claiming, "png": png_claiming}[sys.argv[1]](8000, 8000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sent = run_flow(image, TooLargeReader())
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_kib": grown, "events": [[topic, body.decode()] for topic, body in sent]}))
"""


@pytest.mark.parametrize(
    "kind",
    [
        "jpeg",
        "png",
    ],
)
def test_a_413_on_a_decompression_bomb_does_not_decode_it_in_full(kind: str) -> None:
    # In a child process: its peak resident memory is the measure (Pillow allocates outside tracemalloc).
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BOMB_PROBE), kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],  # where `tests` imports from
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    [(topic, body)] = report["events"]
    assert topic == "plate-bridge/drive/error"
    assert json.loads(body)["code"] == "reader_payload_too_large"
    assert report["grown_kib"] < 100 * 1024, f"peak memory grew by {report['grown_kib'] / 1024:.0f} MB"

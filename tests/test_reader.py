"""The reader client against the Plate Recognizer emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import pytest

from bridge.core import schemas
from bridge.core.errors import (
    ReaderForbidden,
    ReaderInvalidResponse,
    ReaderPayloadTooLarge,
    ReaderRateLimited,
    ReaderRejected,
    ReaderUnavailable,
)
from bridge.core.events import error_event
from bridge.core.messages import Message
from bridge.reader import PlateReader, parse_retry_after
from bridge.reader.ratelimit import CallLimiter
from bridge.reader.resilience import ReaderGuard, ResiliencePolicy
from tests.conftest import free_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg, png

TOKEN = "s3cr3t-token-0123456789"


@pytest.fixture(params=["curl", "urllib3"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every reader test runs over both HTTP transports (bridge/transport.py)."""
    return request.param


@pytest.fixture
def secured() -> ReaderEmulator:
    with ReaderEmulator(token=TOKEN) as running:
        yield running


def test_sends_every_documented_parameter_as_multipart(secured: ReaderEmulator, transport: str) -> None:
    image = jpeg()
    with PlateReader(secured.url, token=TOKEN, transport=transport) as reader:
        body = reader.read(
            image,
            regions=["GB", "us-ca", "fr"],
            camera_id="gate",
            timestamp=datetime(2026, 11, 25, 13, 0, 1, tzinfo=UTC),
            mmc=True,
            config={"mode": "fast"},
            filename="gate.jpg",
        )
    schemas.validate("plate-reader-response", body)
    [request] = secured.requests
    assert request.headers["authorization"] == f"Token {TOKEN}"
    assert request.upload == image
    assert request.upload_kind == "file"
    assert request.upload_filename == "gate.jpg"
    assert request.fields["regions"] == ["gb", "us-ca", "fr"]
    assert request.fields["camera_id"] == ["gate"]
    assert request.fields["timestamp"] == ["2026-11-25T13:00:01.000000Z"]
    assert request.fields["mmc"] == ["true"]
    assert json.loads(request.fields["config"][0]) == {"mode": "fast"}
    assert body["camera_id"] == "gate"


def test_base64_upload_when_asked_and_when_given_text(emulator: ReaderEmulator, transport: str) -> None:
    image = png()
    with PlateReader(emulator.url, upload_base64=True, transport=transport) as reader:
        reader.read(image)
        reader.read(base64.b64encode(image).decode())
    assert [r.upload_kind for r in emulator.requests] == ["base64", "base64"]
    assert all(r.upload == image for r in emulator.requests)
    assert "authorization" not in emulator.requests[0].headers


def test_keeps_one_connection_alive(emulator: ReaderEmulator, transport: str) -> None:
    with PlateReader(emulator.url, transport=transport) as reader:
        for _ in range(3):
            reader.read(jpeg())
    ports = {request.client_port for request in emulator.requests}
    assert len(ports) == 1, "three calls must share one keep-alive connection"


def test_wrong_token_is_forbidden_and_never_echoed(
    secured: ReaderEmulator, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    wrong = "wrong-token-abcdef"
    caplog.set_level(logging.DEBUG)
    with (
        PlateReader(secured.url, token=wrong, transport=transport) as reader,
        pytest.raises(ReaderForbidden) as caught,
    ):
        reader.read(jpeg())
    assert caught.value.code == "reader_forbidden"
    assert caught.value.status_code == 403
    assert str(caught.value).startswith("403: the token was refused")
    assert "Invalid token." in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(reader), caplog.text):
        assert wrong not in text


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (413, ReaderPayloadTooLarge, "reader_payload_too_large"),
        (500, ReaderUnavailable, "reader_unavailable"),
        (502, ReaderUnavailable, "reader_unavailable"),
        (400, ReaderRejected, "reader_rejected"),
    ],
)
def test_status_codes_become_typed_errors(
    emulator: ReaderEmulator, status: int, error: type, code: str, transport: str
) -> None:
    emulator.fail_next(status)
    with PlateReader(emulator.url, transport=transport) as reader, pytest.raises(error) as caught:
        reader.read(jpeg())
    assert caught.value.code == code
    assert caught.value.status_code == status


def test_429_keeps_the_wait_from_the_header(emulator: ReaderEmulator, transport: str) -> None:
    emulator.fail_next(429, retry_after=7)
    with PlateReader(emulator.url, transport=transport) as reader, pytest.raises(ReaderRateLimited) as caught:
        reader.read(jpeg())
    assert caught.value.retry_after == 7
    assert "retry after 7 s" in str(caught.value)


def test_429_wait_from_the_body_text() -> None:
    detail = "Request was throttled. Expected available in 3 seconds."
    assert parse_retry_after({}, detail) == 3
    assert parse_retry_after({"Retry-After": "2"}, detail) == 2
    assert parse_retry_after({}, "slow down") is None


def test_timeout_is_unavailable(emulator: ReaderEmulator, transport: str) -> None:
    emulator.delay_next(2.0)
    with (
        PlateReader(emulator.url, timeout=0.3, transport=transport) as reader,
        pytest.raises(ReaderUnavailable) as caught,
    ):
        reader.read(jpeg())
    assert "within 0.3 s" in str(caught.value)


def test_dropped_connection_is_unavailable(emulator: ReaderEmulator, transport: str) -> None:
    emulator.drop_next()
    with PlateReader(emulator.url, transport=transport) as reader, pytest.raises(ReaderUnavailable):
        reader.read(jpeg())


def test_refused_connection_is_unavailable(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/plate-reader/"
    with (
        PlateReader(url, timeout=2, transport=transport) as reader,
        pytest.raises(ReaderUnavailable) as caught,
    ):
        reader.read(jpeg())
    assert "cannot reach" in str(caught.value)


def test_unknown_region_fails_before_any_call(emulator: ReaderEmulator, transport: str) -> None:
    with (
        PlateReader(emulator.url, transport=transport) as reader,
        pytest.raises(ValueError, match="unknown region code 'zz'"),
    ):
        reader.read(jpeg(), regions=["zz"])
    with (
        PlateReader(emulator.url, transport=transport) as reader,
        pytest.raises(ValueError, match="quote it"),
    ):
        reader.read(jpeg(), regions=[False])  # type: ignore[list-item]
    assert emulator.requests == []


@pytest.mark.parametrize("filename", ['we"ird\r\nname.jpg', "ünïcode.jpg"])
def test_odd_file_names_keep_the_request_well_formed(
    emulator: ReaderEmulator, filename: str, transport: str
) -> None:
    image = jpeg()
    with PlateReader(emulator.url, transport=transport) as reader:
        reader.read(image, camera_id='gate "north"', filename=filename)
    [request] = emulator.requests
    assert request.upload == image
    assert request.fields["camera_id"] == ['gate "north"']
    assert "\n" not in (request.upload_filename or "")


def test_a_body_that_fails_the_schema_is_invalid(emulator: ReaderEmulator, transport: str) -> None:
    image = jpeg()
    emulator.set_response(image, {"results": [{"plate": "abc123", "score": "high"}]})
    with (
        PlateReader(emulator.url, transport=transport) as reader,
        pytest.raises(ReaderInvalidResponse) as caught,
    ):
        reader.read(image)
    assert caught.value.code == "reader_invalid_response"
    with PlateReader(emulator.url, validate=False, transport=transport) as reader:
        assert reader.read(image)["results"][0]["score"] == "high"


def test_statistics_and_info(secured: ReaderEmulator, transport: str) -> None:
    with PlateReader(secured.url, token=TOKEN, transport=transport) as reader:
        reader.read(jpeg())
        statistics = reader.statistics()
        info = reader.info()
    schemas.validate("statistics", statistics)
    schemas.validate("sdk-info", info)
    assert statistics["usage"]["calls"] >= 1


# --- calls that may have been billed: reader.retry_ambiguous -------------------------------------


def _guard(retry_ambiguous: bool) -> ReaderGuard:
    policy = ResiliencePolicy(retries=2, backoff_initial=0, retry_ambiguous=retry_ambiguous)
    return ReaderGuard(policy, CallLimiter(None))


def _event(error: ReaderUnavailable) -> dict[str, object]:
    msg = Message(topic="cameras/gate/image", payload=b"", received_at=datetime.now(UTC), camera_id="gate")
    event = error_event(msg, error)
    schemas.validate("error-event", event)
    return event


@pytest.mark.parametrize("retry_ambiguous", [False, True])
def test_a_call_dropped_after_it_was_sent_is_re_sent_only_with_retry_ambiguous(
    emulator: ReaderEmulator, transport: str, retry_ambiguous: bool
) -> None:
    guard = _guard(retry_ambiguous)
    image = jpeg()
    with PlateReader(emulator.url, transport=transport) as reader:
        reader.read(image)  # a warm connection, as in a running bridge
        emulator.drop_next()  # the whole request arrives, then the connection closes unanswered
        if retry_ambiguous:
            assert guard.call(lambda: reader.read(image))["results"] is not None
            assert emulator.calls == 3
            return
        with pytest.raises(ReaderUnavailable) as caught:
            guard.call(lambda: reader.read(image))
    assert emulator.calls == 2, "the dropped call arrived once and was not sent again"
    assert caught.value.ambiguous
    event = _event(caught.value)
    assert event["ambiguous"] is True
    assert "the call may have been billed; not retried (reader.retry_ambiguous)" in str(event["message"])


def test_a_call_that_timed_out_waiting_for_its_answer_is_not_re_sent(
    emulator: ReaderEmulator, transport: str
) -> None:
    emulator.delay_next(5)  # read after the client gave up: the service bills it all the same
    with (
        PlateReader(emulator.url, timeout=1, transport=transport) as reader,
        pytest.raises(ReaderUnavailable, match="may have been billed") as caught,
    ):
        _guard(False).call(lambda: reader.read(jpeg()))
    assert caught.value.ambiguous and emulator.calls == 1


def test_calls_that_surely_were_not_read_are_still_retried(emulator: ReaderEmulator, transport: str) -> None:
    guard = _guard(False)
    emulator.fail_next(503)  # an answer: the service says it did not read the frame
    with PlateReader(emulator.url, transport=transport) as reader:
        guard.call(lambda: reader.read(jpeg()))
    assert emulator.calls == 2
    # Nothing listens: the request never left, so it is retried however retry_ambiguous is set.
    nowhere = f"http://127.0.0.1:{free_port()}/v1/plate-reader/"
    with PlateReader(nowhere, transport=transport) as reader, pytest.raises(ReaderUnavailable) as caught:
        guard.call(lambda: reader.read(jpeg()))
    assert not caught.value.ambiguous and "ambiguous" not in _event(caught.value)
    assert guard.calls == 2 + 3

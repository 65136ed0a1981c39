"""The JSON Schemas and their loader: what the real service sends passes, malformed documents fail clearly."""

from __future__ import annotations

import copy
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bridge.core import schemas
from bridge.core.errors import SchemaViolation
from tests.conftest import RESPONSES

SOURCES = RESPONSES / "SOURCES.tsv"
MMC_RESPONSE = "parkpow_platerec-documentation_gb_mmc_2020.json"

ALL_SCHEMAS = [
    "error-event",
    "error-response",
    "image-message",
    "plate-event",
    "plate-reader-response",
    "region-code",
    "sdk-info",
    "statistics",
    "webhook",
]

# Used when shared/ is absent: a response with every field the mutations below touch.
HAND_BUILT_RESPONSE: dict[str, Any] = {
    "processing_time": 52.7,
    "results": [
        {
            "box": {"xmin": 312, "ymin": 401, "xmax": 420, "ymax": 436},
            "plate": "ke19xyz",
            "region": {"code": "gb", "score": 0.81},
            "vehicle": {
                "score": 0.77,
                "type": "Sedan",
                "box": {"xmin": 150, "ymin": 200, "xmax": 700, "ymax": 520},
            },
            "score": 0.93,
            "candidates": [{"score": 0.93, "plate": "ke19xyz"}, {"score": 0.71, "plate": "ke19xyx"}],
            "dscore": 0.88,
            "model_make": [{"make": "Skoda", "model": "Octavia", "score": 0.44}],
            "color": [{"color": "silver", "score": 0.67}],
        }
    ],
    "filename": "0901_abcde_driveway.jpg",
    "version": 1,
    "camera_id": None,
    "timestamp": "2023-05-02T09:01:33.120004Z",
}


def require_shared() -> Path:
    """The folder of real payloads; skips the calling test when `shared/` is not beside the repo."""
    if not SOURCES.is_file():
        pytest.skip(f"needs the real payloads in {RESPONSES} (the `shared/` folder beside the repo)")
    return RESPONSES


def source_rows() -> list[dict[str, str]]:
    if not SOURCES.is_file():
        return []
    with SOURCES.open(encoding="utf-8", newline="") as table:
        return list(csv.DictReader(table, delimiter="\t"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_for_endpoint(endpoint: str) -> str:
    """Which schema a payload of SOURCES.tsv must match, from its `endpoint` column."""
    if re.search(r"-> HTTP [45]\d\d", endpoint):
        return "error-response"
    if endpoint.startswith("webhook"):
        return "webhook"
    if "/v1/statistics/" in endpoint:
        return "statistics"
    if "/info/" in endpoint:
        return "sdk-info"
    if "/v1/plate-reader/" in endpoint or "/alpr" in endpoint:
        return "plate-reader-response"
    raise ValueError(f"no schema for endpoint {endpoint!r}: teach schema_for_endpoint about it")


@pytest.fixture
def response() -> dict[str, Any]:
    """A fresh plate-reader response to mutate: the real mmc one when shared/ is present."""
    real = RESPONSES / MMC_RESPONSE
    return load_json(real) if real.is_file() else copy.deepcopy(HAND_BUILT_RESPONSE)


DELETE = object()


def mutated(document: Any, path: str, value: Any) -> Any:
    """A deep copy of `document` with the value at `path` (`a/0/b`, empty for the root) set or deleted."""
    if not path:
        return value
    changed = copy.deepcopy(document)
    *parents, last = (int(part) if part.isdigit() else part for part in path.split("/"))
    target = changed
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return changed


def checked_problems(name: str, document: Any) -> list[str]:
    """`schemas.problems`, also checking that the fast validator agrees on valid/invalid."""
    found = schemas.problems(name, document)
    assert schemas.is_valid(name, document) is (found == []), f"the two validators disagree on {name}"
    return found


def rejected(path: str, value: Any, reason: str, where: str | None = None) -> Any:
    """A row of a rejection table: set (or delete) `path`; the problem must be reported at `where`.

    `where` defaults to `path`, or to its parent for a deletion: a missing key is reported on its object.
    """
    if where is None:
        where = path.rpartition("/")[0] if value is DELETE else path
    return pytest.param(path, value, where, id=reason)


def assert_rejected(name: str, document: Any, path: str, value: Any, where: str) -> None:
    """`document` with `path` set to `value` (or deleted) fails `name`, with a problem reported at `where`."""
    found = checked_problems(name, mutated(document, path, value))
    # A missing or unexpected key is reported on the object holding it: that line must name the key.
    named_key = [path.rsplit("/", 1)[-1]] if len(where) < len(path) else []
    assert_mentions(found, where, *named_key)


def assert_mentions(found: list[str], path: str, *words: str) -> None:
    """Some problem line is about `path` and names every one of `words`."""
    shown = path or "(root)"
    assert any(line.startswith(f"{shown}: ") and all(word in line for word in words) for line in found), (
        f"no problem about {shown!r} mentioning {words}: {found}"
    )


# --- every schema is itself sound --------------------------------------------------------------


def test_names_lists_every_schema() -> None:
    assert schemas.names() == ALL_SCHEMAS


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_schema_is_valid_draft_2020_12_with_metadata(name: str) -> None:
    document = schemas.schema(name)
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"https://plate-bridge.dev/schemas/{name}.schema.json"
    assert document["title"]
    assert document["description"]
    assert document["examples"]


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_schema_examples_validate(name: str) -> None:
    for example in schemas.schema(name)["examples"]:
        assert checked_problems(name, example) == []


def every_ref(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from every_ref(value)
    elif isinstance(node, list):
        for value in node:
            yield from every_ref(value)


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_every_ref_resolves_among_the_project_schemas(name: str) -> None:
    # Examples only exercise some references; this resolves each one, offline, as the loader would.
    registry = Registry().with_resources(
        (schemas.schema(other)["$id"], Resource.from_contents(schemas.schema(other), DRAFT202012))
        for other in ALL_SCHEMAS
    )
    resolver = registry.resolver(base_uri=schemas.schema(name)["$id"])
    for ref in every_ref(schemas.schema(name)):
        assert isinstance(resolver.lookup(ref).contents, dict), ref


# --- what the real service sent ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "endpoint"),
    [
        pytest.param(row["file"], row["endpoint"], id=row["file"].removesuffix(".json"))
        for row in source_rows()
    ]
    or [pytest.param("", "", id="shared-missing")],
)
def test_real_payload_matches_its_schema(file: str, endpoint: str) -> None:
    document = load_json(require_shared() / file)
    name = schema_for_endpoint(endpoint)
    assert checked_problems(name, document) == [], f"{file} should match {name}"


def test_every_real_payload_is_listed_in_sources() -> None:
    folder = require_shared()
    listed = {row["file"] for row in source_rows()}
    assert {path.name for path in folder.glob("*.json")} == listed


def test_webhook_data_is_a_plate_reader_response() -> None:
    folder = require_shared()
    for row in source_rows():
        if schema_for_endpoint(row["endpoint"]) == "webhook":
            schemas.validate("plate-reader-response", load_json(folder / row["file"])["data"])


# --- malformed responses are rejected, naming where ----------------------------------------------

REJECTED = [
    rejected("results/0/score", "high", "score-is-a-string"),
    rejected("results/0/score", 1.5, "score-above-one"),
    rejected("results/0/score", -0.1, "score-negative"),
    rejected("results/0/dscore", 2, "dscore-above-one"),
    rejected("results/0/score", DELETE, "result-without-score"),
    rejected("results/0/box/xmin", -1, "box-coordinate-negative"),
    rejected("results/0/box/ymax", DELETE, "box-coordinate-missing"),
    rejected("results/0/box/xmax", 288.5, "box-coordinate-not-integer"),
    rejected("results/0/box/ymin", "478", "box-coordinate-is-a-string"),
    rejected("results", {"plate": "x"}, "results-not-a-list"),
    rejected("results", DELETE, "results-missing"),
    rejected("results/0", "nhk552", "result-not-an-object"),
    rejected("results/0/plate", DELETE, "result-without-plate"),
    rejected("results/0/box", DELETE, "result-without-box"),
    rejected("results/0/plate", 552, "plate-not-a-string"),
    rejected("results/0/plate", None, "plate-null"),
    rejected("results/0/candidates/0/plate", DELETE, "candidate-without-plate"),
    rejected("results/0/candidates/0/score", "0.9", "candidate-score-string"),
    rejected("results/0/candidates", "nhk552", "candidates-not-a-list"),
    rejected("processing_time", -1, "processing-time-negative"),
    rejected("processing_time", "78.5", "processing-time-is-a-string"),
    rejected("results/0/region/code", DELETE, "region-without-code"),
    rejected("results/0/region/code", "", "region-code-empty"),
    rejected("results/0/region/score", 1.01, "region-score-above-one"),
    rejected("results/0/vehicle/type", 3, "vehicle-type-not-a-string"),
    rejected("results/0/vehicle/type", DELETE, "vehicle-without-type"),
    rejected("results/0/vehicle/box/xmin", -5, "vehicle-box-negative"),
    rejected("results/0/model_make/0/score", 3, "model-make-score-above-one"),
    rejected("results/0/model_make/0/make", DELETE, "model-make-without-make"),
    rejected("results/0/color/0/score", "high", "color-score-string"),
    rejected("results/0/color", {"color": "red"}, "color-not-a-list"),
    rejected(
        "results/0/orientation",
        [{"orientation": "Front", "score": -1}],
        "orientation-score-negative",
        "results/0/orientation/0/score",
    ),
    rejected("camera_id", 17, "camera-id-a-number"),
    rejected("timestamp", "yesterday", "timestamp-not-a-date"),
    rejected("timestamp", 1700000000, "timestamp-a-number"),
    rejected("usage", {"calls": -1}, "usage-calls-negative", "usage/calls"),
    rejected("image_width", "1920", "image-width-is-a-string"),
    rejected("", [], "document-not-an-object"),
]


@pytest.mark.parametrize(("path", "value", "where"), REJECTED)
def test_malformed_response_is_rejected(response: dict[str, Any], path: str, value: Any, where: str) -> None:
    assert_rejected("plate-reader-response", response, path, value, where)


def test_rejection_table_is_large_enough() -> None:
    assert len(REJECTED) >= 20


# --- leniencies the real service needs -----------------------------------------------------------

ACCEPTED = [
    pytest.param("results/0/score", 1, id="integer-score-one"),
    pytest.param("results/0/candidates/0/score", 0, id="integer-score-zero"),
    pytest.param("timestamp", "2025-05-30 13:59:09.481824", id="sdk-timestamp-with-microseconds"),
    pytest.param("timestamp", "2020-01-16 17:00:00", id="sdk-timestamp-without-zone"),
    pytest.param("timestamp", "2024-10-24T17:29:26Z", id="cloud-timestamp-without-fraction"),
    pytest.param("timestamp", DELETE, id="old-sdk-without-timestamp"),
    pytest.param("results/0/region/code", "us-ca", id="region-us-state"),
    pytest.param("results/0/region/code", "ca-qc", id="region-canadian-province"),
    pytest.param("results/0/region/code", "unknown", id="region-unknown"),
    pytest.param("results/0/region", DELETE, id="old-sdk-without-region"),
    pytest.param("results/0/vehicle/box", DELETE, id="vehicle-without-box"),
    pytest.param("results/0/vehicle/box", {"xmin": 0, "ymin": 0, "xmax": 0, "ymax": 0}, id="box-at-zero"),
    pytest.param("camera_id", None, id="camera-id-null"),
    pytest.param("camera_id", "null", id="camera-id-null-as-a-string"),
    pytest.param("results", [], id="empty-results"),
    pytest.param("image_width", 1920, id="new-field-image-width"),
    pytest.param("results/0/direction", 185, id="new-field-direction"),
    pytest.param(
        "results/0/orientation", [{"orientation": "Rear", "score": 0.9}], id="new-field-orientation"
    ),
    pytest.param("results/0/vehicle/props", {"make_model": []}, id="new-field-in-vehicle"),
    pytest.param("usage", {"calls": 44, "max_calls": 1000}, id="sdk-usage"),
    pytest.param("something_newer", {"nested": [1, "two"]}, id="unknown-top-level-field"),
]


@pytest.mark.parametrize(("path", "value"), ACCEPTED)
def test_what_the_service_sends_is_accepted(response: dict[str, Any], path: str, value: Any) -> None:
    assert checked_problems("plate-reader-response", mutated(response, path, value)) == []


def test_hand_built_response_is_accepted() -> None:
    # The fallback the mutation tables start from must itself be a valid response.
    assert checked_problems("plate-reader-response", HAND_BUILT_RESPONSE) == []


# --- the other wire documents ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "document", "where"),
    [
        pytest.param("error-response", {"status_code": 403}, "", id="error-without-detail"),
        pytest.param(
            "error-response", {"detail": "x", "status_code": 200}, "status_code", id="error-status-2xx"
        ),
        pytest.param("error-response", {"detail": 403}, "detail", id="error-detail-not-a-string"),
        pytest.param("statistics", {"usage": {"calls": 1}}, "", id="statistics-without-total"),
        pytest.param(
            "statistics", {"usage": {"calls": 1, "month": 13}, "total_calls": 5}, "usage/month", id="month-13"
        ),
        pytest.param("sdk-info", {"version": 1.3}, "version", id="sdk-version-not-a-string"),
        pytest.param(
            "webhook", {"hook": {"target": "t", "id": 1, "event": "e"}}, "", id="webhook-without-data"
        ),
        pytest.param(
            "webhook",
            {"hook": {"target": "t", "id": 1, "event": "e"}, "data": {"results": [{"plate": "a"}]}},
            "data/results/0",
            id="webhook-data-result-without-box",
        ),
    ],
)
def test_malformed_wire_documents_are_rejected(name: str, document: Any, where: str) -> None:
    assert_mentions(checked_problems(name, document), where)


# --- image-message: what a camera may publish --------------------------------------------------------

IMAGE = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQ=="


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param({"image": IMAGE}, id="image-only"),
        pytest.param({"image": f"data:image/jpeg;base64,{IMAGE}"}, id="data-uri"),
        pytest.param({"image": IMAGE, "timestamp": "2024-03-01T08:15:00Z"}, id="timestamp-utc"),
        pytest.param({"image": IMAGE, "timestamp": "2024-03-01T09:15:00.5+01:00"}, id="timestamp-offset"),
        pytest.param({"image": IMAGE, "timestamp": "2024-03-01T08:15:00"}, id="timestamp-naive"),
        pytest.param({"image": IMAGE, "timestamp": 1709280900}, id="timestamp-unix-seconds"),
        pytest.param({"image": IMAGE, "timestamp": 1709280900.25}, id="timestamp-unix-fraction"),
        pytest.param({"image": IMAGE, "regions": ["gb", "IE"]}, id="regions-list"),
        pytest.param({"image": IMAGE, "regions": "us-ca"}, id="regions-one-string"),
        pytest.param({"image": IMAGE, "camera_id": "gate", "mmc": False}, id="camera-and-mmc"),
        pytest.param({"image": IMAGE, "config": {"mode": "fast"}}, id="config-object"),
        pytest.param({"image": IMAGE, "config": ' {"mode": "fast"}'}, id="config-json-text"),
        pytest.param({"image": IMAGE, "firmware": "4.2", "exposure": {"iso": 800}}, id="camera-metadata"),
    ],
)
def test_good_image_message_is_accepted(envelope: dict[str, Any]) -> None:
    assert checked_problems("image-message", envelope) == []


@pytest.mark.parametrize(
    ("envelope", "where"),
    [
        pytest.param({"camera_id": "gate"}, "", id="without-image"),
        pytest.param({"image": ""}, "image", id="image-empty"),
        pytest.param({"image": 42}, "image", id="image-not-a-string"),
        pytest.param({"image": IMAGE, "camera_id": 7}, "camera_id", id="camera-id-a-number"),
        pytest.param({"image": IMAGE, "timestamp": "last tuesday"}, "timestamp", id="timestamp-not-iso"),
        pytest.param({"image": IMAGE, "timestamp": "2024-03-01"}, "timestamp", id="timestamp-date-only"),
        pytest.param({"image": IMAGE, "timestamp": -5}, "timestamp", id="timestamp-negative"),
        pytest.param({"image": IMAGE, "timestamp": True}, "timestamp", id="timestamp-boolean"),
        pytest.param({"image": IMAGE, "regions": 5}, "regions", id="regions-a-number"),
        pytest.param({"image": IMAGE, "regions": ["gb", 3]}, "regions/1", id="regions-item-a-number"),
        pytest.param({"image": IMAGE, "regions": ""}, "regions", id="regions-empty-string"),
        pytest.param({"image": IMAGE, "mmc": "true"}, "mmc", id="mmc-a-string"),
        pytest.param({"image": IMAGE, "config": "fast"}, "config", id="config-text-not-an-object"),
        pytest.param({"image": IMAGE, "config": [1]}, "config", id="config-a-list"),
        pytest.param(["image"], "", id="not-an-object"),
    ],
)
def test_bad_image_message_is_rejected(envelope: Any, where: str) -> None:
    assert_mentions(checked_problems("image-message", envelope), where)


# --- plate-event and error-event: what the bridge publishes ------------------------------------------

PLATE_EVENT: dict[str, Any] = {
    "results": copy.deepcopy(HAND_BUILT_RESPONSE["results"]),
    "processing_time": 52.7,
    "camera_id": "driveway",
    "topic": "cameras/driveway/image",
    "timestamp": "2023-05-02T09:01:33.000Z",
    "received_at": "2023-05-02T09:01:33.118Z",
    "route": "home",
}

ERROR_EVENT: dict[str, Any] = {
    "code": "reader_rate_limited",
    "message": "the reader asked to slow down",
    "camera_id": "driveway",
    "topic": "cameras/driveway/image",
    "received_at": "2023-05-02T09:01:33.118Z",
    "route": "home",
    "status_code": 429,
    "retry_after": 1.5,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("", PLATE_EVENT, id="as-built"),
        pytest.param("camera_id", None, id="camera-id-null"),
        pytest.param("results", [], id="no-plates"),
        pytest.param("scale", 1, id="scale-one"),
        pytest.param("scale", 0.25, id="scale-quarter"),
        pytest.param("plate", "ke19xyz", id="split-plate"),
        pytest.param("received_at", "2023-05-02T09:01:33+00:00", id="utc-offset-form"),
        pytest.param("image_width", 1280, id="reader-field"),
        pytest.param("direction_score", 0.9, id="unknown-reader-field-kept"),
    ],
)
def test_good_plate_event_is_accepted(path: str, value: Any) -> None:
    assert checked_problems("plate-event", mutated(PLATE_EVENT, path, value)) == []


def test_plate_event_from_a_real_response_is_accepted(response: dict[str, Any]) -> None:
    event = {
        **response,
        **{key: PLATE_EVENT[key] for key in ("camera_id", "topic", "timestamp", "received_at")},
    }
    assert checked_problems("plate-event", event) == []


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        rejected("results", DELETE, "without-results"),
        rejected("camera_id", DELETE, "without-camera-id"),
        rejected("topic", DELETE, "without-topic"),
        rejected("timestamp", DELETE, "without-timestamp"),
        rejected("received_at", DELETE, "without-received-at"),
        rejected("results/0/box", DELETE, "result-uses-the-response-definition"),
        rejected("results/0/score", 7, "result-score-above-one"),
        rejected("topic", "cameras/+/image", "topic-with-plus"),
        rejected("topic", "cameras/#", "topic-with-hash"),
        rejected("topic", "", "topic-empty"),
        rejected("timestamp", "2023-05-02T11:01:33+02:00", "timestamp-not-utc"),
        rejected("timestamp", "2023-05-02 09:01:33", "timestamp-sdk-form"),
        rejected("received_at", 1683018093, "received-at-a-number"),
        rejected("scale", 0, "scale-zero"),
        rejected("scale", 1.5, "scale-above-one"),
        rejected("plate", 12, "plate-not-a-string"),
        rejected("route", 3, "route-not-a-string"),
        rejected("processing_time", -2, "processing-time-negative"),
    ],
)
def test_bad_plate_event_is_rejected(path: str, value: Any, where: str) -> None:
    assert_rejected("plate-event", PLATE_EVENT, path, value, where)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("", ERROR_EVENT, id="as-built"),
        pytest.param("camera_id", None, id="camera-id-null"),
        pytest.param("route", DELETE, id="without-route"),
        pytest.param("schema", "plate-reader-response", id="with-schema"),
        pytest.param("problems", ["results: 'x' is not of type 'array'"], id="with-problems"),
        pytest.param("scale", 0.5, id="with-scale"),
        pytest.param("retry_after", 0, id="retry-now"),
    ],
)
def test_good_error_event_is_accepted(path: str, value: Any) -> None:
    assert checked_problems("error-event", mutated(ERROR_EVENT, path, value)) == []


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        rejected("code", DELETE, "without-code"),
        rejected("message", DELETE, "without-message"),
        rejected("camera_id", DELETE, "without-camera-id"),
        rejected("topic", DELETE, "without-topic"),
        rejected("received_at", DELETE, "without-received-at"),
        rejected("code", "ReaderRateLimited", "code-not-snake-case"),
        rejected("code", "429", "code-starts-with-a-digit"),
        rejected("message", "", "message-empty"),
        rejected("status_code", "429", "status-code-a-string"),
        rejected("retry_after", -1, "retry-after-negative"),
        rejected("problems", "bad", "problems-not-a-list"),
        rejected("topic", "cameras/+", "topic-with-wildcard"),
        rejected("received_at", "yesterday", "received-at-not-iso"),
        rejected("image", IMAGE, "unexpected-field", ""),
    ],
)
def test_bad_error_event_is_rejected(path: str, value: Any, where: str) -> None:
    assert_rejected("error-event", ERROR_EVENT, path, value, where)


# --- region codes ----------------------------------------------------------------------------------


def test_region_codes_cover_the_api_document() -> None:
    codes = schemas.schema("region-code")["enum"]
    assert len(codes) > 150
    assert len(set(codes)) == len(codes)
    assert {"gb", "no", "us-ca", "au-nsw", "br-sc", "gp", "us-dc"} <= set(codes)
    assert all(code == code.lower() and "_" not in code for code in codes)


@pytest.mark.parametrize(
    ("code", "known"),
    [("gb", True), ("us-ca", True), ("br-sc", True), ("br_sc", False), ("US-CA", False), ("xx", False)],
)
def test_region_code_schema_is_the_lower_case_enum(code: str, known: bool) -> None:
    # Case-insensitivity and `_` belong to bridge.core.regions, which normalizes before checking.
    assert (checked_problems("region-code", code) == []) is known


# --- the loader ------------------------------------------------------------------------------------


def test_validate_raises_schema_violation_with_problems() -> None:
    document = {
        "results": [{"plate": "ab1", "box": {"xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}, "score": "high"}]
    }
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate("plate-reader-response", document)
    error = caught.value
    assert error.code == "schema_violation"
    assert error.context["schema"] == "plate-reader-response"
    assert error.problems == ["results/0/score: 'high' is not of type 'number'"]
    assert str(error).endswith(
        "does not match plate-reader-response: results/0/score: 'high' is not of type 'number'"
    )
    assert "\n" not in str(error)


def test_validate_returns_none_for_a_valid_document() -> None:
    assert schemas.validate("plate-reader-response", HAND_BUILT_RESPONSE) is None


def test_messages_never_carry_the_whole_document() -> None:
    image = "A" * 1_000_000
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate("plate-reader-response", {"image": image, "results": image})
    assert len(str(caught.value)) < 300
    assert all(len(line) < 300 for line in caught.value.problems)


def test_problems_are_sorted_by_path_and_capped() -> None:
    candidates = [{"plate": index} for index in range(30)]
    document = mutated(HAND_BUILT_RESPONSE, "results/0/candidates", candidates)
    found = checked_problems("plate-reader-response", mutated(document, "processing_time", "slow"))
    assert len(found) == 11
    assert found[0] == "processing_time: 'slow' is not of type 'number'"
    assert found[1:4] == [
        f"results/0/candidates/{index}/plate: {index} is not of type 'string'" for index in range(3)
    ]
    assert found[-1] == "... and 21 more problems"


def test_enum_problems_do_not_list_every_allowed_value() -> None:
    assert checked_problems("region-code", "zz") == ["(root): 'zz' is not one of the 182 allowed values"]


def test_validators_are_built_once() -> None:
    assert schemas.validator("plate-reader-response") is schemas.validator("plate-reader-response")


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="no schema named 'nope'"):
        schemas.schema("nope")

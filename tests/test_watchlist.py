"""Watch lists and ignore rules: the nodes on hand-built messages, then one event across a real broker."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import RouteConfig, WatchListConfig, load_config
from bridge.core import schemas
from bridge.core.errors import ConfigError
from bridge.core.events import plate_event
from bridge.core.messages import Message, Reuse
from bridge.core.plates import normalize_plate, plate_distance
from bridge.flows import Flow
from bridge.nodes import FilterNode, NodeContext, SplitNode, WatchlistNode
from bridge.nodes.watchlist import WatchList, match_results
from bridge.service import Bridge
from tests.canned import CannedReader, RecordingPublisher
from tests.conftest import BrokerAddress, Collector
from tests.emulator import ReaderEmulator
from tests.images import jpeg

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

FAMILY = {
    "plates": [{"plate": "AB12 CDE", "label": "Anna's car"}, {"plate": "XY-987", "label": "Ben's van"}],
}


def lists(**named: dict[str, Any]) -> dict[str, WatchListConfig]:
    return {name: WatchListConfig.model_validate(config) for name, config in named.items()}


def context(
    watchlists: dict[str, WatchListConfig] | None = None,
    route: RouteConfig | None = None,
    reader: CannedReader | None = None,
) -> NodeContext:
    return NodeContext(
        route=route or RouteConfig(topic="cameras/+/image"),
        base_topic="plate-bridge",
        publisher=RecordingPublisher(),
        reader=reader,
        watchlists=watchlists or {},
    )


def result(plate: str, *candidates: str, score: float = 0.9) -> dict[str, Any]:
    return {
        "box": {"xmin": 10, "ymin": 10, "xmax": 50, "ymax": 25},
        "plate": plate,
        "score": score,
        "candidates": [{"plate": plate, "score": score}] + [{"plate": c, "score": 0.5} for c in candidates],
    }


def message(*results: dict[str, Any]) -> Message:
    return Message(
        topic="cameras/drive/image",
        payload=b"",
        received_at=RECEIVED,
        camera_id="drive",
        route="drive",
        result={"processing_time": 10.0, "results": list(results)},
    )


def watch(
    *results: dict[str, Any],
    settings: dict[str, Any] | None = None,
    watchlists: dict[str, WatchListConfig] | None = None,
) -> list[dict[str, Any]]:
    """The `watched` array of the event published for `results`."""
    node = WatchlistNode.from_settings(
        settings or {}, context(lists(family=FAMILY) if watchlists is None else watchlists)
    )
    out = node.process(message(*results))
    assert out is not None
    event = plate_event(out)
    schemas.validate("plate-event", event)
    return event["watched"]


def test_an_exact_plate_matches_with_its_list_entry_and_label() -> None:
    [match] = watch(result("ab12cde"))
    assert match == {
        "list": "family",
        "entry": "AB12 CDE",
        "label": "Anna's car",
        "distance": 0.0,
        "plate": "ab12cde",
        "candidate": "ab12cde",
        "matched": "plate",
    }


def test_spaces_dashes_and_case_are_ignored() -> None:
    assert [m["entry"] for m in watch(result("xy 987"))] == ["XY-987"]
    assert [m["entry"] for m in watch(result("Xy-98-7"))] == ["XY-987"]


@pytest.mark.parametrize(
    ("read", "distance"),
    [
        ("ab12cdf", 1.0),  # one character misread
        ("ab12cd", 1.0),  # one character lost
        ("ab123cde", 1.0),  # one character too many
        ("ab12cd3", 1.0),  # a letter read as a digit that is not its look-alike
        ("abi2cde", 0.5),  # I for 1
        ("a812cde", 0.5),  # 8 for B
        ("a8i2cde", 1.0),  # two near misses add up to one misread
    ],
)
def test_one_misread_is_within_the_default_tolerance(read: str, distance: float) -> None:
    [match] = watch(result(read))
    assert (match["entry"], match["distance"], match["matched"]) == ("AB12 CDE", distance, "plate")
    assert match["plate"] == read and match["candidate"] == read


def test_o_and_zero_are_near_misses() -> None:
    watchlists = lists(trucks={"plates": ["BOX 100"], "tolerance": 0.5})
    [match] = watch(result("b0x100"), watchlists=watchlists)  # 0 for O
    assert match["distance"] == 0.5
    [match] = watch(result("box1o0"), watchlists=watchlists)  # O for 0
    assert match["distance"] == 0.5
    # O/0, I/1 and O/0 again: three near misses are 1.5, beyond this list's tolerance.
    assert watch(result("b0xioo"), watchlists=watchlists) == []


def test_two_misreads_are_not_a_match() -> None:
    assert watch(result("ab12cxx")) == []
    assert watch(result("zz99zzz")) == []


def test_tolerance_zero_means_exact() -> None:
    watchlists = lists(exact={"plates": ["AB12CDE"], "tolerance": 0})
    assert [m["distance"] for m in watch(result("AB-12-CDE"), watchlists=watchlists)] == [0.0]
    assert watch(result("AB12CD0"), watchlists=watchlists) == []  # even a near miss
    assert watch(result("AB12CDF"), watchlists=watchlists) == []


def test_a_candidate_matches_when_the_plate_does_not() -> None:
    [match] = watch(result("zz12cxx", "ab12cdz", "ab12cde"))
    # The candidates are compared too; the closest one is reported.
    assert match["matched"] == "candidate"
    assert (match["plate"], match["candidate"], match["distance"]) == ("zz12cxx", "ab12cde", 0.0)


def test_the_plate_is_preferred_to_an_equally_close_candidate() -> None:
    [match] = watch(result("ab12cdf", "ab12cdx"))
    assert (match["matched"], match["candidate"]) == ("plate", "ab12cdf")


def test_patterns_match_the_normalized_plate_or_a_candidate() -> None:
    watchlists = lists(fleet={"patterns": ["FLT[0-9]{3}", "taxi.*"]})
    [match] = watch(result("flt-042"), watchlists=watchlists)
    assert match == {
        "list": "fleet",
        "entry": "FLT[0-9]{3}",
        "label": None,
        "distance": 0.0,
        "plate": "flt-042",
        "candidate": "flt-042",
        "matched": "pattern",
    }
    [by_candidate] = watch(result("t4xi77", "taxi77"), watchlists=watchlists)
    assert (by_candidate["entry"], by_candidate["candidate"]) == ("taxi.*", "taxi77")
    # A full match, not a search: a plate that merely contains the pattern is not on the list.
    assert watch(result("xflt042"), watchlists=watchlists) == []


def test_matches_are_ordered_best_first_across_lists_and_results() -> None:
    watchlists = lists(
        blocked={"plates": ["AB12CDF"]},
        family=FAMILY,
        fleet={"patterns": ["XY.*"]},
    )
    matched = watch(result("ab12cdx"), result("zz00zzz", "xy987"), result("ab12cde"), watchlists=watchlists)
    order = [(m["list"], m["plate"], m["matched"], m["distance"]) for m in matched]
    assert order == [
        ("family", "ab12cde", "plate", 0.0),  # exact, on the plate
        ("family", "zz00zzz", "candidate", 0.0),  # exact, on a candidate
        ("fleet", "zz00zzz", "pattern", 0.0),  # a pattern, on a candidate
        ("blocked", "ab12cdx", "plate", 1.0),
        ("family", "ab12cdx", "plate", 1.0),
        ("blocked", "ab12cde", "plate", 1.0),
    ]
    assert [m["distance"] for m in matched] == sorted(m["distance"] for m in matched)


def test_a_plate_on_several_lists_is_reported_for_each() -> None:
    watchlists = lists(family=FAMILY, neighbours={"plates": [{"plate": "AB12CDE", "label": "next door"}]})
    assert [(m["list"], m["label"]) for m in watch(result("AB12CDE"), watchlists=watchlists)] == [
        ("family", "Anna's car"),
        ("neighbours", "next door"),
    ]


def test_no_match_is_an_empty_array_and_no_watch_list_no_key() -> None:
    assert watch(result("QQ11QQQ")) == []
    assert "watched" not in plate_event(message(result("ab12cde")))


def test_max_matches_keeps_the_best() -> None:
    many = lists(close={"plates": ["AB12CDX", "AB12CDY", "AB12CDE", "AB12CDZ"]})
    matched = watch(result("ab12cde"), settings={"max_matches": 2}, watchlists=many)
    assert [(m["entry"], m["distance"]) for m in matched] == [("AB12CDE", 0.0), ("AB12CDX", 1.0)]


def test_route_lists_and_the_global_lists_it_uses() -> None:
    globals_ = lists(family=FAMILY, blocked={"plates": ["BAD 1"]})
    settings = {"lists": {"visitors": {"plates": ["VIS 1"]}}, "use": ["blocked"]}
    matched = watch(result("ab12cde"), result("bad1"), result("vis1"), settings=settings, watchlists=globals_)
    assert [m["list"] for m in matched] == ["blocked", "visitors"]  # family is not used on this route
    # `use: []`: only the route's own lists, even where global ones exist.
    only_own = {"lists": {"visitors": {"plates": ["VIS 1"]}}, "use": []}
    matched = watch(result("ab12cde"), result("vis1"), settings=only_own, watchlists=globals_)
    assert [m["list"] for m in matched] == ["visitors"]


def test_only_watched_drops_frames_without_a_match() -> None:
    node = WatchlistNode.from_settings({"only_watched": True}, context(lists(family=FAMILY)))
    assert node.process(message(result("qq11qqq"))) is None
    kept = node.process(message(result("qq11qqq"), result("ab12cde")))
    assert kept is not None and len(kept.watched) == 1


def test_a_second_watchlist_node_adds_to_the_first() -> None:
    first = WatchlistNode.from_settings({}, context(lists(family=FAMILY)))
    second = WatchlistNode.from_settings(
        {"lists": {"exact": {"plates": ["AB12CDF"], "tolerance": 0}}}, context()
    )
    out = second.process(first.process(message(result("ab12cdf"))))  # type: ignore[arg-type]
    assert out is not None
    assert [(m["list"], m["distance"]) for m in out.watched] == [("exact", 0.0), ("family", 1.0)]


def test_after_a_split_each_event_carries_only_its_own_matches() -> None:
    node = WatchlistNode.from_settings({}, context(lists(family=FAMILY)))
    watched = node.process(message(result("ab12cde"), result("xy987"), result("qq11qqq")))
    assert watched is not None
    parts = list(SplitNode.from_settings({}, context()).process(watched))
    events = [plate_event(part) for part in parts]
    assert [[m["entry"] for m in event["watched"]] for event in events] == [["AB12 CDE"], ["XY-987"], []]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"use": ["nope"]}, "nodes.watchlist.use: unknown lists ['nope'] (watchlists: family)"),
        ({"lists": {"family": {"plates": ["A1"]}}}, "nodes.watchlist.lists: ['family'] have the names"),
        ({"lists": {"": {"plates": ["A1"]}}}, "non-empty name"),
        ({"lists": {"x": {"patterns": ["("]}}}, "not a regular expression"),
        ({"lists": {"x": {"plates": ["A1"], "colour": "red"}}}, "colour"),
        ({"use": []}, "no lists to match"),
    ],
)
def test_wrong_settings_are_configuration_errors(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        WatchlistNode.from_settings(settings, context(lists(family=FAMILY)))


def test_global_lists_put_a_watchlist_node_in_every_route() -> None:
    route = RouteConfig(topic="cameras/+/image", nodes=["split"])
    names = [node.name for node in Flow.build(route, context(lists(family=FAMILY), route)).nodes]
    assert names == ["decode", "recognize", "validate", "watchlist", "split", "publish"]
    assert "watchlist" not in [node.name for node in Flow.build(route, context({}, route)).nodes]
    # A route that places its own watchlist node gets no second one.
    own = RouteConfig(topic="cameras/+/image", nodes=["split", {"type": "watchlist", "only_watched": True}])
    names = [node.name for node in Flow.build(own, context(lists(family=FAMILY), own)).nodes]
    assert names == ["decode", "recognize", "validate", "split", "watchlist", "publish"]


def test_a_flow_publishes_watched_in_schema_valid_events() -> None:
    route = RouteConfig(topic="cameras/+/image", nodes=[{"type": "filter", "ignore_patterns": ["CAM\\d+"]}])
    reading = {"results": [result("cam01"), result("ab12cdf")]}
    ctx = context(lists(family=FAMILY), route, CannedReader(reading))
    Flow.build(route, ctx).run(message().replace(payload=base64.b64encode(jpeg()), result=None))
    [(topic, event, *_)] = ctx.publisher.sent  # type: ignore[attr-defined]
    schemas.validate("plate-event", event)
    assert topic == "plate-bridge/drive/result"
    assert [r["plate"] for r in event["results"]] == ["ab12cdf"]
    assert [(m["entry"], m["distance"]) for m in event["watched"]] == [("AB12 CDE", 1.0)]


PLATE_TEXT = st.text(alphabet="ABDOQ0IL1T8S5ZG6X-", min_size=0, max_size=9)


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(PLATE_TEXT.filter(lambda text: normalize_plate(text) != ""), min_size=1, max_size=8),
    readings=st.lists(PLATE_TEXT, min_size=1, max_size=4),
    tolerance=st.sampled_from([0, 0.5, 1, 1.5, 2, 3]),
)
def test_matches_are_exactly_the_entries_within_tolerance(
    entries: list[str], readings: list[str], tolerance: float
) -> None:
    # The folded pre-filter must never rule out an entry that plate_distance would match.
    watch_list = WatchList.compile("x", WatchListConfig(plates=entries, tolerance=tolerance))
    found = match_results([watch_list], [result(readings[0], *readings[1:])])
    normals = [normalize_plate(text) for text in readings]
    expected = {
        position
        for position, entry in enumerate(entries)
        if any(normal and plate_distance(normal, normalize_plate(entry)) <= tolerance for normal in normals)
    }
    assert sorted({m["entry"] for m in found}) == sorted({entries[p] for p in expected})
    for match in found:
        assert match["distance"] == min(
            plate_distance(normalize_plate(r), normalize_plate(match["entry"]))
            for r in readings
            if normalize_plate(r)
        )


# --- ignore rules (the filter node) -----------------------------------------------------------------


def kept(settings: dict[str, Any], *plates: str) -> list[str] | None:
    out = FilterNode.from_settings({"drop_empty": False, **settings}, context()).process(
        message(*(result(plate) for plate in plates))
    )
    return None if out is None else [r["plate"] for r in out.result["results"]]


def test_ignore_patterns_drop_overlay_text_and_timestamps() -> None:
    settings = {"ignore_patterns": ["CAM\\d+", "(19|20)\\d\\d", "\\d{1,2}:?\\d{2}"]}
    plates = ("cam01", "CAM-12", "2024", "12:30", "1230", "ab12cde", "ab2024", "camera1")
    # Full matches only: a plate that contains 2024 stays.
    assert kept(settings, *plates) == ["ab12cde", "ab2024", "camera1"]


def test_min_length_counts_characters_without_separators() -> None:
    assert kept({"min_length": 5}, "ab-12", "a b c d", "ab12c", "x1") == ["ab12c"]


def test_min_score_drops_weak_readings() -> None:
    out = FilterNode.from_settings({"min_score": 0.8}, context()).process(
        message(result("ab12cde", score=0.9), result("xy987", score=0.4))
    )
    assert out is not None and [r["plate"] for r in out.result["results"]] == ["ab12cde"]


def test_a_frame_with_only_ignored_plates_is_dropped() -> None:
    node = FilterNode.from_settings({"ignore_patterns": ["CAM\\d+"]}, context())
    assert node.process(message(result("cam01"))) is None


def test_ignore_rules_are_checked() -> None:
    with pytest.raises(ConfigError, match="not a regular expression"):
        FilterNode.from_settings({"ignore_patterns": ["("]}, context())
    with pytest.raises(ConfigError, match=r"nodes\.filter\.min_length"):
        FilterNode.from_settings({"min_length": -1}, context())


# --- across a real broker ---------------------------------------------------------------------------


def test_a_global_watch_list_marks_the_published_event(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    frame = jpeg(text="AB12CDF")
    emulator.set_response(frame, {"processing_time": 5.0, "results": [result("ab12cdf", "ab12cde")]})
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "client_id": "watchlist-test"},
        reader={"url": emulator.url, "max_calls_per_second": None},
        routes=[{"topic": "cameras/+/image", "repeat_window": 0}],
        watchlists={"family": FAMILY, "blocked": {"plates": ["ZZ99ZZZ"]}},
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("cameras/gate/image", frame)
        [event] = collector.wait_for("plate-bridge/gate/result")
    finally:
        bridge.stop(deadline=5)
    schemas.validate("plate-event", event)
    assert event["watched"] == [
        {
            "list": "family",
            "entry": "AB12 CDE",
            "label": "Anna's car",
            "distance": 0.0,
            "plate": "ab12cdf",
            "candidate": "ab12cde",
            "matched": "candidate",
        }
    ]


def test_the_guide_example_runs_as_written() -> None:
    guide_path = Path(__file__).resolve().parents[1] / "docs" / "guides" / "watch-lists.md"
    guide = guide_path.read_text(encoding="utf-8")
    block = guide[guide.index("# Watch lists") :].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(**yaml.safe_load(block), reader={"url": "local"})
    flows = [Flow.build(route, context(config.watchlists, route)) for route in config.routes]
    assert [[node.name for node in flow.nodes] for flow in flows] == [
        ["decode", "recognize", "validate", "watchlist", "filter", "publish"],
        ["decode", "recognize", "validate", "split", "watchlist", "publish"],
    ]
    gate_lists = next(node for node in flows[1].nodes if isinstance(node, WatchlistNode)).lists
    assert [watch_list.name for watch_list in gate_lists] == ["family", "deliveries"]


# --- strict lists: access control ---------------------------------------------------------------------

GATE = {"plates": [{"plate": "AB12 CDE", "label": "Anna's car"}]}


def test_a_strict_list_refuses_a_one_character_misread_that_a_fuzzy_list_accepts() -> None:
    both = lists(notify=GATE, gate={**GATE, "strict": True})
    # One character off (F for E), and a look-alike (8 for B) that costs only half on a fuzzy list.
    for plate in ("AB12CDF", "A812CDE"):
        matched = {item["list"] for item in watch(result(plate), watchlists=both)}
        assert matched == {"notify"}, plate
    exact = watch(result("ab12-cde"), watchlists=both)  # case and separators are not the plate
    assert {item["list"] for item in exact} == {"notify", "gate"}


def test_a_strict_list_refuses_a_match_by_a_candidate_or_a_low_score() -> None:
    both = lists(notify=GATE, gate={**GATE, "strict": True})
    by_candidate = watch(result("ZZ12CXX", "AB12CDE"), watchlists=both)
    assert [(item["list"], item["matched"]) for item in by_candidate] == [("notify", "candidate")]
    unsure = watch(result("AB12CDE", score=0.6), watchlists=both)
    assert [item["list"] for item in unsure] == ["notify"]
    assert [
        item["list"]
        for item in watch(
            result("AB12CDE", score=0.6), watchlists=lists(gate={**GATE, "strict": True, "min_score": 0.5})
        )
    ] == ["gate"]


def test_a_strict_list_ignores_a_reading_reused_without_proof_of_its_plate() -> None:
    node = WatchlistNode.from_settings({}, context(lists(notify=GATE, gate={**GATE, "strict": True})))
    for reason, expected in (
        ("interval", {"notify"}),
        ("similar", {"notify", "gate"}),
        (None, {"notify", "gate"}),
    ):
        msg = message(result("AB12CDE"))
        if reason:
            msg = msg.replace(reused=Reuse(reason))
        out = node.process(msg)
        assert out is not None
        assert {item["list"] for item in out.watched} == expected, reason


def test_a_strict_list_with_a_tolerance_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="strict list matches exactly"):
        WatchListConfig.model_validate({**GATE, "strict": True, "tolerance": 1})
    assert WatchListConfig.model_validate({**GATE, "strict": True}).tolerance == 0

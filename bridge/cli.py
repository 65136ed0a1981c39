"""plate-bridge reads the license plates of camera frames that arrive over MQTT and publishes what it
read as MQTT events (Plate Recognizer cloud, an on-premise SDK, or its own offline reader).

Start with `plate-bridge demo` (no broker, no account, no network needed), then
`plate-bridge check-config examples/config.yaml` and `plate-bridge run --config examples/config.yaml`.
"""

# (The docstring above is `plate-bridge --help`. This module: arguments and exit codes over the
# library, nothing more.)

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bridge import __version__
from bridge.config import (
    LOCAL_READER,
    TOKEN_ENV,
    BridgeConfig,
    ReaderConfig,
    format_problems,
    load_config,
)
from bridge.errors import BridgeError, ConfigError, PayloadNotImage
from bridge.images import sniff_format
from bridge.regions import normalize_regions

SERVE_TOKEN_ENV = "PLATE_BRIDGE_SERVE_TOKEN"
# What `reader.url: local` imports (the [local] extra), looked up without importing it.
LOCAL_ENGINE_MODULES = ("rapidocr", "onnxruntime", "onnx", "cv2")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CSV_COLUMNS = [
    "filename",
    "plate",
    "score",
    "dscore",
    "region",
    "vehicle_type",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("bridge")


def _image_paths(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{name}: no such file or folder")
    if not found:
        raise ConfigError(f"no .jpg, .jpeg or .png image under {', '.join(paths)}")
    return found


def _progress(total: int, what: str) -> tqdm:
    """A progress bar on stderr (tqdm) when it is a terminal and there is more than one item: it counts
    an item when it is finished, so it shows N/N when the last one ends."""
    return tqdm(total=total, unit=what, file=sys.stderr, disable=None if total > 1 else True, leave=True)


def _csv_rows(path: Path, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per plate, and one row with an empty plate for an image without any: every image
    read appears in the CSV."""
    results = body.get("results") or []
    if not results:
        yield {"filename": str(path)}
    for result in results:
        box = result.get("box", {})
        yield {
            "filename": str(path),
            "plate": result.get("plate"),
            "score": result.get("score"),
            "dscore": result.get("dscore"),
            "region": (result.get("region") or {}).get("code"),
            "vehicle_type": (result.get("vehicle") or {}).get("type"),
            **{key: box.get(key) for key in ("xmin", "ymin", "xmax", "ymax")},
        }


def _reader_settings(url: str | None, token: str | None, **settings: Any) -> ReaderConfig:
    """The reader a command's --url/--token ask for, chosen as the configuration chooses it: no URL
    means the cloud with a token, else the offline reader (said on stderr)."""
    try:
        reader = ReaderConfig(url=url, token=token, **settings)
    except ValidationError as exc:
        problems = [problem.removeprefix("configuration: ") for problem in format_problems(exc)]
        raise ConfigError(problems[0], problems=problems) from None
    if reader.default_note:
        print(f"plate-bridge: {reader.default_note}", file=sys.stderr)
    return reader


def _quiet_one_shot(args: argparse.Namespace) -> None:
    """A one-shot command's output is its result: the bridge's INFO narration (which reader, over
    which transport) is for -v."""
    if not args.verbose:
        logging.getLogger("bridge").setLevel(logging.WARNING)


def _split_commas(value: str) -> list[str]:
    """`--regions gb,fr` as well as `--regions gb --regions fr`."""
    return [code.strip() for code in value.split(",") if code.strip()]


def cmd_recognize(args: argparse.Namespace) -> int:
    from bridge.service import build_reader

    try:
        config = json.loads(args.config) if args.config else None
    except ValueError:
        raise ConfigError("--config is not JSON text") from None
    if config is not None and not isinstance(config, dict):
        raise ConfigError("--config must be a JSON object")
    try:
        regions = normalize_regions(args.regions)
    except ValueError as exc:
        raise ConfigError(f"--regions: {exc}") from None
    paths = _image_paths(args.paths)
    _quiet_one_shot(args)
    settings = _reader_settings(
        args.url, args.token or os.environ.get(TOKEN_ENV) or None, timeout=args.timeout
    )
    reader = build_reader(settings, validate=True)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    writer = csv.DictWriter(out, CSV_COLUMNS) if args.format == "csv" else None
    failed = 0
    progress = _progress(len(paths), "image")
    # Rows go out with the bar cleared first, so a row never shares the bar's line; log lines and
    # messages go through tqdm for the same reason.
    writing = progress.external_write_mode if out is sys.stdout else contextlib.nullcontext
    try:
        with logging_redirect_tqdm():
            if writer:
                with writing():
                    writer.writeheader()
            for path in paths:
                try:
                    body = _recognize_one(reader, path, args, regions, config)
                except BridgeError as error:
                    if error.code in ("reader_forbidden", "reader_unavailable"):
                        raise  # every other image would fail the same way
                    failed += 1
                    progress.write(f"{path}: {error.code}: {error}", file=sys.stderr)
                else:
                    with writing():
                        if writer:
                            writer.writerows(_csv_rows(path, body))
                        else:
                            out.write(json.dumps({"path": str(path), **body}) + "\n")
                        out.flush()
                progress.update()  # once the image is done, so N/N shows when the last one ends
    finally:
        progress.close()
        if args.output:
            out.close()
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be read", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _recognize_one(
    reader: Any, path: Path, args: argparse.Namespace, regions: Sequence[str], config: dict[str, Any] | None
) -> dict[str, Any]:
    from bridge.nodes.decode import describe

    image = path.read_bytes()
    if sniff_format(image) is None:
        # Checked before any call: the reader would refuse it too, after charging for it.
        raise PayloadNotImage(f"not a JPEG or PNG image: it is {describe(image)}")
    body: dict[str, Any] = reader.read(
        image,
        regions=regions,
        camera_id=args.camera_id,
        mmc=True if args.mmc else None,
        config=config,
        filename=path.name,
    )
    return body


def check_buildable(config: BridgeConfig) -> None:
    """What `run` builds before it connects, checked without a broker: every route's flow with the
    builder `run` uses (Flow.build), so an unknown node, a misspelt node setting or a plugin that does
    not load fails here with the message `run` would give; and the offline reader's extra when the
    configuration reads with it."""
    from bridge.flows import Flow
    from bridge.nodes import NodeContext

    class _Nowhere:
        def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
            raise RuntimeError("check-config publishes nothing")

    for route in config.routes:
        Flow.build(route, NodeContext(route=route, base_topic=config.mqtt.base_topic, publisher=_Nowhere()))
    missing = [name for name in LOCAL_ENGINE_MODULES if importlib.util.find_spec(name) is None]
    if config.reader.is_local and missing:
        why = " (chosen because no token is set)" if config.reader.default_note else ""
        cloud = f", or set {TOKEN_ENV} for the Plate Recognizer cloud" if why else ""
        raise ConfigError(
            f"reader.url: local{why}: the offline reader is not installed ({', '.join(missing)} missing): "
            f"pip install 'plate-bridge[local]'{cloud}"
        )


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_buildable(config)
    if config.reader.default_note:
        print(f"plate-bridge: {config.reader.default_note}", file=sys.stderr)
    yaml.safe_dump(config.masked(), sys.stdout, sort_keys=False)
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM; installed before start-up so an early signal still stops
    the bridge cleanly (it publishes `offline`) instead of killing it."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.service import Bridge
    from bridge.tuning import limit_malloc_arenas, pin_to_cpu

    limit_malloc_arenas()
    config = load_config(args.config)
    check_buildable(config)  # before the embedded broker starts: it fails as check-config says
    if not args.verbose:  # -v wins over the configured level
        logging.getLogger().setLevel(config.log_level)
    if config.reader.default_note:
        log.info("%s", config.reader.default_note)
    cpu = pin_to_cpu(config.cpu_affinity, reader_is_local=config.reader.is_local)
    if cpu is not None:
        log.info("running on CPU %s (cpu_affinity: %s)", cpu, config.cpu_affinity)
    stop = _stop_on_signals()
    bridge = Bridge(config)
    bridge.start()
    host, port = bridge.broker_address
    print(
        f"plate-bridge {__version__}: broker {host}:{port}, {len(config.routes)} route(s); Ctrl+C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        queued = bridge.health()["queued"]
        print(
            f"plate-bridge: stopping: finishing {queued} queued frame(s) and the reads in progress "
            f"(at most 10 s), then publishing offline and disconnecting from {host}:{port}",
            file=sys.stderr,
            flush=True,
        )
        bridge.stop()
        stats = bridge.stats
        print(
            f"plate-bridge: stopped at {time.strftime('%H:%M:%S')}: {stats.received} frame(s) received, "
            f"{stats.processed} read, {stats.dropped} dropped",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    """A camera simulator: publish image files on a topic, as raw bytes, base64 or a JSON envelope."""
    import base64

    from bridge.mqtt import SimpleClient

    paths = _image_paths(args.images)
    client = SimpleClient(args.host, args.port, client_id=f"plate-bridge-publish-{os.getpid()}")
    client.connect()
    try:
        for _ in range(args.repeat):
            for path in paths:
                data = path.read_bytes()
                if args.format == "base64":
                    payload: bytes = base64.b64encode(data)
                elif args.format == "json":
                    envelope: dict[str, Any] = {"image": base64.b64encode(data).decode()}
                    if args.camera_id:
                        envelope["camera_id"] = args.camera_id
                    payload = json.dumps(envelope).encode()
                else:
                    payload = data
                client.publish(args.topic, payload, qos=args.qos)
                print(f"published {path} ({len(payload):,} bytes) on {args.topic}", file=sys.stderr)
                if args.interval:
                    time.sleep(args.interval)
    finally:
        client.close()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from bridge.server import serve
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    serve(args.host, args.port, _serve_token(args), engine_threads=args.threads)
    return EXIT_OK


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token `serve` requires: --token-file, else --token (which shows in `ps`), else
    $PLATE_BRIDGE_SERVE_TOKEN, else $PLATE_RECOGNIZER_TOKEN; None: no token required."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"--token-file {args.token_file}: the file is empty")
        return token
    return args.token or os.environ.get(SERVE_TOKEN_ENV) or os.environ.get(TOKEN_ENV) or None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bridge.evaluate import evaluate, naive_baseline
    from bridge.service import build_reader

    try:
        regions = normalize_regions(args.regions)
    except ValueError as exc:
        raise ConfigError(f"--regions: {exc}") from None
    regions_by_set: dict[str, tuple[str, ...]] = {}
    for spec in args.set_regions:
        name, equals, codes = spec.partition("=")
        if not equals or not name:
            raise ConfigError(f"--set-regions {spec!r}: expected SET=CODE[,CODE...], e.g. us=us")
        try:
            regions_by_set[name] = normalize_regions(codes.split(","))
        except ValueError as exc:
            raise ConfigError(f"--set-regions {spec!r}: {exc}") from None
    labels = Path(args.labels)
    if not labels.is_file():
        raise ConfigError(f"{labels}: no such file")
    _quiet_one_shot(args)
    settings = _reader_settings(args.url, args.token or os.environ.get(TOKEN_ENV) or None)
    reader = build_reader(settings, validate=True)

    def read(image: bytes, codes: Sequence[str]) -> dict[str, Any]:
        return reader.read(image, regions=codes)

    if args.calibrate:
        from bridge import calibrate

        try:
            with logging_redirect_tqdm():
                return calibrate.run(args, read, regions, regions_by_set)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    try:
        with logging_redirect_tqdm():
            report = evaluate(
                labels,
                read,
                regions,
                limit=args.limit,
                regions_by_set=regions_by_set,
                progress=True,
                baseline=naive_baseline() if args.baseline else None,
            )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.as_table())
    return EXIT_OK


# Inside a built wheel (pyproject force-includes examples/images as bridge/_examples/images), else
# the source tree: found like bridge/schemas.py finds the schemas.
_PACKAGED_IMAGES = Path(__file__).parent / "_examples" / "images"
_SOURCE_IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"
DEMO_IMAGES = _PACKAGED_IMAGES if _PACKAGED_IMAGES.is_dir() else _SOURCE_IMAGES


def _demo_reader(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's reader: --url when given, else the cloud when a token is set, else the offline engine."""
    token = args.token or os.environ.get(TOKEN_ENV)
    if args.url:
        return {"url": args.url, "token": token, "max_calls_per_second": None}
    if token:
        return {"token": token, "max_calls_per_second": 1}
    if all(importlib.util.find_spec(name) is not None for name in LOCAL_ENGINE_MODULES):
        print(
            f"plate-bridge: no token: plates are read offline (--url local); set {TOKEN_ENV} for the "
            "Plate Recognizer cloud",
            file=sys.stderr,
        )
        return {"url": LOCAL_READER, "max_calls_per_second": None, "concurrency": 1}
    raise ConfigError(
        f"the demo needs a plate reader: install the offline engine (pip install 'plate-bridge[local]'), "
        f"set {TOKEN_ENV} for the Plate Recognizer cloud, or pass --url with an on-premise SDK URL "
        "(e.g. http://localhost:8080/v1/plate-reader/)"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Embedded broker + bridge + camera simulator: publish the example images, print plate events."""
    import base64

    from bridge.mqtt import InboundMessage, SimpleClient
    from bridge.service import Bridge

    reader = _demo_reader(args)
    paths = _image_paths([args.images])
    config = load_config(
        mqtt={"host": "embedded", "port": args.port},
        reader=reader,
        routes=[{"topic": "cameras/+/image", "regions": args.regions}],
    )
    bridge = Bridge(config)
    bridge.start()
    host, port = bridge.broker_address
    print(f"embedded MQTT broker on {host}:{port}; try: mosquitto_sub -p {port} -t 'plate-bridge/#' -v")
    events: list[tuple[str, dict[str, Any]]] = []
    done = threading.Condition()

    def on_event(message: InboundMessage) -> None:
        event = json.loads(message.payload)
        with done:
            events.append((message.topic, event))
            done.notify_all()
        if message.topic.endswith("/result"):
            plates = ", ".join(f"{r['plate']} ({r['score']:.2f})" for r in event["results"]) or "no plate"
            print(f"{message.topic}: {plates}")
        else:
            print(f"{message.topic}: {event['code']}: {event['message']}")
        print(f"  {json.dumps(event)}")

    camera = SimpleClient(host, port, client_id="plate-bridge-demo-camera", on_message=on_event)
    camera.connect()
    camera.subscribe([("plate-bridge/+/result", 1), ("plate-bridge/+/error", 1)])
    try:
        for path in paths:
            topic = f"cameras/{path.stem.replace('/', '_')}/image"
            print(f"publishing {path.name} on {topic}")
            camera.publish(topic, base64.b64encode(path.read_bytes()), qos=1)
        with done:
            done.wait_for(lambda: len(events) >= len(paths), timeout=args.timeout)
    finally:
        camera.close()
        bridge.stop()
    errors = sum(1 for topic, _ in events if topic.endswith("/error"))
    print(f"{len(paths)} frame(s) published, {len(events) - errors} plate event(s), {errors} error event(s)")
    return EXIT_OK if len(events) >= len(paths) and not errors else EXIT_FAILED


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in --help (unless its help already says it, or there is none), and the
    description's line breaks kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plate-bridge", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"plate-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        # -v after the command too (`plate-bridge run -v`); SUPPRESS keeps a -v given before it.
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages"
        )
        return sub

    def regions_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--regions",
            action="extend",
            type=_split_commas,
            default=[],
            metavar="CODE[,CODE...]",
            help="region codes (gb, us-ca, ...): a comma list or repeated",
        )

    reader_url = (
        "'local' (the offline reader), an on-premise SDK URL or the cloud URL (default: the cloud "
        "when a token is set, else 'local')"
    )
    token_help = f"API token (default: ${TOKEN_ENV})"

    recognize = command("recognize", "read the plates of image files once")
    recognize.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    regions_option(recognize)
    recognize.add_argument("--camera-id", help="camera id sent with each image")
    recognize.add_argument("--mmc", action="store_true", help="ask for make, model and colour")
    recognize.add_argument("--config", metavar="JSON", help="engine config (SDK), a JSON object")
    recognize.add_argument("--url", help=reader_url)
    recognize.add_argument("--token", help=token_help)
    recognize.add_argument("--timeout", type=float, default=30.0, help="seconds per reader call")
    recognize.add_argument("--format", choices=["json", "csv"], default="json", help="JSON lines or CSV")
    recognize.add_argument("-o", "--output", metavar="FILE", help="write there instead of stdout")
    recognize.set_defaults(handler=cmd_recognize)

    run = command("run", "run the bridge until SIGINT/SIGTERM")
    run.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in defaults)")
    run.set_defaults(handler=cmd_run)

    check = command("check-config", "check a configuration as `run` would and print it, secrets masked")
    check.add_argument("config", metavar="FILE")
    check.set_defaults(handler=cmd_check_config)

    publish = command("publish", "camera simulator: publish images on a topic")
    publish.add_argument("images", nargs="+", metavar="IMAGE")
    publish.add_argument("--topic", required=True, help="e.g. cameras/gate/image")
    publish.add_argument("--host", default="127.0.0.1", help="broker host")
    publish.add_argument("--port", type=int, default=1883, help="broker port")
    publish.add_argument("--format", choices=["raw", "base64", "json"], default="base64", help="payload")
    publish.add_argument("--camera-id", help="camera_id of the JSON envelope")
    publish.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="MQTT QoS")
    publish.add_argument("--repeat", type=int, default=1, help="publish the images this many times")
    publish.add_argument("--interval", type=float, default=0.0, help="seconds between frames")
    publish.set_defaults(handler=cmd_publish)

    serve = command("serve", "a Plate-Recognizer-compatible API over the offline engine")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="the next free port is used when taken")
    serve.add_argument(
        "--token",
        help=f"require this token (Authorization: Token ...); visible to other users in `ps`: prefer "
        f"--token-file or ${SERVE_TOKEN_ENV} (${TOKEN_ENV} is used when none is given)",
    )
    serve.add_argument("--token-file", metavar="FILE", help="read the required token from this file")
    serve.add_argument("--threads", type=int, default=1, help="images read at the same time")
    serve.set_defaults(handler=cmd_serve)

    evaluate = command("evaluate", "accuracy and latency of a reader on labelled images")
    evaluate.add_argument(
        "labels",
        metavar="LABELS.tsv",
        help="TSV with a header: image, plate[, set][, x, y, w, h (the plate's box)]",
    )
    regions_option(evaluate)
    evaluate.add_argument(
        "--set-regions", action="append", default=[], metavar="SET=CODES", help="hints for one set: us=us"
    )
    evaluate.add_argument(
        "--url",
        default=LOCAL_READER,
        help="'local' (the offline reader), an on-premise SDK URL or the cloud URL (with a token); "
        "local even when a token is set, so an evaluation never spends paid calls unasked",
    )
    evaluate.add_argument("--token", help=token_help)
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument(
        "--baseline",
        action="store_true",
        help="also run a naive full-frame PP-OCR reader on the same images and compare (needs [local])",
    )
    from bridge import calibrate, compare

    calibrate.add_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    compare_parser = command("compare", "replay frames through the offline and the paid reader")
    compare.add_arguments(compare_parser)
    compare_parser.set_defaults(handler=compare.run)

    demo = command("demo", "embedded broker + bridge + camera simulator, printing events")
    demo.add_argument("--images", default=str(DEMO_IMAGES), help="folder of images the camera publishes")
    demo.add_argument("--url", help=reader_url)
    demo.add_argument("--token", help=token_help)
    regions_option(demo)
    demo.add_argument("--port", type=int, default=1883, help="broker port; the next free one if taken")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the events")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded broker's libraries narrate every state change at INFO; keep their warnings only.
    for chatty in ("amqtt", "transitions"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # urllib3's DEBUG lines quote each request's path and query, where webhook and Frigate URLs keep
    # their tokens; what leaves the process shows a URL as scheme://host:port only (bridge/redact.py).
    logging.getLogger("urllib3").setLevel(logging.INFO)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"plate-bridge: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as error:
        print(f"plate-bridge: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output stopped (`| head`): not our error; keep Python from printing one
        # when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

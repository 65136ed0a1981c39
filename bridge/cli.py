"""The `plate-bridge` command: arguments and exit codes over the library, nothing more."""

from __future__ import annotations

import argparse
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
from typing import IO, Any

import yaml

from bridge import __version__
from bridge.config import LOCAL_READER, TOKEN_ENV, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.regions import normalize_regions

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


def _progress(items: list[Path], stream: IO[str]) -> Iterator[Path]:
    """A one-line progress bar on a terminal for more than one image; nothing when piped."""
    show = len(items) > 1 and stream.isatty()
    for index, item in enumerate(items, 1):
        if show:
            done = int(30 * index / len(items))
            stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {index}/{len(items)} {item.name[:40]:<40}")
            stream.flush()
        yield item
    if show:
        stream.write("\n")


def _csv_rows(path: Path, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for result in body.get("results", []):
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


def cmd_recognize(args: argparse.Namespace) -> int:
    from bridge.reader import CLOUD_URL, PlateReader

    token = args.token or os.environ.get(TOKEN_ENV) or None
    url = args.url or CLOUD_URL
    if "api.platerecognizer.com" in url and not token:
        raise ConfigError(
            f"the cloud API needs a token: pass --token or set {TOKEN_ENV} (or --url for an SDK)"
        )
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
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    failed = 0
    try:
        writer = csv.DictWriter(out, CSV_COLUMNS) if args.format == "csv" else None
        if writer:
            writer.writeheader()
        with PlateReader(url, token=token, timeout=args.timeout) as reader:
            for path in _progress(paths, sys.stderr):
                try:
                    body = reader.read(
                        path.read_bytes(),
                        regions=regions,
                        camera_id=args.camera_id,
                        mmc=True if args.mmc else None,
                        config=config,
                        filename=path.name,
                    )
                except BridgeError as error:
                    if error.code in ("reader_forbidden", "reader_unavailable"):
                        raise  # every other image would fail the same way
                    failed += 1
                    print(f"{path}: {error.code}: {error}", file=sys.stderr)
                    continue
                if writer:
                    writer.writerows(_csv_rows(path, body))
                else:
                    out.write(json.dumps({"path": str(path), **body}) + "\n")
                out.flush()
    finally:
        if args.output:
            out.close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be read", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    yaml.safe_dump(config.masked(), sys.stdout, sort_keys=False)
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM; installed before start-up so an early signal still stops
    the bridge cleanly (it publishes `offline`) instead of killing it."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); with a worker
    pool handling ~100 kB frames, memory freed in one arena is not reused by another and RSS creeps
    up. Two arenas, as MALLOC_ARENA_MAX=2 would set, before any worker starts."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_arena_max = -8  # from glibc's malloc.h
        libc.mallopt(m_arena_max, arenas)
    except (OSError, AttributeError):
        pass  # not glibc (musl, ...): nothing to tune


def pin_to_cpu(setting: str | int, *, reader_is_local: bool) -> int | None:
    """Confine this process to one CPU as `cpu_affinity` asks; return the CPU, or None if not pinned.

    Why: only one of the bridge's threads runs Python at a time (the GIL), and every frame passes it
    between the MQTT thread and a worker several times. When those threads sit on different cores,
    each hand-off is a cross-core wake-up: measured in benchmarks/ on 2 cores, pinned to one the bridge
    spent 0.39-0.42 ms of CPU per frame instead of 0.57-0.66, and read 1.5x the frames per second.
    The offline engine is left on every CPU: its inference runs in C on all of them.
    """
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return None  # not Linux (macOS, Windows): the OS has no such call
    allowed = sorted(os.sched_getaffinity(0))
    if setting == "auto":
        if reader_is_local or len(allowed) < 2:
            return None
        cpu = allowed[-1]  # CPU 0 usually takes more of the machine's interrupts
    elif setting in allowed:
        cpu = int(setting)
    else:
        raise ConfigError(f"cpu_affinity: {setting}: this process may only run on CPUs {allowed}")
    # Every thread there is so far (normally only this one); threads started later inherit it.
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for thread in threads:
        os.sched_setaffinity(thread, {cpu})
    return cpu


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.service import Bridge

    _limit_malloc_arenas()
    config = load_config(args.config)
    if not args.verbose:  # -v wins over the configured level
        logging.getLogger().setLevel(config.log_level)
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
        bridge.stop()
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
    serve(args.host, args.port, args.token or os.environ.get(TOKEN_ENV) or None, engine_threads=args.threads)
    return EXIT_OK


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
    settings = load_config(reader={"url": args.url, "token": args.token or os.environ.get(TOKEN_ENV)}).reader
    reader = build_reader(settings, validate=True)

    def read(image: bytes, codes: Sequence[str]) -> dict[str, Any]:
        return reader.read(image, regions=codes)

    try:
        report = evaluate(
            labels,
            read,
            regions,
            limit=args.limit,
            regions_by_set=regions_by_set,
            baseline=naive_baseline() if args.baseline else None,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.as_table())
    return EXIT_OK


DEMO_IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _demo_reader(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's reader: --url when given, else the cloud when a token is set, else the offline engine."""
    token = args.token or os.environ.get(TOKEN_ENV)
    if args.url:
        return {"url": args.url, "token": token, "max_calls_per_second": None}
    if token:
        return {"token": token, "max_calls_per_second": 1}
    if importlib.util.find_spec("onnxruntime") is not None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plate-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"plate-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    recognize = commands.add_parser("recognize", help="read the plates of image files once")
    recognize.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    recognize.add_argument(
        "--regions", action="append", default=[], metavar="CODE", help="region code; repeat"
    )
    recognize.add_argument("--camera-id")
    recognize.add_argument("--mmc", action="store_true", help="ask for make, model and colour")
    recognize.add_argument("--config", metavar="JSON", help="engine config (SDK), a JSON object")
    recognize.add_argument("--url", help="plate-reader URL (default: the cloud API)")
    recognize.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    recognize.add_argument("--timeout", type=float, default=30.0)
    recognize.add_argument("--format", choices=["json", "csv"], default="json")
    recognize.add_argument("-o", "--output", metavar="FILE")
    recognize.set_defaults(handler=cmd_recognize)

    run = commands.add_parser("run", help="run the bridge until SIGINT/SIGTERM")
    run.add_argument("--config", metavar="FILE", help="YAML configuration")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check-config", help="print the effective configuration, secrets masked")
    check.add_argument("config", metavar="FILE")
    check.set_defaults(handler=cmd_check_config)

    publish = commands.add_parser("publish", help="camera simulator: publish images on a topic")
    publish.add_argument("images", nargs="+", metavar="IMAGE")
    publish.add_argument("--topic", required=True)
    publish.add_argument("--host", default="127.0.0.1")
    publish.add_argument("--port", type=int, default=1883)
    publish.add_argument("--format", choices=["raw", "base64", "json"], default="base64")
    publish.add_argument("--camera-id")
    publish.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    publish.add_argument("--repeat", type=int, default=1)
    publish.add_argument("--interval", type=float, default=0.0, help="seconds between frames")
    publish.set_defaults(handler=cmd_publish)

    serve = commands.add_parser("serve", help="a Plate-Recognizer-compatible API over the offline engine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="the next free port is used when taken")
    serve.add_argument("--token", help="require this token (Authorization: Token ...)")
    serve.add_argument("--threads", type=int, default=1, help="images read at the same time")
    serve.set_defaults(handler=cmd_serve)

    evaluate = commands.add_parser("evaluate", help="accuracy and latency of a reader on labelled images")
    evaluate.add_argument("labels", metavar="LABELS.tsv", help="TSV with a header: image, plate[, set]")
    evaluate.add_argument("--regions", action="append", default=[], metavar="CODE")
    evaluate.add_argument(
        "--set-regions", action="append", default=[], metavar="SET=CODES", help="hints for one set: us=us"
    )
    evaluate.add_argument("--url", default="local", help="'local' (default), the cloud or an SDK URL")
    evaluate.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument(
        "--baseline",
        action="store_true",
        help="also run a naive full-frame PP-OCR reader on the same images and compare (needs [local])",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    demo = commands.add_parser("demo", help="embedded broker + bridge + camera simulator, printing events")
    demo.add_argument("--images", default=str(DEMO_IMAGES), help="folder of images the camera publishes")
    demo.add_argument("--url", help="an SDK plate-reader URL (default: the cloud, with the token)")
    demo.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    demo.add_argument("--regions", action="append", default=[], metavar="CODE")
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

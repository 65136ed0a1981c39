"""`plate-bridge demo`: an embedded broker, the bridge and a camera simulator; prints the events."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from bridge.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    LOCAL_ENGINE_MODULES,
    READER_URL_HELP,
    TOKEN_HELP,
    image_paths,
    regions_option,
)
from bridge.config import LOCAL_READER, TOKEN_ENV, load_config
from bridge.core.errors import ConfigError

NAME = "demo"
HELP = "embedded broker + bridge + camera simulator, printing events"

# Inside a built wheel (pyproject force-includes examples/images as bridge/_examples/images), else
# the source tree: found like bridge/core/schemas.py finds the schemas.
_PACKAGED_IMAGES = Path(__file__).parents[1] / "_examples" / "images"
_SOURCE_IMAGES = Path(__file__).resolve().parents[2] / "examples" / "images"
DEMO_IMAGES = _PACKAGED_IMAGES if _PACKAGED_IMAGES.is_dir() else _SOURCE_IMAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", default=str(DEMO_IMAGES), help="folder of images the camera publishes")
    parser.add_argument("--url", help=READER_URL_HELP)
    parser.add_argument("--token", help=TOKEN_HELP)
    regions_option(parser)
    parser.add_argument("--port", type=int, default=1883, help="broker port; the next free one if taken")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the events")


def handle(args: argparse.Namespace) -> int:
    """Embedded broker + bridge + camera simulator: publish the example images, print plate events."""
    import base64

    from bridge.mqtt import InboundMessage, SimpleClient
    from bridge.service import Bridge

    reader = _demo_reader(args)
    paths = image_paths([args.images])
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

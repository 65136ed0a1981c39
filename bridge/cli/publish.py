"""`plate-bridge publish`: a camera simulator that publishes image files on a topic, as raw bytes,
base64 or a JSON envelope."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from bridge.cli.common import EXIT_OK, image_paths

NAME = "publish"
HELP = "camera simulator: publish images on a topic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--topic", required=True, help="e.g. cameras/gate/image")
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=1883, help="broker port")
    parser.add_argument("--format", choices=["raw", "base64", "json"], default="base64", help="payload")
    parser.add_argument("--camera-id", help="camera_id of the JSON envelope")
    parser.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="MQTT QoS")
    parser.add_argument("--repeat", type=int, default=1, help="publish the images this many times")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between frames")


def handle(args: argparse.Namespace) -> int:
    import base64

    from bridge.mqtt import SimpleClient

    paths = image_paths(args.images)
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

"""The naive relay: the smallest honest MQTT → Plate Recognizer → MQTT program, to compare the bridge with."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import queue
import signal
import sys
import threading
from typing import Any

import paho.mqtt.client as paho
import requests
from paho.mqtt.enums import CallbackAPIVersion

WORKERS = 8
QUEUED_FRAMES = 1000  # frames waiting for a worker; beyond that paho's thread waits (backpressure)
STOP_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--url", required=True, help="plate-reader URL")
    parser.add_argument("--topic", default="cameras/+/image", help="frames: cameras/<camera>/image")
    parser.add_argument("--base-topic", default="plate-bridge")
    args = parser.parse_args(argv)

    frames: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUED_FRAMES)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-relay-{os.getpid()}")
    client.on_connect = lambda client, *_: client.subscribe(args.topic, qos=1)
    client.on_message = lambda _client, _userdata, message: frames.put((message.topic, message.payload))

    def work() -> None:
        session = requests.Session()  # one per thread: a Session is not documented as thread-safe
        while (item := frames.get()) is not None:
            topic, payload = item
            camera = topic.split("/")[1]
            upload = (f"{camera}.jpg", base64.b64decode(payload), "image/jpeg")
            try:
                reply = session.post(args.url, files={"upload": upload}, timeout=15)
                kind, body = ("result" if reply.ok else "error"), reply.content
            except requests.RequestException as exc:
                kind, body = "error", json.dumps({"error": type(exc).__name__}).encode()
            client.publish(f"{args.base_topic}/{camera}/{kind}", body, qos=1)

    stop = threading.Event()

    def request_stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Daemon threads: a worker stuck on a call cannot keep the process alive past STOP_SECONDS.
    workers = [threading.Thread(target=work, name=f"relay-{index}", daemon=True) for index in range(WORKERS)]
    for worker in workers:
        worker.start()
    client.connect(args.host, args.port)
    client.loop_start()
    print(f"naive relay: {args.topic} on {args.host}:{args.port} -> {args.url}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    client.loop_stop()  # no more frames come in, so the workers' queue only shrinks
    for _ in workers:
        with contextlib.suppress(queue.Full):
            frames.put(None, timeout=STOP_SECONDS)
    for worker in workers:
        worker.join(STOP_SECONDS)
    client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())

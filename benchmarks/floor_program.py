"""The floor: what one frame costs in Python with the bridge's own libraries and nothing else.

One thread does it all, with no hand-off: paho's loop on the main thread receives a frame, decodes its
base64 (pybase64), POSTs it with one libcurl handle (pycurl, the body handed over with POSTFIELDS, no
callback) and publishes the reader's answer as it came. No validation, no queue, no flow, no reuse:
the CPU per frame it takes (`python -m benchmarks.run --no-reuse --systems bridge,floor,nodered
--scenarios flat_out`) is what any design built on paho and libcurl pays before doing any of the
bridge's work, the floor under the bridge's own figure. Not a program to use: one frame at a time,
and no error handling beyond an error event.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
from typing import Any

import paho.mqtt.client as paho
import pybase64
import pycurl
from paho.mqtt.enums import CallbackAPIVersion

BOUNDARY = "floorboundary7d3c2a9f"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--url", required=True, help="plate-reader URL")
    parser.add_argument("--topic", default="cameras/+/image", help="frames: cameras/<camera>/image")
    parser.add_argument("--base-topic", default="plate-bridge")
    args = parser.parse_args(argv)

    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, args.url)
    curl.setopt(pycurl.TCP_NODELAY, 1)
    curl.setopt(pycurl.TIMEOUT, 15)
    curl.setopt(pycurl.HTTPHEADER, [f"Content-Type: multipart/form-data; boundary={BOUNDARY}", "Expect:"])
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="upload"; filename="frame.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def on_message(client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        camera = message.topic.split("/")[1]
        answer = io.BytesIO()
        try:
            curl.setopt(pycurl.POSTFIELDS, b"".join((head, pybase64.b64decode(message.payload), tail)))
            curl.setopt(pycurl.WRITEDATA, answer)
            curl.perform()
            kind = "result" if curl.getinfo(pycurl.RESPONSE_CODE) < 400 else "error"
            body = answer.getvalue()
        except (pycurl.error, ValueError) as exc:
            kind, body = "error", json.dumps({"error": type(exc).__name__}).encode()
        client.publish(f"{args.base_topic}/{camera}/{kind}", body, qos=1)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"floor-{os.getpid()}")
    client.on_connect = lambda client, *_: client.subscribe(args.topic, qos=1)
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    signal.signal(signal.SIGINT, lambda *_: client.disconnect())
    client.connect(args.host, args.port)
    print(f"floor: {args.topic} on {args.host}:{args.port} -> {args.url}", file=sys.stderr, flush=True)
    client.loop_forever()
    curl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

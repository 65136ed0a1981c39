"""Recognize node: read the plates of the message's image through the configured reader."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ReaderPayloadTooLarge
from bridge.images import downscale_to_fit
from bridge.messages import Message
from bridge.nodes.base import Node, NodeContext, NodeSettings

# The cloud refuses uploads above about 3 MB; a 413 retry aims below that, or at half the refused size.
DOWNSCALE_TARGET_BYTES = 2_500_000


@dataclass(frozen=True, slots=True)
class _Reading:
    """A camera's last reading, kept to answer an identical frame without a reader call."""

    image: bytes
    parameters: tuple[Any, ...]
    result: Mapping[str, Any]
    scale: float | None
    at: float


class RecognizeNode(Node):
    """Calls the reader with the route's (or the envelope's) regions, mmc, config, camera id and the
    frame's timestamp, through the shared guard (rate limit, retries, breaker). On a 413 it downscales
    the image once and retries, and the event reports the scale used.

    A frame byte-for-byte identical to the camera's previous one (a parked car on a snapshot camera,
    a snapshot sent twice), with the same parameters, within the route's `repeat_window`, gets the
    previous reading (`"cached": true` in its event) instead of a paid call.
    """

    type = "recognize"

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        super().__init__(settings, context)
        self._last: dict[str | None, _Reading] = {}

    def process(self, msg: Message) -> Message:
        if msg.image is None:
            raise RuntimeError("the recognize node needs a decoded image: put decode before it")
        window = self.context.route.repeat_window
        if not window:
            return self._recognize(msg)
        parameters = (msg.regions, msg.mmc, json.dumps(msg.engine_config, sort_keys=True))
        last = self._last.get(msg.camera_id)
        now = time.monotonic()
        # bytes == compares lengths first, then memcmp: microseconds even for a large frame.
        if last and now - last.at <= window and last.parameters == parameters and last.image == msg.image:
            return msg.replace(
                result=last.result, scale=last.scale, metadata={**msg.metadata, "cached": True}
            )
        read = self._recognize(msg)
        assert read.result is not None
        self._last[msg.camera_id] = _Reading(msg.image, parameters, read.result, read.scale, now)
        return read

    def _recognize(self, msg: Message) -> Message:
        assert msg.image is not None
        try:
            return msg.replace(result=self._read(msg, self._upload(msg)))
        except ReaderPayloadTooLarge:
            try:
                smaller, scale = downscale_to_fit(msg.image, min(DOWNSCALE_TARGET_BYTES, len(msg.image) // 2))
            except ValueError as exc:
                raise ReaderPayloadTooLarge(
                    f"413: the image is too large for the service and could not be downscaled ({exc})",
                    status_code=413,
                ) from None
            smaller_msg = msg.replace(image=smaller, image_base64=None, image_format="jpeg", scale=scale)
            return smaller_msg.replace(result=self._read(smaller_msg, smaller))

    def _upload(self, msg: Message) -> bytes | str:
        # A frame that arrived as base64 goes out as the same text when the reader sends base64.
        if msg.image_base64 is not None and getattr(self.context.reader, "upload_base64", False):
            # Strict base64 decoded from it, so it is plain ASCII without whitespace.
            return msg.image_base64.decode("ascii")
        assert msg.image is not None
        return msg.image

    def _read(self, msg: Message, upload: bytes | str) -> dict[str, Any]:
        reader = self.context.reader
        if reader is None:
            raise RuntimeError("the recognize node needs a reader in its context")

        def read() -> dict[str, Any]:
            return reader.read(
                upload,
                regions=msg.regions,
                camera_id=msg.camera_id,
                timestamp=msg.timestamp or msg.received_at,
                mmc=msg.mmc or None,
                config=msg.engine_config or None,
                filename=f"{msg.camera_id or 'camera'}.{'png' if msg.image_format == 'png' else 'jpg'}",
            )

        guard = self.context.guard
        return guard.call(read) if guard is not None else read()

"""Recognize node: read the plates of the message's image through the configured reader."""

from __future__ import annotations

from bridge.errors import ReaderRateLimited
from bridge.messages import Message
from bridge.nodes.base import Node


class RecognizeNode(Node):
    """Calls the reader with the route's (or the envelope's) regions, mmc, config, camera id and the
    frame's timestamp; waits for the shared call limiter first."""

    type = "recognize"

    def process(self, msg: Message) -> Message:
        reader = self.context.reader
        if reader is None:
            raise RuntimeError("the recognize node needs a reader in its context")
        image: bytes | str | None = msg.image_base64 if getattr(reader, "upload_base64", False) else None
        if image is None:
            image = msg.image
        if image is None:
            raise RuntimeError("the recognize node needs a decoded image: put decode before it")
        if self.context.limiter is not None:
            self.context.limiter.acquire()
        try:
            result = reader.read(
                image,
                regions=msg.regions,
                camera_id=msg.camera_id,
                timestamp=msg.timestamp or msg.received_at,
                mmc=msg.mmc or None,
                config=msg.engine_config or None,
                filename=f"{msg.camera_id or 'camera'}.{'png' if msg.image_format == 'png' else 'jpg'}",
            )
        except ReaderRateLimited as exc:
            # One worker got the 429; every worker waits what the service asked for.
            if self.context.limiter is not None and exc.retry_after:
                self.context.limiter.pause_for(exc.retry_after)
            raise
        return msg.replace(result=result)

"""Split node: one message per plate, so each plate becomes its own event (Node-RED's split)."""

from __future__ import annotations

from collections.abc import Iterator

from bridge.core.messages import Message, SplitPart
from bridge.nodes.base import Node


class SplitNode(Node):
    """Yields a copy of the message for each result, each carrying that single result."""

    type = "split"

    def process(self, msg: Message) -> Iterator[Message]:
        response = dict(msg.result or {})
        results = response.get("results", [])
        for index, result in enumerate(results):
            yield msg.replace(
                result={**response, "results": [result]},
                split=SplitPart(index, len(results)),
            )

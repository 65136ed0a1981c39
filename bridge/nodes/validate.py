"""Validate node: the reader's response must match `schemas/plate-reader-response.schema.json`."""

from __future__ import annotations

from bridge.core import schemas
from bridge.core.errors import ReaderInvalidResponse, SchemaViolation
from bridge.core.messages import Message
from bridge.nodes.base import Node


class ValidateNode(Node):
    """Lets a message through only when its reader result matches the response schema."""

    type = "validate"
    schema_name = "plate-reader-response"

    def process(self, msg: Message) -> Message:
        try:
            schemas.validate(self.schema_name, msg.result)
        except SchemaViolation as exc:
            first = exc.problems[0] if exc.problems else str(exc)
            raise ReaderInvalidResponse(
                f"the reader's answer does not match {self.schema_name}: {first}",
                schema=self.schema_name,
                problems=exc.problems,
            ) from None
        return msg

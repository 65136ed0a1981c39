"""What the layers need of each other, as protocols: the one reader and the one publisher.

A node, a flow and an extension name these; the MQTT client, the Plate Recognizer client and the
offline engine implement them. Defined here, below every layer, so no layer imports another's class
to name what it calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class Publisher(Protocol):
    """Hands a message to the broker: queued by the MQTT client, safe from any thread.

    `properties` are MQTT 5 publish properties by snake_case name (`correlation_data`, ...), ignored
    on an MQTT 3.1.1 connection. `bridge.mqtt.MqttClient` implements it.
    """

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Mapping[str, Any] | None = None,
    ) -> None: ...


class Reader(Protocol):
    """A plate reader: `bridge.reader.PlateReader` (cloud or SDK over HTTP) or the offline engine
    (`bridge.engines.adapter.LocalReader`). Returns Plate Recognizer's response document."""

    def read(
        self,
        image: bytes | str,
        *,
        regions: Iterable[str] = (),
        camera_id: str | None = None,
        timestamp: Any = None,
        mmc: bool | None = None,
        config: Mapping[str, Any] | None = None,
        filename: str = "image.jpg",
    ) -> dict[str, Any]: ...

"""`{base_topic}/bridge/info`, retained: what this bridge is and how it is configured (no secrets)."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from bridge import __version__
from bridge.core.redact import shown_url
from bridge.extensions.base import Extension, ExtensionContext

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger(__name__)


class BridgeInfoExtension(Extension):
    """Publishes the bridge's version, its reader (and the SDK's version from `/info/`), its routes
    and its configuration with secrets masked, on every connection (Zigbee2MQTT's `bridge/info`).

    The SDK is asked once, in the background, and only when Home Assistant discovery is on (which asks
    `/info/` for the usage anyway): a bridge should not make HTTP calls nobody asked for, and tests
    count the reader's requests. The document goes out again when the answer arrives.
    """

    name = "info"

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self._sdk: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connected = False

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return True

    @property
    def topic(self) -> str:
        return f"{self.context.base_topic}/bridge/info"

    def start(self) -> None:
        config = self.context.config
        if (
            config.homeassistant.enabled
            and config.reader.kind == "sdk"
            and hasattr(self.context.reader, "info")
        ):
            self._thread = threading.Thread(target=self._ask_sdk, name="bridge-info", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(1)

    def _ask_sdk(self) -> None:
        try:
            answer = self.context.reader.info()  # type: ignore[union-attr]
        except Exception as exc:
            log.warning("could not read the SDK's /info/: %s", exc)
            return
        with self._lock:
            self._sdk = {"version": answer.get("version")}
            connected = self._connected
        if connected:
            self._publish()

    def on_connected(self) -> None:
        with self._lock:
            self._connected = True
        self._publish()

    def document(self) -> dict[str, Any]:
        config = self.context.config
        with self._lock:
            sdk = self._sdk
        return {
            "version": __version__,
            "reader": {
                "kind": config.reader.kind,
                "url": config.reader.url if config.reader.is_local else shown_url(config.reader.url),
                "sdk_version": sdk["version"] if sdk else None,
            },
            "routes": [
                {
                    "name": route.label,
                    "topic": route.topic,
                    "camera_id": route.camera_id,
                    "result_topic": route.result_topic,
                    "error_topic": route.error_topic,
                }
                for route in config.routes
            ],
            "homeassistant": config.homeassistant.enabled,
            "config": config.masked(),
        }

    def _publish(self) -> None:
        self.context.publisher.publish(self.topic, json.dumps(self.document()).encode(), qos=1, retain=True)

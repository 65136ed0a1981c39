"""What Home Assistant is told: the discovery documents of the bridge and of each camera, as data.

Every document carries `device`, `origin`, a stable `unique_id` and availability, and full key names
(Home Assistant's `components/mqtt/schemas.py`). Only keys Home Assistant 2024.3 understands are
sent, plus `default_entity_id`, which HA 2025.10 introduced and older versions drop as an unknown key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from bridge import __version__
from bridge.core.messages import topic_level

# No support_url: the project has no published address yet (pyproject.toml names none).
ORIGIN = {"name": "plate-bridge", "sw_version": __version__}
MANUFACTURER = "plate-bridge"

PLATE_DETECTED = "plate_detected"
WATCHED_PLATE_DETECTED = "watched_plate_detected"

Discovery = tuple[str, dict[str, Any]]
"""(discovery topic, document)."""

ReaderKind = Literal["cloud", "sdk", "local"]
# The bridge device's model and its reader sensor's icon say which reader reads the plates.
READER_MODELS: dict[ReaderKind, str] = {
    "cloud": "MQTT bridge to Plate Recognizer Snapshot Cloud",
    "sdk": "MQTT bridge to Plate Recognizer Snapshot SDK",
    "local": "MQTT bridge with the offline plate reader",
}
READER_ICONS: dict[ReaderKind, str] = {"cloud": "mdi:cloud-check", "sdk": "mdi:server", "local": "mdi:chip"}


def slug(text: str) -> str:
    """`text` as Home Assistant writes an entity id's object part: lower-case letters, digits, `_`."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "camera"


def camera_key(camera: str) -> str:
    """A camera's key in discovery topics and unique ids: its slug, plus a short hash of the id when
    the slug is not the id itself, so `front-door` and `Front door` never share one. Stable across
    restarts: it depends on the id alone."""
    base = slug(camera)
    if base == camera:
        return base
    return f"{base}_{hashlib.sha256(camera.encode()).hexdigest()[:6]}"


def _template_string(text: str) -> str:
    # A Jinja string literal: JSON's double-quoted form is valid Jinja (quotes and backslashes escaped).
    return json.dumps(text)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of the bridge and its cameras, below the base topic and the discovery prefix."""

    base: str
    prefix: str
    node: str

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

    @property
    def stats(self) -> str:
        return f"{self.base}/bridge/stats"

    @property
    def usage(self) -> str:
        return f"{self.base}/bridge/usage"

    @property
    def record(self) -> str:
        """Retained: the cameras this bridge announced, so the next run can remove the ones gone."""
        return f"{self.base}/bridge/ha_cameras"

    @property
    def ha_status(self) -> str:
        return f"{self.prefix}/status"

    def camera(self, camera: str, leaf: str) -> str:
        return f"{self.base}/{topic_level(camera)}/{leaf}"

    def presence(self, plate: str) -> str:
        """A watched plate's presence (bridge/extensions/history/presence.py publishes it)."""
        return f"{self.base}/history/presence/{plate}"

    def discovery(self, component: str, object_key: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_key}/config"


class Entities:
    """Builds discovery documents for one bridge (`node`: its MQTT client id)."""

    def __init__(self, topics: Topics, *, node_id: str, reader: ReaderKind = "cloud") -> None:
        self.topics = topics
        self.reader = reader
        # "Plate bridge" names the device; entity names ("Reader") are appended by Home Assistant, so
        # ids come out as sensor.plate_bridge_reader, not sensor.plate_bridge_plate_bridge_reader.
        self.bridge_name = "Plate bridge" if node_id == "plate-bridge" else f"Plate bridge {node_id}"
        self.bridge_slug = slug(self.bridge_name)
        self.bridge_identifier = f"plate_bridge_{topics.node}"

    # -- shared pieces -------------------------------------------------------------------------

    def _availability(self) -> dict[str, Any]:
        return {
            "availability_topic": self.topics.bridge_state,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    @staticmethod
    def _entity_id(component: str, object_id: str) -> dict[str, str]:
        # object_id: HA up to 2025.9 (dropped in 2026.4); default_entity_id: HA 2025.10 and later.
        return {"object_id": object_id, "default_entity_id": f"{component}.{object_id}"}

    def bridge_device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.bridge_identifier],
            "name": self.bridge_name,
            "manufacturer": MANUFACTURER,
            "model": READER_MODELS[self.reader],
            "sw_version": __version__,
        }

    def camera_device(self, camera: str) -> dict[str, Any]:
        return {
            "identifiers": [f"{self.bridge_identifier}_{camera_key(camera)}"],
            "name": camera,
            "manufacturer": MANUFACTURER,
            "model": "Camera (plate reader)",
            "sw_version": __version__,
            "via_device": self.bridge_identifier,
        }

    # -- the bridge ----------------------------------------------------------------------------

    def bridge(self, *, usage: bool, local_first: bool = False) -> list[Discovery]:
        """The bridge device: connectivity, reader state, frame counters, and usage when the reader
        reports one (cloud or SDK; the offline reader has none); with `local_first`, the calls it
        saved and the quota guard's state."""
        device = self.bridge_device()
        state = self.topics.bridge_state

        def entity(component: str, key: str, name: str, **fields: Any) -> Discovery:
            # Unique ids keep the keys of earlier versions; entity ids follow the names.
            document = {
                "name": name,
                "unique_id": f"plate_bridge_{self.topics.node}_{key}",
                **self._entity_id(component, f"{self.bridge_slug}_{slug(name)}"),
                "device": device,
                "origin": ORIGIN,
                **fields,
            }
            return self.topics.discovery(component, key), document

        counters = {"state_class": "total_increasing", "entity_category": "diagnostic"}
        documents = [
            # No availability: this one says "disconnected" itself when the bridge goes away.
            entity(
                "binary_sensor",
                "connection",
                "Connection",
                state_topic=state,
                value_template="{{ value_json.state }}",
                payload_on="online",
                payload_off="offline",
                device_class="connectivity",
                entity_category="diagnostic",
            ),
            # The guard says `unavailable` when the circuit is open; HA reads that state word as "the
            # entity is unavailable", so it is shown as circuit_open. Reason and retry are attributes.
            entity(
                "sensor",
                "reader",
                "Reader",
                state_topic=state,
                value_template=(
                    "{% set s = value_json.get('reader') or 'ok' %}"
                    "{{ 'circuit_open' if s == 'unavailable' else s }}"
                ),
                json_attributes_topic=state,
                json_attributes_template=(
                    "{{ {'reason': value_json.get('reason'), 'retry_in': value_json.get('retry_in'), "
                    "'cooldown': value_json.get('cooldown')} | tojson }}"
                ),
                icon=READER_ICONS[self.reader],
                entity_category="diagnostic",
                **self._availability(),
            ),
            entity(
                "sensor",
                "processed",
                "Frames read",
                state_topic=self.topics.stats,
                value_template="{{ value_json.processed }}",
                icon="mdi:image-check",
                **counters,
                **self._availability(),
            ),
            entity(
                "sensor",
                "dropped",
                "Frames dropped",
                state_topic=self.topics.stats,
                value_template="{{ value_json.dropped }}",
                icon="mdi:image-off",
                **counters,
                **self._availability(),
            ),
        ]
        saved = [("reuse", "Reader calls saved by reuse")]
        if local_first:
            saved.append(("local", "Reader calls saved offline"))
        documents += [
            entity(
                "sensor",
                f"calls_saved_{how}",
                name,
                state_topic=self.topics.stats,
                value_template=f"{{{{ value_json.calls_saved_{how} | default(0) }}}}",
                icon="mdi:piggy-bank",
                **counters,
                **self._availability(),
            )
            for how, name in saved
        ]
        if local_first:
            # The quota guard (reader.local_first): on while the offline reader answers alone.
            documents.append(
                entity(
                    "binary_sensor",
                    "local_only",
                    "Offline only",
                    state_topic=state,
                    value_template="{{ 'ON' if value_json.get('local_only') else 'OFF' }}",
                    json_attributes_topic=state,
                    json_attributes_template=(
                        "{{ {'reason': value_json.get('local_only_reason'), "
                        "'calls_left': value_json.get('calls_left')} | tojson }}"
                    ),
                    icon="mdi:cloud-off-outline",
                    entity_category="diagnostic",
                    **self._availability(),
                )
            )
        if usage:
            documents += [
                entity(
                    "sensor",
                    "calls_used",
                    "Reader calls used",
                    state_topic=self.topics.usage,
                    value_template="{{ value_json.calls }}",
                    json_attributes_topic=self.topics.usage,
                    icon="mdi:counter",
                    state_class="total",
                    entity_category="diagnostic",
                    **self._availability(),
                ),
                entity(
                    "sensor",
                    "calls_left",
                    "Reader calls left",
                    state_topic=self.topics.usage,
                    value_template="{{ value_json.left if value_json.left is not none else 'None' }}",
                    icon="mdi:counter",
                    state_class="measurement",
                    entity_category="diagnostic",
                    **self._availability(),
                ),
            ]
        return documents

    # -- a camera ------------------------------------------------------------------------------

    def camera(self, camera: str, *, watchlists: list[str], snapshot: bool) -> list[Discovery]:
        """A camera device: last plate, one binary sensor per watch list, the snapshot and plate crop,
        an event entity and device triggers for plate_detected / watched_plate_detected."""
        key = camera_key(camera)
        pretty = slug(camera)
        device = self.camera_device(camera)
        state = self.topics.camera(camera, "state")
        events = self.topics.camera(camera, "event")
        availability = self._availability()

        def entity(component: str, suffix: str, name: str, **fields: Any) -> Discovery:
            document = {
                "name": name,
                "unique_id": f"plate_bridge_{self.topics.node}_{key}_{suffix}",
                **self._entity_id(component, f"{pretty}_{suffix}"),
                "device": device,
                "origin": ORIGIN,
                **fields,
                **availability,
            }
            return self.topics.discovery(component, f"{key}_{suffix}"), document

        documents = [
            # The state is ready-made flat JSON: no template over the reader's answer. No plate
            # (cleared) is JSON null, shown as an empty state: a text sensor of HA 2024.3 reads the
            # `None` payload as the text "None" (only numeric sensors turn it into "unknown").
            entity(
                "sensor",
                "plate",
                "Plate",
                state_topic=state,
                value_template="{{ value_json.plate or '' }}",
                json_attributes_topic=state,
                icon="mdi:car-back",
            ),
            entity(
                "event",
                "plate_event",
                "Plate event",
                state_topic=events,
                event_types=[PLATE_DETECTED, WATCHED_PLATE_DETECTED],
                icon="mdi:car-search",
            ),
        ]
        for name in watchlists:
            list_key = f"watched_{slug(name)}"
            documents.append(
                entity(
                    "binary_sensor",
                    list_key,
                    f"Watched {name}",
                    state_topic=state,
                    value_template=(
                        f"{{{{ 'ON' if {_template_string(name)} in value_json.lists else 'OFF' }}}}"
                    ),
                    json_attributes_topic=state,
                    json_attributes_template=(
                        "{{ {'plate': value_json.plate, 'label': value_json.label, "
                        "'list': value_json.list} | tojson }}"
                    ),
                    device_class="occupancy",  # "Detected" / "Clear"
                    icon="mdi:car-key",
                )
            )
        if snapshot:
            documents += [
                entity(
                    "image",
                    "snapshot",
                    "Snapshot",
                    image_topic=self.topics.camera(camera, "snapshot"),
                    content_type="image/jpeg",
                ),
                entity(
                    "image",
                    "plate_crop",
                    "Plate crop",
                    image_topic=self.topics.camera(camera, "plate_crop"),
                    content_type="image/jpeg",
                ),
            ]
        documents += self._triggers(camera, key, device, watchlists)
        return documents

    # -- watched plates (history) ---------------------------------------------------------------

    def tracker(self, plate: str, label: str | None) -> Discovery:
        """A watched plate's `device_tracker` (home/not_home), driven by its visits in the history
        store, on the bridge's device: "Anna's car is home" without a template."""
        key = f"plate_{slug(plate)}"
        name = label or plate
        document = {
            "name": name,
            "unique_id": f"plate_bridge_{self.topics.node}_{key}",
            **self._entity_id("device_tracker", f"{self.bridge_slug}_{slug(name)}"),
            "device": self.bridge_device(),
            "origin": ORIGIN,
            "state_topic": self.topics.presence(plate),
            "value_template": "{{ value_json.state }}",
            "payload_home": "home",
            "payload_not_home": "not_home",
            "source_type": "router",  # seen by a fixed sensor at home, like a router sees a phone
            "json_attributes_topic": self.topics.presence(plate),
            "icon": "mdi:car",
            **self._availability(),
        }
        return self.topics.discovery("device_tracker", key), document

    def _triggers(
        self, camera: str, key: str, device: dict[str, Any], watchlists: list[str]
    ) -> list[Discovery]:
        # Device triggers read the event topic; `trigger` in its JSON picks which one fires, and the
        # whole document is the automation's trigger.payload_json (plate, list, label...).
        topic = self.topics.camera(camera, "event")
        pairs = [(PLATE_DETECTED, "any", PLATE_DETECTED)]
        pairs += [(WATCHED_PLATE_DETECTED, name, trigger_name(name)) for name in watchlists]
        documents = []
        for kind, subtype, payload in pairs:
            object_key = f"{key}_{payload}" if kind == PLATE_DETECTED else f"{key}_watched_{slug(subtype)}"
            documents.append(
                (
                    self.topics.discovery("device_automation", object_key),
                    {
                        "automation_type": "trigger",
                        "topic": topic,
                        "type": kind,
                        "subtype": subtype,
                        "payload": payload,
                        "value_template": "{{ value_json.trigger }}",
                        "device": device,
                        "origin": ORIGIN,
                    },
                )
            )
        return documents


def trigger_name(watchlist: str) -> str:
    """The `trigger` value of a watched-plate event of `watchlist` (what its device trigger matches)."""
    return f"{WATCHED_PLATE_DETECTED}_{slug(watchlist)}"

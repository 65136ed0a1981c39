"""Home Assistant MQTT discovery over a real broker: what Home Assistant needs to build entities."""

from __future__ import annotations

from typing import Any

from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import BrokerAddress, Collector
from tests.emulator import ReaderEmulator
from tests.images import jpeg

PLATE_SENSOR = "homeassistant/sensor/plate-bridge/drive_plate/config"
READER_SENSOR = "homeassistant/sensor/plate-bridge/reader/config"


def test_discovery_announces_the_bridge_and_each_camera(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port},
        reader={"url": emulator.url, "max_calls_per_second": None},
        homeassistant={"enabled": True},
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        collector: Collector = collector_factory(
            broker.host, broker.port, ["homeassistant/#", "plate-bridge/#"]
        )
        [reader] = collector.wait_for(READER_SENSOR)
        assert reader["availability_topic"] == "plate-bridge/bridge/state"
        assert reader["device"]["identifiers"] == ["plate_bridge_plate-bridge"]
        assert reader["origin"]["name"] == "plate-bridge"

        collector.publish("cameras/drive/image", jpeg())
        [plate] = collector.wait_for(PLATE_SENSOR)
        [event] = collector.wait_for("plate-bridge/drive/result")
        assert plate["state_topic"] == plate["json_attributes_topic"] == "plate-bridge/drive/result"
        assert plate["unique_id"] == "plate_bridge_plate-bridge_drive_plate"
        assert plate["default_entity_id"] == "sensor.drive_plate"
        assert plate["device"]["via_device"] == reader["device"]["identifiers"][0]
        assert "value_json.results[0].plate" in plate["value_template"]
        assert event["results"][0]["plate"] == "nhk552"

        # A second frame of the same camera is not announced again ...
        collector.publish("cameras/drive/image", jpeg())
        collector.wait_for("plate-bridge/drive/result", 2)
        assert len(collector.on(PLATE_SENSOR)) == 1
        # ... but everything is when Home Assistant comes back online.
        collector.publish("homeassistant/status", b"online")
        assert len(collector.wait_for(PLATE_SENSOR, 2)) == 2
        assert len(collector.wait_for(READER_SENSOR, 2)) == 2
        # The configs are retained: a Home Assistant that connects later still finds them.
        late: Collector = collector_factory(broker.host, broker.port, [PLATE_SENSOR])
        assert late.wait_for(PLATE_SENSOR)[0] == plate
        assert all(retained for topic, _, retained in late.messages if topic == PLATE_SENSOR)
    finally:
        bridge.stop(deadline=5)

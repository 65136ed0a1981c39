#!/bin/sh
# The add-on's entry point: the add-on's options (and the MQTT service Home Assistant offers) become
# the bridge's configuration file in /data, readable by this add-on alone; then the bridge runs.
set -eu
CONFIG=/data/plate-bridge.yaml
umask 077
python3 /usr/local/lib/plate-bridge-addon/addon_config.py /data/options.json "$CONFIG"
exec plate-bridge run --config "$CONFIG"

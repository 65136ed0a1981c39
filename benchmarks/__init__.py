"""Benchmark harness: the bridge, a naive relay and Node-RED on the same MQTT workload."""

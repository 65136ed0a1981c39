"""plate-bridge: read license plates from camera frames on MQTT through the Plate Recognizer API."""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""`plate-bridge serve`: a Plate-Recognizer-compatible HTTP API over the offline reader ([serve])."""

from bridge.server.app import create_app, serve

__all__ = ["create_app", "serve"]

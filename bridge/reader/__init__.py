"""The Plate Recognizer client: HTTP transports, retries, rate limit, circuit breaker.

It knows nothing of MQTT: it takes image bytes and answers the service's JSON.
"""

from bridge.reader.client import CLOUD_URL, PlateReader, api_timestamp, parse_retry_after

__all__ = ["CLOUD_URL", "PlateReader", "api_timestamp", "parse_retry_after"]

"""Where the Plate Recognizer cloud is: the configuration and the reader both need to know."""

from __future__ import annotations

from urllib.parse import urlsplit

CLOUD_URL = "https://api.platerecognizer.com/v1/plate-reader/"
CLOUD_STATISTICS_URL = "https://api.platerecognizer.com/v1/statistics/"
CLOUD_HOST = "api.platerecognizer.com"


def is_cloud_url(url: str) -> bool:
    """Whether `url` points at the Plate Recognizer cloud: its host is api.platerecognizer.com or a
    subdomain of it, compared as a parsed host name — not `http://elsewhere/?api.platerecognizer.com`
    nor `https://api.platerecognizer.com.elsewhere/`."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return False
    return host == CLOUD_HOST or host.endswith("." + CLOUD_HOST)

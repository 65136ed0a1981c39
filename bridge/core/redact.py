"""What of the configuration may leave the process: URLs as `scheme://host:port`, secrets masked.

One rule for everything shown outside the process (the retained `bridge/info`, logs, error messages
and events, `check-config`): a URL keeps its scheme, host and port only, because every other part can
be a credential by itself (`user:password@`, a `?token=`, the webhook id in the path of a Slack,
Discord or Home Assistant webhook URL); header values and any value under a key named like a secret
(`password`, `token`, `api_key`, ...) are masked. Only what is shown is redacted: the configuration
the bridge uses keeps its URLs and secrets whole.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "**********"

# Words of a key that make its value a secret: `api_key`, `X-Auth-Token`, `clientSecret`, `passwd`.
SECRET_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "key",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "token",
    }
)
# Keys whose values are all secrets, whatever their own names (a webhook target's headers).
SECRET_MAPPINGS = frozenset({"headers"})

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


@functools.lru_cache(maxsize=64)
def shown_url(url: str) -> str:
    """`url` as it may be shown: `scheme://host:port`, never user info, path, query or fragment.
    Cached: the reader names its one URL on every call (a few URLs per process; the cache holds 64)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: not shown either
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def is_secret_name(name: str) -> bool:
    """Whether a key named `name` holds a secret (`password`, `api_key`, `X-Auth-Token`, ...)."""
    words = [word.lower() for word in _WORDS.findall(name)]
    return "".join(words) in SECRET_WORDS or any(word in SECRET_WORDS for word in words)


def redacted(value: Any) -> Any:
    """`value` as it may leave the process: text with its URLs shortened, mappings and lists walked,
    values under secret-named keys and every header value masked. Works on the plain data of
    `model_dump(mode="json")` and on any message text."""
    if isinstance(value, str):
        return _URL.sub(_shown_match, value)
    if isinstance(value, Mapping):
        return {key: _redacted_item(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


def _shown_match(found: re.Match[str]) -> str:
    # Punctuation that ends a sentence is text, not the URL's ("cannot reach http://h:1/x: refused").
    url = found.group().rstrip(".,:;!?)]}")
    return shown_url(url) + found.group()[len(url) :]


def _redacted_item(key: str, value: Any) -> Any:
    if value is None:
        return None  # unset: shown as unset, which gives nothing away
    if is_secret_name(key):
        return MASK
    if key in SECRET_MAPPINGS and isinstance(value, Mapping):
        return {name: MASK for name in value}
    return redacted(value)

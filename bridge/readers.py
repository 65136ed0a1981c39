"""Which reader a configuration asks for, built: the offline engine, or the cloud or an SDK over HTTP.

Above both the reader client (bridge/reader/) and the offline engine (bridge/engines/), so neither
knows the other; the bridge, `recognize`, `evaluate` and `compare` build their readers here.
"""

from __future__ import annotations

import logging

from bridge.config import ReaderConfig
from bridge.core.errors import ConfigError
from bridge.core.protocols import Reader
from bridge.core.redact import shown_url

log = logging.getLogger(__name__)


def load_local_reader() -> Reader:
    """The offline reader, its models loaded; ImportError without the [local] extra."""
    from bridge.engines.adapter import LocalReader

    reader = LocalReader()
    reader.load()
    return reader


def build_reader(settings: ReaderConfig, *, validate: bool = False) -> Reader:
    """The reader a configuration asks for: the offline engine, or the cloud or an SDK over HTTP.

    `validate=False` for the bridge: its flow's validate node checks every response, and checking
    twice would only cost time.
    """
    if settings.is_local:
        try:
            return load_local_reader()
        except ImportError as exc:
            raise ConfigError(f"reader.url 'local': {exc}") from None
    from bridge.reader import PlateReader

    try:
        reader = PlateReader(
            settings.url,
            token=settings.token.get_secret_value() if settings.token else None,
            timeout=settings.timeout,
            upload_base64=settings.upload == "base64",
            validate=validate,
            transport=settings.transport,
        )
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    log.info("reader: %s over %s", shown_url(reader.url), reader.transport)
    return reader

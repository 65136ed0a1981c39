"""The offline engine behind the same `read()` the recognize node and the CLI call on PlateReader."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bridge.core.errors import PayloadNotImage
from bridge.reader import api_timestamp


class LocalReader:
    """Reads plates in-process with `bridge.engines.local.LocalEngine` (the `[local]` extra).

    The engine (and its models) load on the first read, once, so building a LocalReader is cheap and an
    ImportError naming the extra surfaces when the reader is first needed.
    """

    upload_base64 = False
    kind = "local"  # what events say answered (`reader`)

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._engine is None:
                from bridge.engines.local import LocalEngine

                engine = LocalEngine()
                engine.load()
                self._engine = engine

    def read(
        self,
        image: bytes | str,
        *,
        regions: Iterable[str] = (),
        camera_id: str | None = None,
        timestamp: datetime | str | None = None,
        mmc: bool | None = None,
        config: Mapping[str, Any] | None = None,
        filename: str = "image.jpg",
    ) -> dict[str, Any]:
        if isinstance(image, str):
            try:
                image = base64.b64decode(image, validate=True)
            except (binascii.Error, ValueError):
                raise PayloadNotImage("the upload is not valid base64") from None
        if self._engine is None:
            self.load()
        result: dict[str, Any] = self._engine.read(
            image,
            regions=tuple(regions),
            camera_id=camera_id,
            timestamp=api_timestamp(timestamp) if timestamp is not None else None,
            mmc=bool(mmc),
            config=config,
            filename=filename,
        )
        return result

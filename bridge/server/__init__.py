"""`plate-bridge serve`: a Plate-Recognizer-compatible HTTP API over the offline reader ([serve]).

It answers as an on-premise SDK does, so the clients people already run can point at it: the SDK
paths (`/v1/plate-reader/`, `/alpr`, `/info/`) take requests without an Authorization header, as
the SDK does (the official `plate_recognition.py --sdk-url` sends none). `--token` is checked on
every request that carries one (the cloud's way: this bridge, the Node-RED node) and guards the
cloud-only `/v1/statistics/`; it does not keep token-less SDK clients out. What the offline engine
cannot do is refused with a 400 naming the option: `mmc=true` (no make, model or colour),
`config.detection_mode` other than "plate" (no vehicle detection), `upload_url` (fetching a URL for
anyone who asks would be a request-forgery hole).

    compat     the Plate Recognizer wire format: paths, fields, token check, error bodies
    limits     the request body, the form, the connections
    endpoints  the plate reader, /info/, /v1/statistics/, and errors outside them
    app        `create_app`: all of the above over an engine
    runner     `serve`: uvicorn, the port, the start-up banner
"""

try:
    import anyio  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError(
        f"plate-bridge serve needs starlette, uvicorn and python-multipart ({exc.name} is missing):"
        " pip install 'plate-bridge[serve]'"
    ) from exc

from bridge.server.app import create_app
from bridge.server.runner import serve

__all__ = ["create_app", "serve"]

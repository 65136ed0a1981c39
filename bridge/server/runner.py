"""Serving: `serve` runs the application with the offline engine under uvicorn on a port it binds itself
(the next free one when the one asked for is taken), and says at start-up which URL each kind of client
needs and who can get in."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from starlette.applications import Starlette

from bridge.core.errors import BridgeError, ConfigError
from bridge.imaging.images import MAX_IMAGE_PIXELS
from bridge.server.app import create_app
from bridge.server.compat import CLOUD_PATH, INFO_PATH, SDK_PATH, STATISTICS_PATH
from bridge.server.endpoints import State
from bridge.server.limits import DEFAULT_MAX_UPLOAD_BYTES, SPARE_CONNECTIONS

NEXT_PORT_TRIES = 20

# Text for `plate-bridge serve --help` (bridge/cli/serve.py), kept beside what it describes.
SERVE_HELP = (
    "Answer the Plate Recognizer API (cloud paths and on-premise SDK paths) with the offline engine, so"
    " clients written for the service or an SDK can use it: give the official plate_recognition.py"
    " --sdk-url http://HOST:PORT, and clients that take a full URL (plate-bridge's reader.url, the"
    " Node-RED node) http://HOST:PORT/v1/plate-reader/. Differences from the service: no make, model or"
    " colour (mmc=true is a 400), no vehicle detection (config detection_mode 'vehicle' is a 400), no"
    " upload_url (a 400)."
)
TOKEN_HELP = (
    "a request that sends 'Authorization: Token ...' (the cloud's way) must send this token, and"
    " /v1/statistics/ requires it; requests without the header are answered on the SDK paths"
    " (/v1/plate-reader/, /alpr, /info/) as an on-premise SDK answers them, so the token does not keep"
    " SDK clients out: listen on 127.0.0.1 (the default) or behind a firewall to do that"
)


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    engine_threads: int = 1,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    open_sdk_paths: bool = True,
    log_level: str = "info",
) -> None:
    """Serve the API with the offline `LocalEngine` under uvicorn until SIGINT/SIGTERM.

    A taken `port` is replaced by the next free one (announced on stdout); raises ConfigError when the
    extras are missing or no port is free, BridgeError when start-up failed (uvicorn logged why). After
    a graceful shutdown on SIGINT uvicorn re-raises it, so the caller sees KeyboardInterrupt.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("plate-bridge serve needs uvicorn: pip install 'plate-bridge[serve]'") from exc
    try:
        from bridge.engines.local import LocalEngine
    except ImportError as exc:
        raise ConfigError(f"plate-bridge serve reads plates with the local engine: {exc}") from exc
    listener = _listen(host, port)
    bound = listener.getsockname()[1]
    if port and bound != port:
        print(f"plate-bridge serve: port {port} on {host} is taken; using {bound} instead", flush=True)
    print(startup_banner(host, bound, token=token, open_sdk_paths=open_sdk_paths), flush=True)
    app = create_app(
        LocalEngine(max_pixels=max_image_pixels),
        token=token,
        max_upload_bytes=max_upload_bytes,
        engine_threads=engine_threads,
        max_image_pixels=max_image_pixels,
        open_sdk_paths=open_sdk_paths,
    )
    config = uvicorn_config(app, log_level=log_level)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    if not server.started:
        # uvicorn has logged why (most often the engine's models failed to load in the lifespan).
        raise BridgeError("plate-bridge serve did not start; see the log above")


def uvicorn_config(app: Starlette, *, log_level: str = "info", **options: Any) -> Any:
    """uvicorn's settings for `app` (`options`: host, port, ... for tests): connections past
    MAX_CONNECTIONS are answered 503 by uvicorn before the app sees them, so open connections (and
    the tasks serving them) stay bounded whatever arrives."""
    import uvicorn

    state: State = app.state.serve
    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
        # Room beyond the engine's queue, so /info, /statistics and 429s are still answered while it
        # is full.
        limit_concurrency=state.max_pending + SPARE_CONNECTIONS,
        **options,
    )


def startup_banner(host: str, port: int, *, token: str | None = None, open_sdk_paths: bool = True) -> str:
    """What `serve` prints at start-up: the URL each kind of client needs, and who can get in."""
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    lines = [
        f"plate-bridge serve: loading the engine, then listening on {base}",
        f"  the official plate_recognition.py:  --sdk-url {base}   (it adds {CLOUD_PATH} itself)",
        f"  clients that take the full URL (plate-bridge reader.url, Node-RED):  {base}{CLOUD_PATH}",
        f"  SDK-style clients:  {base}{SDK_PATH};  usage:  {base}{INFO_PATH} and {base}{STATISTICS_PATH}",
    ]
    if token is not None:
        kept_out = (
            "requests without one are answered on the SDK paths, as an SDK does"
            if open_sdk_paths
            else "every request needs it"
        )
        lines.append(f"  --token: a request that sends 'Authorization: Token ...' must send it; {kept_out}")
    if not _is_loopback(host) and (token is None or open_sdk_paths):
        lines.append(f"plate-bridge serve: anyone who can reach {host} can read plates with this server")
    return "\n".join(lines)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, else the next free port above it (0: any free port).

    Bound here, not probed: nothing can take the port between the check and uvicorn starting.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [0] if port == 0 else range(port, min(port + NEXT_PORT_TRIES, 65536))
    last_error: OSError | None = None
    for candidate in candidates:
        listener = socket.socket(family, socket.SOCK_STREAM)
        # Reuse a port left in TIME_WAIT by a previous run; a port someone listens on still fails.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, candidate))
            listener.listen(2048)
        except OSError as exc:
            listener.close()
            last_error = exc
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise ConfigError(f"cannot listen on {host}:{candidate}: {exc.strerror or exc}") from exc
        listener.setblocking(False)
        return listener
    tried = f"{port}..{port + len(candidates) - 1}" if len(candidates) > 1 else str(port)
    reason = last_error.strerror if last_error is not None and last_error.strerror else "in use"
    raise ConfigError(f"cannot listen on {host}: ports {tried} are all taken ({reason}); pass another --port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

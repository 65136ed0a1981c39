"""The embedded MQTT broker (amqtt, in a thread of its own) for machines that have no broker."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from typing import Any

from bridge.core.errors import ConfigError

log = logging.getLogger(__name__)


class _StartupTraceback(logging.Filter):
    """amqtt logs its own start-up failure with a traceback; EmbeddedBroker.start() raises it as one
    line, so the traceback is kept for -v (debug) only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger().isEnabledFor(logging.DEBUG):
            record.exc_info = None
            record.exc_text = None
            return False
        return True


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int, tries: int = 20) -> int:
    """`wanted` if free, else the next free port above it (0: any free port)."""
    if wanted == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return int(probe.getsockname()[1])
    for port in range(wanted, min(wanted + tries, 65536)):
        if port_is_free(host, port):
            return port
    raise ConfigError(
        f"the embedded broker found no free port in {wanted}..{wanted + tries - 1} on {host}: "
        "set mqtt.port to a free port, or 0 for any"
    )


def _reason(failure: BaseException) -> str:
    """The innermost cause of amqtt's start-up failure, e.g. "address already in use"."""
    while failure.__cause__ is not None or failure.__context__ is not None:
        failure = failure.__cause__ or failure.__context__  # type: ignore[assignment]
    if isinstance(failure, OSError) and failure.errno == errno.EADDRINUSE:
        return "the address is already in use"
    return f"{type(failure).__name__}: {failure}"


class EmbeddedBroker:
    """An amqtt broker on `host:port` (MQTT 3.1.1, anonymous), run on its own asyncio loop thread.

    amqtt is the maintained successor of hbmqtt (which no longer imports on Python 3.11).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def start(self, timeout: float = 10.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise ConfigError(f"the embedded broker needs amqtt: pip install amqtt ({exc})") from None
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        async def boot() -> None:
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            self._broker = Broker(config)
            await self._broker.start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        quiet = _StartupTraceback()
        amqtt_log = logging.getLogger("amqtt.broker")
        amqtt_log.addFilter(quiet)
        try:
            self._thread.start()
            started = ready.wait(timeout)
        finally:
            amqtt_log.removeFilter(quiet)
        # Start-up failures are configuration problems (a port taken between the check and the bind,
        # an address that cannot be bound): one line, exit status 2, like every other.
        if not started:
            self.stop(timeout=1)
            raise ConfigError(
                f"the embedded broker did not start on {self.host}:{self.port} within {timeout:g} s"
            )
        if failure:
            self._loop = self._thread = self._broker = None
            raise ConfigError(
                f"the embedded broker could not listen on {self.host}:{self.port}: {_reason(failure[0])}; "
                "set mqtt.port to a free port, or 0 for any"
            )
        log.info("embedded MQTT broker (amqtt) listening on %s:%s", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


EMBEDDED_HOST = "127.0.0.1"


def start_embedded(wanted_port: int) -> EmbeddedBroker:
    """Start the bridge's own broker (`mqtt.host: embedded`) on loopback: on `wanted_port` when it is
    free, else on the next free port (logged), 0 for any."""
    port = pick_port(EMBEDDED_HOST, wanted_port)
    if wanted_port and port != wanted_port:
        log.warning("port %s is taken; the embedded broker uses %s instead", wanted_port, port)
    broker = EmbeddedBroker(EMBEDDED_HOST, port)
    broker.start()
    return broker

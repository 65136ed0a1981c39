"""The bridge's MQTT client (`MqttClient`): paho behind one class; it knows nothing of Plate Recognizer.

Messages at the edge are in bridge/mqtt/message.py, the demo's plain client in bridge/mqtt/simple.py.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.config import MQTTConfig, TLSConfig
from bridge.core.errors import BrokerError, PublishError
from bridge.core.messages import SHARE_PREFIX, check_publish_topic
from bridge.mqtt.message import DeliveryRepeats, InboundMessage, publish_properties

log = logging.getLogger(__name__)

STATE_TOPIC = "bridge/state"
# The largest value MQTT 5's Maximum Packet Size can name that a broker accepts from a client (the
# largest remaining length, 2^28 - 1).
MAX_PACKET_SIZE = 268_435_455
# What an MQTT 5 PUBLISH carries beside its payload, at most: a topic of up to 65,535 bytes with its
# length, the fixed header and packet id, and room for properties (response topic, correlation data).
PUBLISH_OVERHEAD_BYTES = 68 * 1024


def tune_socket(client: paho.Client, userdata: object, sock: Any) -> None:
    """paho's on_socket_open for every client of the bridge: TCP_NODELAY.

    Nagle's algorithm holds an event back until the broker ACKs the bridge's previous segment (its
    PUBACK), and the broker delays that ACK: ~20 ms added to every event on loopback, measured in
    benchmarks/ (p50 20.8 ms -> 4.1 ms). Small MQTT packets want to go out at once.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        log.debug("TCP_NODELAY not available on this socket")


def tls_reason(exc: ssl.SSLError) -> str:
    """Why a TLS handshake failed, in OpenSSL's words: a failed certificate check carries its own
    reason ("self-signed certificate in certificate chain", "IP address mismatch, ...") that
    `reason` alone ("CERTIFICATE_VERIFY_FAILED") drops."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)


class _PahoClient(paho.Client):
    """paho's client, telling us why a (re)connection attempt failed: paho's own loop swallows the
    exception (it only calls on_connect_fail, without it), so a broker that comes up later with a
    certificate we do not trust would otherwise be retried forever in silence."""

    on_connect_error: Callable[[OSError], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Held while paho (re)connects. paho's reconnect() opens the socket and only then queues
        # CONNECT; a publish from another thread in between (a worker's event, an extension's timer)
        # is queued first, and the broker closes a connection whose first packet is not CONNECT
        # (mosquitto does; CI caught it as "closed the connection before answering").
        self.connect_lock = threading.Lock()

    def reconnect(self) -> paho.MQTTErrorCode:
        with self.connect_lock:
            try:
                return super().reconnect()
            except OSError as exc:
                if self.on_connect_error is not None:
                    self.on_connect_error(exc)
                raise


class MqttClient:
    """paho behind one class: availability topic with last will, resubscribe on every (re)connect,
    a refused CONNACK treated as not connected, publishing from any thread.
    """

    def __init__(
        self,
        settings: MQTTConfig,
        *,
        on_message: Callable[[InboundMessage], None],
        on_connected: Callable[[], None] | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        host: str | None = None,
        port: int | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        """`max_packet_size` (MQTT 5): the largest packet the broker may send us; a broker drops a
        larger message for this client instead of sending it (MQTT 5 §3.1.2.11.4)."""
        self.settings = settings
        self.max_packet_size = min(max_packet_size, MAX_PACKET_SIZE) if max_packet_size else None
        self.host = host or settings.host
        self.port = port if port is not None else settings.port
        self.subscriptions = [self._subscription(topic, qos) for topic, qos in subscriptions]
        self.state_topic = f"{settings.base_topic}/{STATE_TOPIC}"
        self._on_message = on_message
        self._on_connected = on_connected
        self._recent = DeliveryRepeats()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._refused: str | None = None
        self._attempted = threading.Event()
        self._state: dict[str, Any] = {"state": "online"}
        self._stopping = False
        self._ever_connected = False
        # The last failure logged while retrying in the background: each distinct one is logged
        # once, not on every retry; cleared on connecting.
        self._last_failure: str | None = None
        self._in_background = False  # start() has returned: failures are logged, not raised
        self._client = self._make_client()

    def _subscription(self, topic: str, qos: int) -> tuple[str, int | SubscribeOptions]:
        """What to subscribe with: the QoS, and with MQTT 5 the options that keep the bridge's own
        messages and known retained messages away."""
        if self.settings.protocol != "5":
            return topic, qos
        return topic, SubscribeOptions(
            qos=qos,
            # The broker does not send the bridge what it published itself (a route on '#' would
            # otherwise read its own events). A protocol error on a shared subscription (MQTT 5
            # §3.8.3.1), where it would make no sense anyway: the group shares what it receives.
            noLocal=not topic.startswith(SHARE_PREFIX),
            # Retained messages only for a subscription the session did not have yet: resuming a
            # session does not hand the bridge the frames it has already read.
            retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def loop_alive(self) -> bool:
        """Whether paho's network thread runs: it reconnects in the background, so while it lives the
        connection can heal by itself; once it has ended nothing will receive or publish again."""
        # paho keeps its thread in a private attribute and offers no accessor (2.x); this class is the
        # one place that may know paho's internals.
        thread = self._client._thread
        return thread is not None and thread.is_alive()

    def _make_client(self) -> _PahoClient:
        settings = self.settings
        v5 = settings.protocol == "5"
        client = _PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # A persistent session makes the broker queue QoS 1 frames while the bridge is away.
            clean_session=None if v5 else not settings.persistent_session,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            tls = settings.tls if isinstance(settings.tls, TLSConfig) else TLSConfig()
            try:
                client.tls_set(
                    ca_certs=str(tls.ca_certs) if tls.ca_certs else None,
                    certfile=str(tls.certfile) if tls.certfile else None,
                    keyfile=str(tls.keyfile) if tls.keyfile else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                # A missing or unreadable CA/certificate/key file (the configuration checks them
                # too; one may have gone since): say which, not a traceback.
                files = ", ".join(str(path) for path in (tls.ca_certs, tls.certfile, tls.keyfile) if path)
                reason = tls_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror or exc
                raise BrokerError(
                    f"the broker TLS files ({files or 'system CAs'}) cannot be used: {reason}"
                ) from None
            if tls.insecure:
                log.warning(
                    "mqtt.tls.insecure: the broker's certificate is not checked against %s: anyone "
                    "on the path can pose as the broker; for test brokers only",
                    self.host,
                )
                client.tls_insecure_set(True)
        # Retained "offline" as last will: subscribers (Home Assistant availability) see a crash.
        client.will_set(self.state_topic, json.dumps({"state": "offline"}), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_socket_open = tune_socket
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_connect_error = self._handle_connect_error
        return client

    def start(self, wait: float = 10.0) -> None:
        """Connect in the background; wait up to `wait` s for the broker's answer.

        Raises BrokerError when the broker refuses (bad credentials, bad client id); when it cannot be
        reached yet, logs it and keeps trying in the background (paho reconnects with backoff).
        """
        settings = self.settings
        options: dict[str, Any] = {}
        if settings.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = settings.session_expiry if settings.persistent_session else 0
            if self.max_packet_size is not None:
                # What would be refused on arrival is then never received: a flood of oversize frames
                # costs the broker, not our socket and memory.
                properties.MaximumPacketSize = self.max_packet_size
            options = {"clean_start": not settings.persistent_session, "properties": properties}
        where = f"{self.host}:{self.port}"
        try:
            # The first attempt in this thread, so that what will not heal by retrying (a TLS handshake
            # the broker refuses, a bad CA file) raises here instead of being retried forever.
            self._client.connect(self.host, self.port, keepalive=settings.keepalive, **options)
        except ssl.SSLError as exc:
            raise BrokerError(f"TLS with the broker at {where} failed: {tls_reason(exc)}") from None
        except ValueError as exc:
            raise BrokerError(f"cannot connect to the broker at {where}: {exc}") from None
        except OSError as exc:
            log.warning("broker %s not reachable yet (%s); retrying in the background", where, exc)
            self._client.connect_async(self.host, self.port, keepalive=settings.keepalive, **options)
        self._client.loop_start()
        self._attempted.wait(wait)
        self._in_background = True
        if self._refused:
            self._client.loop_stop()
            raise BrokerError(
                f"the broker at {self.host}:{self.port} refused the connection: {self._refused}"
            )
        if not self.connected:
            log.warning("no answer yet from the broker at %s; retrying in the background", where)

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and every subscription is acknowledged (frames can arrive)."""
        return self._connected.wait(timeout) and self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Publish `offline` (retained), disconnect cleanly, stop the network thread."""
        self._stopping = True
        if self.connected:
            info = self._client.publish(
                self.state_topic, json.dumps({"state": "offline"}), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=3)
            except (RuntimeError, ValueError):
                log.warning("could not confirm the offline state before disconnecting")
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish_json(self, suffix: str, document: dict[str, Any], *, retain: bool = False) -> None:
        """Publish a document on `{base_topic}/{suffix}` (bridge/health, discovery data, ...)."""
        if self.connected:
            self.publish(
                f"{self.settings.base_topic}/{suffix}", json.dumps(document).encode(), qos=0, retain=retain
            )

    def set_state(self, **fields: Any) -> None:
        """Publish `{"state": "online", **fields}` as the retained `{base_topic}/bridge/state`."""
        self._state = {"state": "online", **fields}
        if self.connected:
            self.publish(self.state_topic, json.dumps(self._state).encode(), qos=1, retain=True)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a publish; paho keeps QoS 1/2 messages in flight across reconnects.

        `properties`: MQTT 5 publish properties by snake_case name (`correlation_data`,
        `content_type`, `user_property`, ...); ignored on an MQTT 3.1.1 connection.
        """
        check_publish_topic(topic)
        options = {}
        if properties and self.settings.protocol == "5":
            options["properties"] = publish_properties(properties)
        if self.connected:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, **options)
        else:
            # Not after a (re)connection's socket and before its CONNECT (see _PahoClient).
            with self._client.connect_lock:
                info = self._client.publish(topic, payload, qos=qos, retain=retain, **options)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            # NO_CONN: paho has queued the message and sends it after reconnecting.
            raise PublishError(f"cannot publish on {topic}: {paho.error_string(info.rc)}", topic=topic)

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            # A refused CONNACK is not a connection (bad credentials must not look "online").
            self._refused = str(reason_code)
            if self._in_background:
                # After start-up (start() raised the first refusal): keep retrying, since a password
                # file or ACL can be fixed on the broker without restarting the bridge, and log
                # each new reason once rather than every few seconds.
                self._log_failure(
                    f"the broker refused the connection: {reason_code} (check mqtt.username and "
                    "mqtt.password); still retrying every 30 s at most"
                )
            else:
                log.error("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            self._attempted.set()
            return
        self._refused = None
        self._last_failure = None
        self._ever_connected = True
        log.info("connected to broker %s:%s", self.host, self.port)
        client.publish(self.state_topic, json.dumps(self._state), qos=1, retain=True)
        # Resubscribe on every connect: a clean session (or a restarted broker) forgets them.
        self._subscribed.clear()
        if self.subscriptions:
            _, self._subscribe_mid = client.subscribe(self.subscriptions)
        else:
            self._subscribed.set()
        self._connected.set()
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:
                log.exception("the on-connect handler failed")
        self._attempted.set()

    def _handle_connect_error(self, exc: OSError) -> None:
        """A background (re)connection attempt failed before any CONNACK (paho retries it)."""
        if isinstance(exc, ssl.SSLError):
            self._log_failure(f"TLS failed: {tls_reason(exc)}; still retrying every 30 s at most")
        else:
            log.debug("broker %s:%s not reachable: %s", self.host, self.port, exc)

    def _log_failure(self, failure: str) -> None:
        if failure != self._last_failure:
            self._last_failure = failure
            log.error("broker %s:%s: %s", self.host, self.port, failure)
        else:
            log.debug("broker %s:%s: again: %s", self.host, self.port, failure)

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        for (topic, _), code in zip(self.subscriptions, reason_codes, strict=False):
            if code.is_failure:
                log.error("the broker refused the subscription to %s: %s", topic, code)
        self._subscribed.set()

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected
        self._connected.clear()
        self._subscribed.clear()
        if not self._ever_connected and not self._stopping and self._refused is None:
            # Closed before any CONNACK on the first attempt: not a broker that is down (that refuses
            # the TCP connection) but one that will not talk to us, e.g. a TLS 1.3 broker rejecting
            # our client certificate after the handshake. Retrying would not heal it.
            hint = " (is the client certificate accepted?)" if self.settings.tls else ""
            self._refused = f"the broker closed the connection before answering ({reason_code}){hint}"
        if was_connected and not self._stopping:
            log.warning("disconnected from broker %s:%s (%s)", self.host, self.port, reason_code)
        self._attempted.set()

    def _handle_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if message.dup and self._recent.seen_before(message):
            # A QoS 1 redelivery of a message already handed over (the broker restarted before it got
            # our PUBACK): handing it over again would read the frame twice.
            log.debug("dropping a redelivered duplicate on %s (mid %s)", message.topic, message.mid)
            return
        self._recent.remember(message)
        properties = message.properties
        inbound = InboundMessage(
            message.topic,
            message.payload,
            message.qos,
            bool(message.retain),
            response_topic=getattr(properties, "ResponseTopic", None),
            correlation_data=getattr(properties, "CorrelationData", None),
        )
        try:
            self._on_message(inbound)
        except Exception:
            # Never let a handler bug kill paho's network thread.
            log.exception("handler failed for a message on %s", inbound.topic)

"""Who may use the web page: sessions after a login, a token header, a trusted proxy, CSRF tokens.

Nothing here touches the network: `WebServer` asks these questions of each request. Secrets are
compared in constant time, sessions and failed logins (counted per client) are bounded in memory,
and a session's CSRF token is what the page must send back (`X-CSRF-Token`) with every edit.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from pydantic import SecretStr

SESSION_COOKIE = "plate_bridge_session"
MAX_SESSIONS = 200
"""Logins remembered at once; the oldest is forgotten beyond (its browser logs in again)."""
LOGIN_FAILURES = 10
"""Failed logins per `LOGIN_WINDOW` seconds from one client before its logins are refused for the rest
of the window: guessing a password at a few tries a second is not possible. Per client, not for all
together: otherwise anyone who can reach the page could keep its owner locked out."""
LOGIN_WINDOW = 60.0
MAX_THROTTLED_CLIENTS = 4096
"""Clients whose failed logins are remembered at once; the one that failed longest ago goes first."""


def client_key(address: str) -> str:
    """Whom failed logins are counted against: an IPv4 address, or an IPv6 address's /64 (one home
    or one host's privacy addresses; an attacker gets a whole /64, not one address, to rotate)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(slots=True)
class Session:
    csrf: str
    expires: float


def _same(given: str, secret: SecretStr | None) -> bool:
    return secret is not None and hmac.compare_digest(given.encode(), secret.get_secret_value().encode())


class Gate:
    """The page's login rules: `password`/`token` (either may be None), sessions of `session_seconds`."""

    def __init__(self, password: SecretStr | None, token: SecretStr | None, session_seconds: float) -> None:
        self._password = password
        self._token = token
        self._session_seconds = session_seconds
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.open_csrf = secrets.token_urlsafe(24)
        """The CSRF token of requests that need no login (loopback without a secret, a trusted proxy)."""

    @property
    def needs_login(self) -> bool:
        return self._password is not None or self._token is not None

    def bearer(self, header: str | None) -> bool:
        """Whether an `Authorization: Bearer <token>` header carries the configured token."""
        if not header or self._token is None:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and _same(value.strip(), self._token)

    def throttled(self, client: str) -> bool:
        """Whether too many logins failed lately from `client` (its address) to try another."""
        key = client_key(client)
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return False
            while failures and now - failures[0] >= LOGIN_WINDOW:
                failures.popleft()
            if not failures:
                del self._failures[key]
                return False
            return len(failures) >= LOGIN_FAILURES

    def login(self, secret: str, client: str) -> str | None:
        """A new session id when `secret` is the password or the token, else None (counted against
        `client`, the address it came from)."""
        if not (_same(secret, self._password) or _same(secret, self._token)):
            key = client_key(client)
            with self._lock:
                failures = self._failures.pop(key, None) or deque(maxlen=LOGIN_FAILURES)
                failures.append(time.monotonic())
                self._failures[key] = failures  # the latest to fail goes to the end
                while len(self._failures) > MAX_THROTTLED_CLIENTS:
                    self._failures.popitem(last=False)
            return None
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session_id] = Session(
                csrf=secrets.token_urlsafe(24), expires=time.monotonic() + self._session_seconds
            )
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session_id

    def session(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's id, or None (unknown or expired)."""
        if not session_id:
            return None
        with self._lock:
            found = self._sessions.get(session_id)
            if found is not None and found.expires < time.monotonic():
                del self._sessions[session_id]
                return None
            return found

    def logout(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    @property
    def session_seconds(self) -> int:
        return int(self._session_seconds)


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())

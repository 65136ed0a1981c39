"""Who may use the web page: sessions after a login, a token header, a trusted proxy, CSRF tokens.

Nothing here touches the network: `WebServer` asks these questions of each request. Secrets are
compared in constant time, sessions and failed logins are bounded in memory, and a session's CSRF
token is what the page must send back (`X-CSRF-Token`) with every edit.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from pydantic import SecretStr

SESSION_COOKIE = "plate_bridge_session"
MAX_SESSIONS = 200
"""Logins remembered at once; the oldest is forgotten beyond (its browser logs in again)."""
LOGIN_FAILURES = 10
"""Failed logins per `LOGIN_WINDOW` seconds (all clients together) before logins are refused for the
rest of the window: guessing a password at a few tries a second is not possible."""
LOGIN_WINDOW = 60.0


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
        self._failures: list[float] = []
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

    def throttled(self) -> bool:
        """Whether too many logins failed lately to try another."""
        now = time.monotonic()
        with self._lock:
            self._failures = [at for at in self._failures if now - at < LOGIN_WINDOW]
            return len(self._failures) >= LOGIN_FAILURES

    def login(self, secret: str) -> str | None:
        """A new session id when `secret` is the password or the token, else None (counted)."""
        if not (_same(secret, self._password) or _same(secret, self._token)):
            with self._lock:
                self._failures.append(time.monotonic())
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

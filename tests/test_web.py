"""The web page's server over HTTP on 127.0.0.1, against a real history store (SQLite in a temporary
folder, written through the store's own `record`): logins, CSRF, DNS rebinding, the path prefix and
Home Assistant's ingress, bounded and validated parameters, the live feed, CSV in and out."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.extensions.history.models import Record
from bridge.extensions.web.auth import Gate, client_key
from bridge.extensions.web.extension import open_web
from bridge.extensions.web.server import WebServer
from tests.images import jpeg

PASSWORD = "correct horse battery"
TOKEN = "t0ken-for-scripts-0123456789"


def serve(tmp_path: Path, **web: Any) -> tuple[WebServer, Any]:
    config = load_config(
        history={"enabled": True, "data_dir": str(tmp_path)},
        web={"enabled": True, "port": 0, **web},
        watchlists={"family": {"plates": ["ZZ99ZZZ"]}},
    )
    server, store = open_web(config)
    server.start()
    return server, store


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[WebServer, Any, datetime]]:
    server, store = serve(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    store.record(
        [
            Record("AB12CDE", "drive", now - timedelta(minutes=3), 0.91, crop=jpeg(80, 24, text="c")),
            Record("=CMD1", "gate", now - timedelta(minutes=2), 0.5),
            Record("XY34ZZZ", "gate", now - timedelta(minutes=1), 0.8, watchlists=("family",)),
        ]
    )
    yield server, store, now
    server.stop()
    store.close()


class Client:
    """One HTTP exchange at a time with the page, as a browser would send it."""

    def __init__(self, server: WebServer, host: str | None = None, source: str | None = None) -> None:
        self.address = (server.settings.host, server.port)
        self.host_header = host or f"{server.settings.host}:{server.port}"
        self.cookie: str | None = None
        self.source = (source, 0) if source else None  # the address the requests come from

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.address, timeout=10, source_address=self.source)
        sent = {"Host": self.host_header, **{k.replace("_", "-"): v for k, v in headers.items()}}
        if self.cookie:
            sent["Cookie"] = self.cookie
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers.setdefault("Content_Type", "application/json")
        status, _, raw = self.request(method, path, data, **headers)
        return status, json.loads(raw)

    def csrf(self, path: str = "/") -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, page
        text = page.decode()
        start = text.index('name="csrf-token" content="') + len('name="csrf-token" content="')
        return text[start : text.index('"', start)]


def test_a_page_off_loopback_needs_a_password_and_the_page_needs_the_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(history={"enabled": True}, web={"enabled": True, "host": "0.0.0.0"})
    assert "web.password" in str(caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        load_config(web={"enabled": True})
    assert "needs history.enabled" in str(caught.value.problems)
    with pytest.raises(ConfigError, match="configuration problem"):
        load_config(history={"enabled": True}, web={"enabled": True, "base_path": "/a b"})
    # With a password (or only behind Home Assistant's ingress) it may listen elsewhere.
    config = load_config(
        history={"enabled": True},
        web={"enabled": True, "host": "0.0.0.0", "password": PASSWORD, "token": TOKEN},
    )
    # What bridge/info and check-config show of it: no secret.
    shown = json.dumps(config.masked())
    assert PASSWORD not in shown and TOKEN not in shown and '"password": "**********"' in shown
    load_config(history={"enabled": True}, web={"host": "0.0.0.0", "trusted_proxies": ["172.30.32.2"]})


def test_search_finds_a_one_character_misread_and_refuses_bad_parameters(page: Any) -> None:
    server, _, now = page
    client = Client(server)
    status, found = client.json("GET", "/api/search?plate=AB12CDF&tolerance=1")
    assert status == 200 and [s["plate"] for s in found["sightings"]] == ["AB12CDE"]
    assert client.json("GET", "/api/search?plate=AB12CDF")[1]["sightings"] == []
    status, found = client.json("GET", "/api/search?camera=gate&list=family")
    assert [s["plate"] for s in found["sightings"]] == ["XY34ZZZ"]
    since = (now - timedelta(minutes=2, seconds=30)).isoformat()
    status, found = client.json("GET", f"/api/search?since={since.replace('+', '%2B')}")
    assert [s["plate"] for s in found["sightings"]] == ["XY34ZZZ", "=CMD1"]
    for query, says in [
        ("tolerance=9", "tolerance must be 0-2"),
        ("limit=abc", "limit must be a whole number"),
        ("limit=100000", "limit must be 1-500"),
        ("colour=red", "unknown parameter 'colour'"),
        ("since=yesterday", "since must be an ISO 8601 time"),
        ("until=0001-01-01T00:00%2B05:00", "until must be an ISO 8601 time"),
        ("plate=" + "A" * 40, "plate must be 1-16"),
        ("plate=%3Cscript%3E", "plate must be 1-16"),
        ("plate=A&plate=B", "plate is given 2 times"),
        ("x=" + "y" * 3000, "longer than 2048"),
    ]:
        status, body = client.json("GET", f"/api/search?{query}")
        assert (status, says in body["detail"]) == (400, True), (query, body)
        assert "Traceback" not in body["detail"]
    assert client.json("GET", "/api/sightings/999")[0] == 404
    assert client.json("GET", "/api/nothing")[0] == 404


def test_a_plate_has_its_visits_pictures_and_lists(page: Any) -> None:
    server, store, _ = page
    client = Client(server)
    status, plate = client.json("GET", "/api/plates/XY34ZZZ")
    assert status == 200 and plate["visits"][0]["cameras"] == ["gate"] and plate["visits"][0]["open"]
    [sighting] = store.search("AB12CDE")
    status, headers, crop = client.request("GET", f"/api/sightings/{sighting.id}/crop.jpg")
    assert (status, headers["content-type"], crop[:2]) == (200, "image/jpeg", b"\xff\xd8")
    assert client.request("GET", f"/api/sightings/{sighting.id}/snapshot.jpg")[0] == 404
    status, present = client.json("GET", "/api/present")
    assert {v["plate"] for v in present["visits"]} == {"AB12CDE", "=CMD1", "XY34ZZZ"}
    assert client.json("GET", "/api/cameras")[1] == {"cameras": ["drive", "gate"]}
    # Written as people write it, a plate still shows the lists it is on.
    status, plate = client.json("GET", "/api/plates/zz-99%20zzz")
    assert plate["watchlists"] == [{"list": "family", "label": None, "source": "yaml"}]


def test_edits_need_the_pages_csrf_token_and_its_origin(page: Any) -> None:
    server, store, _ = page
    client = Client(server)
    entry = {"plate": "CD34EFG", "label": "Anna"}
    status, body = client.json("POST", "/api/watchlists/visitors/entries", entry)
    assert status == 403 and "X-CSRF-Token" in body["detail"]
    csrf = client.csrf()
    status, body = client.json(
        "POST", "/api/watchlists/visitors/entries", entry, X_CSRF_Token=csrf, Origin="http://evil.example"
    )
    assert status == 403 and "cross-site" in body["detail"]
    origin = f"http://{client.host_header}"
    status, body = client.json(
        "POST", "/api/watchlists/visitors/entries", entry, X_CSRF_Token=csrf, Origin=origin
    )
    assert status == 200 and body == {
        "list": "visitors",
        "plate": "CD34EFG",
        "label": "Anna",
        "source": "store",
    }
    # A list from the YAML file is shown, read-only.
    status, body = client.json("POST", "/api/watchlists/family/entries", entry, X_CSRF_Token=csrf)
    assert status == 409
    lists = {item["name"]: item for item in client.json("GET", "/api/watchlists")[1]["lists"]}
    assert lists["family"]["source"] == "yaml" and lists["visitors"]["entries"] == [entry]
    assert (
        client.json("POST", "/api/watchlists/visitors/entries", {"plate": "x" * 30}, X_CSRF_Token=csrf)[0]
        == 400
    )
    deep = b"[" * 8000 + b"]" * 8000
    status, _, body = client.request(
        "POST", "/api/watchlists/visitors/entries", deep, Content_Type="application/json", X_CSRF_Token=csrf
    )
    assert status == 400 and b"not JSON" in body
    status, _, _ = client.request("DELETE", "/api/watchlists/visitors/entries/CD34EFG", X_CSRF_Token=csrf)
    assert status == 200 and store.watch_entries("visitors") == []


def test_a_watch_list_csv_is_bounded_on_the_way_in_and_quoted_on_the_way_out(page: Any) -> None:
    server, _, _ = page
    client = Client(server)
    csrf = client.csrf()
    status, _, body = client.request(
        "POST",
        "/api/watchlists/stolen/import",
        b"plate,label\nAA11AAA,one\nBB22BBB,\n",
        Content_Type="text/csv",
        X_CSRF_Token=csrf,
    )
    assert (status, json.loads(body)) == (200, {"imported": 2})
    status, _, text = client.request("GET", "/api/watchlists/stolen/export.csv")
    assert status == 200 and text.decode().splitlines()[1:] == ["AA11AAA,one", "BB22BBB,"]
    huge = b"plate\n" + b"CC33CCC\n" * (server.settings.max_upload_bytes // 8 + 1)
    status, _, body = client.request(
        "POST", "/api/watchlists/stolen/import", huge, Content_Type="text/csv", X_CSRF_Token=csrf
    )
    assert status == 413 and b"larger than" in body
    status, _, body = client.request(
        "POST", "/api/watchlists/stolen/import", b"\xff\xfe", Content_Type="text/csv", X_CSRF_Token=csrf
    )
    assert status == 400 and b"UTF-8" in body
    # A search's export: a plate read as "=CMD1" stays text in a spreadsheet.
    status, headers, text = client.request("GET", "/api/search.csv?camera=gate")
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    rows = text.decode().splitlines()
    assert rows[0].startswith("id,plate,seen_at") and ",'=CMD1," in rows[2]


def test_without_a_login_only_loopback_names_are_served(page: Any) -> None:
    server, _, _ = page
    status, _, body = Client(server, host=f"rebound.example:{server.port}").request("GET", "/api/cameras")
    assert status == 403 and b"allowed_hosts" in body
    assert Client(server, host=f"localhost:{server.port}").request("GET", "/api/cameras")[0] == 200


def local_address() -> str | None:
    """An address of this machine other than 127.0.0.1 to listen on: 127.0.0.2 where Linux routes
    all of 127/8 to loopback."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return None
    return "127.0.0.2"


def test_a_password_gives_a_session_cookie_and_a_token_a_header(tmp_path: Path) -> None:
    server, store = serve(tmp_path, host=local_address() or "127.0.0.1", password=PASSWORD, token=TOKEN)
    try:
        client = Client(server)
        status, _, page = client.request("GET", "/")
        assert status == 200 and b'name="password"' in page and b"csrf-token" not in page
        assert client.json("GET", "/api/cameras")[0] == 401
        form = {"Content_Type": "application/x-www-form-urlencoded"}
        status, _, page = client.request("POST", "/login", b"password=wrong", **form)
        assert status == 401 and b"Wrong password" in page
        status, headers, _ = client.request(
            "POST", "/login", b"password=" + PASSWORD.replace(" ", "+").encode(), **form
        )
        cookie = headers["set-cookie"]
        assert status == 303 and headers["location"] == "./"
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/;" in cookie
        client.cookie = cookie.split(";", 1)[0]
        assert client.json("GET", "/api/cameras")[0] == 200
        csrf = client.csrf()
        assert csrf != server.gate.open_csrf
        assert client.json("POST", "/api/watchlists/a/entries", {"plate": "AB1"}, X_CSRF_Token=csrf)[0] == 200
        # A script with the token needs no cookie and no CSRF token (nothing ambient to forge).
        script = Client(server)
        assert script.json("GET", "/api/cameras", Authorization="Bearer wrong")[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert script.json("POST", "/api/watchlists/a/entries", {"plate": "AB2"}, **bearer)[0] == 200
        # No secret of the configuration in anything the page serves.
        for path in ("/", "/static/app.js", "/api/watchlists", "/api/usage"):
            body = client.request("GET", path)[2]
            assert PASSWORD.encode() not in body and TOKEN.encode() not in body
        status, headers, _ = client.request("POST", "/logout", X_CSRF_Token=csrf)
        assert status == 303 and "Max-Age=0" in headers["set-cookie"]
        assert client.json("GET", "/api/cameras")[0] == 401
    finally:
        server.stop()
        store.close()


def test_failed_logins_are_throttled_per_client(tmp_path: Path) -> None:
    server, store = serve(tmp_path, password=PASSWORD)
    try:
        client = Client(server)
        form = {"Content_Type": "application/x-www-form-urlencoded"}
        statuses = [client.request("POST", "/login", b"password=guess", **form)[0] for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        right = b"password=" + PASSWORD.replace(" ", "+").encode()
        assert client.request("POST", "/login", right, **form)[0] == 429, "the guesser waits, right or wrong"
        # Someone else (another loopback address, as another machine would be) is not locked out by
        # the guesser: their wrong password is still a 401 and the right one lets them in.
        owner = Client(server, source="127.0.0.2")
        assert owner.request("POST", "/login", b"password=typo", **form)[0] == 401
        status, headers, _ = owner.request("POST", "/login", right, **form)
        assert status == 303 and "plate_bridge_session=" in headers["set-cookie"]
    finally:
        server.stop()
        store.close()


def test_under_a_base_path_and_in_home_assistants_ingress(tmp_path: Path) -> None:
    server, store = serve(tmp_path, base_path="/plates/", password=PASSWORD, trusted_proxies=["127.0.0.1"])
    try:
        client = Client(server)
        assert server.url.endswith("/plates/")
        assert client.request("GET", "/")[0] == 404
        # The ingress proxy logs users in itself: its requests need no password.
        status, _, page = client.request("GET", "/plates/", X_Ingress_Path="/api/hassio_ingress/abc")
        assert status == 200 and b'href="static/style.css"' in page
        assert client.request("GET", "/plates/static/app.js")[0] == 200
        status, headers, _ = client.request(
            "POST",
            "/plates/login",
            b"password=" + PASSWORD.replace(" ", "+").encode(),
            Content_Type="application/x-www-form-urlencoded",
            X_Ingress_Path="/api/hassio_ingress/abc",
        )
        assert status == 303 and "Path=/api/hassio_ingress/abc/;" in headers["set-cookie"]
    finally:
        server.stop()
        store.close()


def test_the_live_feed_streams_new_vehicles(page: Any) -> None:
    server, store, _ = page
    connection = http.client.HTTPConnection(server.settings.host, server.port, timeout=10)
    try:
        connection.request("GET", "/api/feed", headers={"Host": f"127.0.0.1:{server.port}"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        assert response.readline() == b"retry: 3000\n"
        # The feed starts from what is newest once it looks: store until an event arrives.
        [stored] = store.record([Record("NEW1", "drive", datetime.now(UTC), 0.9)])
        lines = [response.readline() for _ in range(6)]
        event = next(line for line in lines if line.startswith(b"data: "))
        body = json.loads(event.removeprefix(b"data: "))
        assert (body["id"], body["plate"]) == (stored.id, "NEW1")
    finally:
        connection.close()


def test_the_wheel_ships_the_pages_assets(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("plate_bridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "login.html", "app.js", "style.css", "icon.svg"):
        assert f"bridge/extensions/web/static/{asset}" in names


def test_plate_bridge_web_serves_the_store_and_refuses_an_open_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    config = tmp_path / "bridge.yaml"
    config.write_text(f"history:\n  data_dir: {tmp_path}\nweb:\n  host: 0.0.0.0\n")
    refused = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "web", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        refused.returncode == 2 and "set web.password" in refused.stderr and "Traceback" not in refused.stderr
    )
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "web",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = iter(process.stderr.readline, "")
        line = next((line for line in lines if "plate-bridge web:" in line), "")
        assert f"http://127.0.0.1:{port}/" in line, line
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/usage", headers={"Host": f"127.0.0.1:{port}"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["calls"] == 0
        connection.close()
    finally:
        process.terminate()
        assert process.wait(10) == 0
        if process.stderr is not None:
            process.stderr.close()


def test_no_query_string_gets_a_traceback(page: Any) -> None:
    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    server, _, _ = page
    client = Client(server)
    keys = st.sampled_from(["plate", "tolerance", "camera", "list", "since", "until", "limit", "before", "x"])

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(keys, st.text(max_size=30)), max_size=5))
    def search(pairs: list[tuple[str, str]]) -> None:
        query = "&".join(f"{key}={quote(value)}" for key, value in pairs)
        status, _, body = client.request("GET", f"/api/search?{query}")
        assert status in (200, 400), (query, status, body)
        assert b"Traceback" not in body

    search()
    assert server.counts["errors"] == 0


def test_failed_logins_count_against_an_address_or_its_ipv6_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    gate = Gate(SecretStr(PASSWORD), None, 60)
    for _ in range(10):
        assert gate.login("guess", "2001:db8:1:2::1") is None
    assert gate.throttled("2001:db8:1:2::99"), "the same /64"
    assert not gate.throttled("2001:db8:1:3::1") and not gate.throttled("192.0.2.7")
    assert gate.login(PASSWORD, "192.0.2.7") is not None


def test_the_page_comes_when_a_store_that_could_not_be_opened_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.extensions.base import ExtensionContext
    from bridge.extensions.history import extension as history_extension
    from bridge.extensions.web.extension import WebExtension
    from tests.canned import RecordingPublisher

    monkeypatch.setattr(history_extension, "STORE_RETRY_FIRST", 0.2)
    monkeypatch.setattr(history_extension, "STORE_RETRY_MAX", 0.2)
    mount = tmp_path / "mnt"
    mount.write_text("not a folder yet")
    config = load_config(
        history={"enabled": True, "data_dir": str(mount / "history")}, web={"enabled": True, "port": 0}
    )
    web = WebExtension(ExtensionContext(config=config, publisher=RecordingPublisher(), health=dict))
    web.start()  # does not raise: the bridge would go on
    try:
        assert web.server is None
        mount.unlink()
        mount.mkdir()
        deadline = time.monotonic() + 15
        while web.server is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert web.server is not None, "the page never came"
        assert Client(web.server).request("GET", "/")[0] == 200
    finally:
        web.stop()

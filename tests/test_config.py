"""Configuration: YAML and environment sources, one clear line per problem, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.reader import PlateReader

SDK = "http://127.0.0.1:8080/v1/plate-reader/"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATE_RECOGNIZER_TOKEN", "tok")
    config = load_config(Path(__file__).parents[1] / "examples" / "config.yaml")
    assert config.routes[0].topic == "cameras/+/image"
    assert config.reader.is_cloud, "with a token and no reader.url, the cloud reads the plates"


@pytest.mark.parametrize(
    ("url", "cloud"),
    [
        ("https://api.platerecognizer.com/v1/plate-reader/", True),
        ("https://API.PlateRecognizer.com:443/v1/plate-reader/", True),
        ("https://eu.api.platerecognizer.com/v1/plate-reader/", True),
        ("http://evil.example/?api.platerecognizer.com", False),
        ("http://evil.example/api.platerecognizer.com/v1/plate-reader/", False),
        ("https://api.platerecognizer.com.evil.example/v1/plate-reader/", False),
        ("https://api.platerecognizer.com@evil.example/v1/plate-reader/", False),
        ("http://sdk:8080/v1/plate-reader/", False),
    ],
)
def test_the_cloud_is_told_by_the_urls_host_not_by_a_substring(
    url: str, cloud: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLATE_RECOGNIZER_TOKEN", raising=False)
    reader = load_config(reader={"url": url, "token": "tok"}).reader
    assert reader.is_cloud is cloud
    assert PlateReader(url, token="tok").is_cloud is cloud
    if not cloud:  # an SDK needs no token; only the cloud does
        load_config(reader={"url": url})


def test_without_a_token_the_reader_defaults_to_local_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATE_RECOGNIZER_TOKEN", raising=False)
    reader = load_config().reader
    assert reader.url == "local" and reader.default_note is not None and "offline" in reader.default_note
    named = load_config(reader={"url": SDK}).reader
    assert named.url == SDK and named.default_note is None


def test_an_explicit_cloud_url_without_a_token_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATE_RECOGNIZER_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": "https://api.platerecognizer.com/v1/plate-reader/"})
    assert caught.value.problems[0].startswith("reader: the cloud URL needs a token")


def test_cpu_affinity_is_one_cpu_by_default_unless_the_offline_engine_may_read() -> None:
    config = load_config(reader={"url": SDK})
    assert config.cpu_affinity == "auto"
    assert not config.uses_offline_engine
    assert load_config(reader={"url": "local"}).uses_offline_engine
    assert load_config(reader={"url": SDK, "local_first": {"enabled": True}}).uses_offline_engine
    routes = [{"topic": "cameras/+/image", "local_first": {"enabled": True}}]
    assert load_config(reader={"url": SDK}, routes=routes).uses_offline_engine


def test_broker_tls_files_are_checked_by_path(tmp_path: Path) -> None:
    missing = tmp_path / "client.key"
    not_pem = write(tmp_path, "not a certificate")
    cases = [
        ({"ca_certs": str(missing)}, f"mqtt.tls: ca_certs {missing}: no such file"),
        ({"ca_certs": str(not_pem)}, f"mqtt.tls: ca_certs {not_pem}: cannot be loaded as a CA bundle"),
        (
            {"certfile": str(not_pem), "keyfile": str(missing)},
            f"mqtt.tls: keyfile {missing}: no such file",
        ),
        ({"certfile": str(not_pem)}, f"mqtt.tls: certfile {not_pem}: cannot be loaded as a certificate"),
    ]
    for tls, expected in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(reader={"url": SDK}, mqtt={"tls": tls})
        [problem] = caught.value.problems
        assert problem.startswith(expected), problem


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"reader: {{url: '{SDK}'}}\n"))
    assert config.mqtt.host == "localhost" and config.mqtt.port == 1883
    assert config.mqtt.base_topic == "plate-bridge" and config.mqtt.client_id == "plate-bridge"
    assert config.reader.timeout == 15 and config.reader.max_calls_per_second == 1
    assert config.reader.concurrency == 2
    [route] = config.routes
    assert route.result_topic == "{base_topic}/{camera_id}/result"
    assert route.error_topic == "{base_topic}/{camera_id}/error"
    assert route.qos == 1 and route.retain is False
    assert config.max_payload_bytes == 10 * 1024 * 1024


def test_every_problem_gets_its_own_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATE_RECOGNIZER_TOKEN", raising=False)
    path = write(
        tmp_path,
        """
mqtt: {hots: localhost}
reader: {url: "https://api.platerecognizer.com/v1/plate-reader/"}
routes:
  - topic: cameras/+/image
    regions: [gb, zz]
  - topic: "cameras/#/image"
""",
    )
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "mqtt.hots: unknown key" in joined
    assert "routes.0.regions: unknown region code 'zz'" in joined
    assert "routes.1.topic" in joined and "'#' must be a whole level and the last one" in joined
    assert "reader: the cloud URL needs a token" in joined
    assert len(problems) == 4


def test_yaml_no_is_norway_and_must_be_quoted(tmp_path: Path) -> None:
    path = write(tmp_path, f"reader: {{url: '{SDK}'}}\nroutes: [{{topic: a/+, regions: [no]}}]\n")
    [problem] = problems_of(path)
    assert "quote it" in problem and 'regions: ["no"]' in problem
    quoted = write(tmp_path, f"reader: {{url: '{SDK}'}}\nroutes: [{{topic: a/+, regions: ['no', US-CA]}}]\n")
    assert load_config(quoted).routes[0].regions == ("no", "us-ca")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATE_BRIDGE__MQTT__HOST", "broker.example")
    monkeypatch.setenv("PLATE_BRIDGE__MQTT__PORT", "1884")
    monkeypatch.setenv("PLATE_RECOGNIZER_TOKEN", "from-env")
    config = load_config(write(tmp_path, "mqtt: {host: filehost}\n"))
    assert config.mqtt.host == "broker.example" and config.mqtt.port == 1884
    assert config.reader.token is not None and config.reader.token.get_secret_value() == "from-env"


def test_secrets_are_masked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"mqtt: {{username: cam, password: hunter2-pw}}\nreader: {{url: '{SDK}', token: tok-123456}}\n",
    )
    text = repr(load_config(path).masked()) + repr(load_config(path))
    assert "hunter2-pw" not in text and "tok-123456" not in text
    assert "**********" in text


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("mqtt: {password: x}\n", "mqtt: mqtt.password is set without mqtt.username"),
        (
            "reader: {url: 'ftp://x'}\n",
            "reader.url: reader.url 'ftp://x' must start with http:// or https://",
        ),
        ("routes: [{topic: 'a/+', result_topic: '{base_topic}/{plate}'}]\n", "only {base_topic}"),
        ("routes: [{topic: 'a/+', qos: 3}]\n", "routes.0.qos"),
        ("routes: [{topic: 'a/b+'}]\n", "'+' must be a whole level"),
        ("routes: []\n", "routes: List should have at least 1 item"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("mqtt: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, yaml_text: str, expected: str) -> None:
    if not yaml_text.startswith(("reader", "-", "mqtt: [")):
        yaml_text += f"reader: {{url: '{SDK}'}}\n"
    problems = problems_of(write(tmp_path, yaml_text))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("all", "all"), (1, 1), ("3", 3)])
def test_cpu_affinity_values(value: object, expected: object) -> None:
    assert load_config(reader={"url": SDK}, cpu_affinity=value).cpu_affinity == expected


@pytest.mark.parametrize("value", [-1, "some", 1.5])
def test_cpu_affinity_rejects_what_is_not_a_cpu(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": SDK}, cpu_affinity=value)
    assert caught.value.problems == [f"cpu_affinity: {value!r} is not auto, all or a CPU number (0, 1, ...)"]

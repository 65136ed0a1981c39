"""The README stays a few screens, and nothing it once said is lost: every old section is on the site.

The site itself is built by `make test` (`mkdocs build --strict`): these tests check what the build
cannot — the README's length and links, the map of its old sections, and that the generated pages
come from the code without the optional extras.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from bridge.config import BridgeConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MOVES = tomllib.loads((ROOT / "tests" / "readme_moves.toml").read_text(encoding="utf-8"))
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)(?:\s+\{[^}]*\})?\s*$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
# What the docs build must never pull in: the offline reader's and the server's extras.
HEAVY = ("onnxruntime", "onnx", "cv2", "rapidocr", "numpy", "starlette", "uvicorn")


def headings(path: Path) -> set[str]:
    """The text of every markdown heading of a file, outside code blocks."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.add(match["text"])
    return found


def nav_pages(node: Any) -> set[str]:
    """Every page named in mkdocs.yml's nav."""
    if isinstance(node, str):
        return {node}
    if isinstance(node, list):
        return set().union(*(nav_pages(item) for item in node))
    if isinstance(node, dict):
        return set().union(*(nav_pages(value) for value in node.values()))
    return set()


class MkdocsLoader(yaml.SafeLoader):
    """mkdocs.yml may hold `!!python/name:` and `!ENV` tags (material's emoji, env settings): read
    them as nothing, since only the nav matters here."""


MkdocsLoader.add_multi_constructor("", lambda loader, suffix, node: None)


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_fits_in_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move a section to docs/ instead"


@pytest.mark.parametrize(("heading", "pages"), sorted(MOVES["moves"].items()))
def test_every_old_readme_section_is_on_a_page(heading: str, pages: list[str]) -> None:
    mkdocs = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=MkdocsLoader)
    nav = nav_pages(mkdocs["nav"])
    for page in pages:
        path = ROOT / page
        assert path.is_file(), f"{heading!r} moved to {page}, which does not exist"
        assert heading in headings(path), f"{page} has no heading {heading!r}"
        if page.startswith("docs/"):
            assert page.removeprefix("docs/") in nav, f"{page} is not in mkdocs.yml's nav"


@pytest.mark.parametrize(("passage", "page"), sorted(MOVES["passages"].items()))
def test_every_old_readme_passage_is_on_its_page(passage: str, page: str) -> None:
    assert passage in (ROOT / page).read_text(encoding="utf-8"), f"{page} lost {passage!r}"


def test_the_readme_links_to_files_that_exist() -> None:
    for match in LINK.finditer(README.read_text(encoding="utf-8")):
        target = match["target"]
        if target.startswith(("http://", "https://", "#")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor and path.endswith(".md"):
            slugs = {re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") for text in headings(ROOT / path)}
            assert anchor in slugs, f"README.md links to {target}: {path} has no heading {anchor!r}"


def test_the_readme_configuration_loads() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("## Configuration") :].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(**yaml.safe_load(block))
    assert config.homeassistant.enabled
    assert [route.topic for route in config.routes] == ["cameras/+/image"]


def test_the_configuration_reference_names_every_key() -> None:
    reference = load_hooks().configuration_reference()
    for name in BridgeConfig.model_fields:
        assert f"| `{name}` |" in reference, f"the reference lacks the top-level key {name!r}"
    for name in BridgeConfig.model_fields["mqtt"].annotation.model_fields:  # type: ignore[union-attr]
        assert f"| `mqtt.{name}` |" in reference
    assert "| `routes[].reuse.threshold` |" in reference
    assert "| `watchlists.<name>.plates[].label` |" in reference


def test_the_payload_reference_has_every_schema() -> None:
    reference = load_hooks().payloads_reference()
    for path in sorted((ROOT / "schemas").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert f"### {schema['title']}" in reference
        for name in schema.get("properties", {}):
            assert f"| `{name}` |" in reference, f"{path.name}: {name} is not in the reference"


def test_the_generated_pages_need_no_optional_extra() -> None:
    script = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('h', {str(ROOT / 'docs' / 'hooks.py')!r})\n"
        "hooks = importlib.util.module_from_spec(spec); spec.loader.exec_module(hooks)\n"
        "hooks.configuration_reference(); hooks.payloads_reference()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", f"the docs build imports {done.stdout.strip()}"


def test_repository_pages_get_site_links() -> None:
    hooks = load_hooks()
    text = hooks.site_links(
        "see [the method](benchmarks/README.md#live-cameras), [x](examples/config.yaml), [y](#here)",
        "development/benchmark-results.md",
    )
    assert "[the method](benchmark-method.md#live-cameras)" in text
    assert "x (`examples/config.yaml`)" in text
    assert "[y](#here)" in text


def test_a_section_an_extension_adds_is_in_the_reference() -> None:
    """An extension's section (here added with pydantic's create_model, as a plugin might) appears with
    its field descriptions; a model held at two keys is described once and both link to it."""
    from pydantic import BaseModel, Field, create_model

    class GateSettings(BaseModel):
        """Opens the gate for listed plates."""

        relay_topic: str = Field("gate/relay", description="Where the open command goes.")

    extended = create_model(
        "Extended",
        __base__=BridgeConfig,
        gate=(GateSettings, Field(default_factory=GateSettings, description="The gate extension.")),
        spare_gate=(GateSettings | None, Field(None, description="A second gate.")),
    )
    lines = load_hooks().section("", extended, {extended: "top-level"})
    text = "\n".join(lines)
    assert '| `gate.relay_topic` | str | `"gate/relay"` | Where the open command goes. |' in text
    assert "| `gate` | [section](#gate) |" in text
    assert "| `spare_gate` | [section](#gate) \\| null |" in text
    assert text.count("## `gate`") == 1
    assert "spare_gate.relay_topic" not in text

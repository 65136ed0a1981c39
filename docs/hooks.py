"""mkdocs hooks: the pages generated at build time, so none of them can go stale.

- `<!-- generated: configuration -->` in a page becomes the configuration reference, walked from
  `bridge.config.BridgeConfig` through public pydantic APIs (`model_fields`, field descriptions, model
  docstrings) only: sections that extensions add to the model appear without a change here.
- `<!-- generated: payloads -->` becomes the payload reference, one section per `schemas/*.json`.
- `development/benchmark-results.md` and `development/benchmark-method.md` are BENCHMARKS.md and
  benchmarks/README.md as committed (the benchmarks write them), with their links made site links.

Nothing here imports the optional parts (onnxruntime, OpenCV, Starlette): `bridge.config` needs none.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined, to_jsonable_python

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
MARKER = re.compile(r"<!-- generated: (?P<name>[a-z-]+) -->")
# Repository files shown on the site as pages, and where.
REPO_PAGES = {
    "BENCHMARKS.md": "development/benchmark-results.md",
    "benchmarks/README.md": "development/benchmark-method.md",
}
CONSTRAINTS = {
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "min_length": "at least {} long",
    "max_length": "at most {} long",
}


def cell(text: str) -> str:
    """Text made safe for one cell of a markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


# --- configuration reference ----------------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `int`, `list of route`, `"3.1.1" | "5"`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (list, tuple, set, frozenset):
        items = [arg for arg in args if arg is not Ellipsis]
        return f"list of {type_name(items[0])}" if items else "list"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}" if args else "map"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def models_in(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models a field's type holds, each with the suffix its keys get: `` (a section), `[]` (a
    list of them), `.<name>` (a map of them)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
    elif origin is typing.Annotated:
        yield from models_in(args[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from models_in(arg)
    elif origin in (list, tuple, set, frozenset):
        for arg in args:
            yield from (("[]" + suffix, model) for suffix, model in models_in(arg))
    elif origin is dict and args:
        yield from ((".<name>" + suffix, model) for suffix, model in models_in(args[1]))


def default_of(field: Any) -> str:
    if field.is_required():
        return "required"
    default = field.default
    if default is PydanticUndefined and field.default_factory is not None:
        try:
            default = field.default_factory()
        except TypeError:  # a factory that wants the validated data: no single default to show
            return "—"
    if isinstance(default, BaseModel) or (isinstance(default, dict) and not default and models_of(field)):
        return "see below"
    if isinstance(default, SecretStr):
        return "(secret)"
    return f"`{json.dumps(to_jsonable_python(default))}`"


def models_of(field: Any) -> list[tuple[str, type[BaseModel]]]:
    return list(models_in(field.annotation))


def constraints_of(field: Any) -> str:
    said = []
    for item in field.metadata:
        for attr, form in CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                said.append(form.format(value) if "{}" in form else f"{form} {value}")
    return ", ".join(said)


def anchor(key: str) -> str:
    """The id of a key's section: `routes[].reuse` -> `routes-reuse`."""
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def model_doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from a base model)."""
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(doc.split())


def section(path: str, model: type[BaseModel], seen: dict[type[BaseModel], str]) -> list[str]:
    """A table of `model`'s keys under `path`, then a section for each model it holds (`seen`: the
    anchor of every model's section so far, so a model held twice is described once)."""
    lines = [f"## `{path}` {{ #{anchor(path)} }}" if path else "## Top level { #top-level }", ""]
    if doc := model_doc(model):
        lines += [doc, ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        description = field.description or ""
        if constraints := constraints_of(field):
            description = f"{description} ({constraints})" if description else constraints
        held = models_of(field)
        for suffix, held_model in held:
            if held_model not in seen:
                seen[held_model] = anchor(key + suffix)
                nested.append((key + suffix, held_model))
        if held and not description:
            description = model_doc(held[0][1])
        kind = cell(type_name(field.annotation))
        if held:  # the type names the section below, as a link to it
            kind = kind.replace("section", f"[section](#{seen[held[0][1]]})", 1)
        lines.append(f"| `{key}` | {kind} | {cell(default_of(field))} | {cell(description)} |")
    lines.append("")
    for key, held_model in nested:
        lines += section(key, held_model, seen)
    return lines


def configuration_reference() -> str:
    """Every key of the configuration, from the pydantic models' descriptions."""
    from bridge.config import BridgeConfig

    return "\n".join(section("", BridgeConfig, {BridgeConfig: "top-level"}))


# --- payloads -------------------------------------------------------------------------------------------

PAYLOAD_GROUPS = {
    "Payloads the bridge publishes": ["plate-event", "error-event"],
    "Payloads a camera may publish": ["image-message"],
}
OTHERS = "Payloads of the Plate Recognizer service"


def schema_name(path: Path | str) -> str:
    """`plate-event` for `.../plate-event.schema.json`: the id of its section."""
    return Path(path).name.removesuffix(".json").removesuffix(".schema")


def ref_link(ref: str, here: str) -> str:
    """A `$ref` as a link to the section that describes its target."""
    document, _, pointer = ref.partition("#")
    name = schema_name(document) if document else here
    parts = pointer.strip("/").split("/") if pointer else []
    if len(parts) == 2 and parts[0] == "$defs":
        return f"[`{parts[1]}`](#{name}-{anchor(parts[1])})"
    if len(parts) == 2 and parts[0] == "properties":
        return f"[`{parts[1]}` of {name}](#{name})"
    return f"[{name}](#{name})"


def schema_type(node: dict[str, Any], here: str) -> str:
    if "$ref" in node:
        return ref_link(node["$ref"], here)
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        shown = " | ".join(f"`{json.dumps(value)}`" for value in node["enum"][:12])
        return shown + (f" … ({len(node['enum'])} in all)" if len(node["enum"]) > 12 else "")
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " or ".join(schema_type(option, here) for option in node[key])
    kind = node.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and isinstance(node.get("items"), dict):
        items = schema_type(node["items"], here)
        kinds = [f"array of {items}" if k == "array" else k for k in kinds]
    return " or ".join(kinds)


def properties_table(node: dict[str, Any], here: str) -> list[str]:
    properties = node.get("properties") or {}
    if not properties:
        return []
    required = set(node.get("required", []))
    lines = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for name, prop in properties.items():
        lines.append(
            f"| `{name}` | {cell(schema_type(prop, here))} | {'yes' if name in required else ''} | "
            f"{cell(prop.get('description', ''))} |"
        )
    return [*lines, ""]


def schema_section(path: Path) -> list[str]:
    schema = json.loads(path.read_text(encoding="utf-8"))
    here = schema_name(path)
    lines = [f"### {schema.get('title', path.name)} {{ #{here} }}", "", f"`schemas/{path.name}`", ""]
    if description := schema.get("description"):
        lines += [" ".join(description.split()), ""]
    if schema.get("type") != "object":
        lines += [f"Type: {schema_type(schema, here)}.", ""]
    lines += properties_table(schema, here)
    for name, definition in (schema.get("$defs") or {}).items():
        lines += [f"#### `{name}` of {here} {{ #{here}-{anchor(name)} }}", ""]
        if definition.get("description"):
            lines += [" ".join(definition["description"].split()), ""]
        lines += properties_table(definition, here) or [f"Type: {schema_type(definition, here)}.", ""]
    lines += [f'??? note "The whole schema: {path.name}"', "", "    ```json"]
    lines += ["    " + line for line in json.dumps(schema, indent=2).splitlines()]
    return [*lines, "    ```", ""]


def payloads_reference() -> str:
    """One section per JSON Schema of `schemas/`, grouped by who sends the payload."""
    stems = {schema_name(path): path for path in sorted(SCHEMAS.glob("*.json"))}
    lines: list[str] = []
    grouped = {stem for stems_of_group in PAYLOAD_GROUPS.values() for stem in stems_of_group}
    groups = {**PAYLOAD_GROUPS, OTHERS: [stem for stem in stems if stem not in grouped]}
    for title, members in groups.items():
        present = [stems[stem] for stem in members if stem in stems]
        if present:
            lines += [f"## {title}", ""]
            for path in present:
                lines += schema_section(path)
    return "\n".join(lines)


GENERATORS = {"configuration": configuration_reference, "payloads": payloads_reference}


# --- repository pages -----------------------------------------------------------------------------------

LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def site_links(markdown: str, page: str) -> str:
    """Links of a repository file made to work on the site: to another shown file, its page; to a
    file the site does not show, its path as code."""
    here = Path(page).parent

    def fix(match: re.Match[str]) -> str:
        target = match["target"]
        if target.startswith(("http://", "https://", "#", "mailto:")):
            return match[0]
        path, _, anchor = target.partition("#")
        if path in REPO_PAGES:
            relative = os.path.relpath(REPO_PAGES[path], here)
            return f"[{match['text']}]({relative}{'#' + anchor if anchor else ''})"
        return f"{match['text']} (`{path}`)" if match["text"].strip("`") != path else f"`{path}`"

    return LINK.sub(fix, markdown)


def repo_page(source: str) -> str:
    text = (ROOT / source).read_text(encoding="utf-8")
    note = f"*This page is `{source}` as committed; the benchmarks write it.*\n\n"
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{note}{site_links(rest, REPO_PAGES[source])}"


# --- mkdocs hooks ---------------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for source, page in REPO_PAGES.items():
        files.append(File.generated(config, page, content=repo_page(source)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def generate(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATORS:
            raise ValueError(
                f"{page.file.src_uri}: no generator named {name!r} (known: {sorted(GENERATORS)})"
            )
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)

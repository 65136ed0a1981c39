"""Print the pip requirements of Home Assistant integrations and of everything they depend on.

Run with the Python of a Home Assistant virtual environment: `python requirements.py DOMAIN...`.
It reads the integrations' manifests only (nothing is imported), so the test can install exactly
what the Home Assistant it starts will set up, and start it with `--skip-pip`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from homeassistant import bootstrap, components

ROOT = Path(components.__path__[0])


def requirements(domains: list[str]) -> list[str]:
    seen: set[str] = set()
    found: list[str] = []
    todo = list(domains)
    while todo:
        domain = todo.pop()
        if domain in seen or not (ROOT / domain / "manifest.json").is_file():
            continue
        seen.add(domain)
        manifest = json.loads((ROOT / domain / "manifest.json").read_text())
        found += manifest.get("requirements", [])
        # after_dependencies too: an integration imports them when they are there (analytics, recorder).
        todo += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
    return sorted(set(found))


if __name__ == "__main__":
    # What every Home Assistant sets up, whatever its configuration says, plus the ones asked for.
    always = set(bootstrap.DEFAULT_INTEGRATIONS) | bootstrap.CORE_INTEGRATIONS | {"logger", "system_log"}
    print("\n".join(requirements(sorted(always | set(sys.argv[1:])))))

"""Rewrite `bridge.*` module paths after modules move: `python scripts/rewrite_imports.py MOVES FILE...`.

MOVES holds one `old new` pair of dotted module paths a line (the layers branch wrote
/work/notes/moves.txt this way). Rewrites dotted paths (imports, strings such as monkeypatch
targets), `from bridge import name` of a moved module, and `bridge/old.py` paths in comments.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def load(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            old, new = line.split()
            pairs.append((old, new))
    return pairs


def rewrite(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, text)
        old_path, new_path = old.replace(".", "/") + ".py", new.replace(".", "/") + ".py"
        text = re.sub(rf"(?<![\w/]){re.escape(old_path)}", new_path, text)
        parent, _, name = old.rpartition(".")
        new_parent, _, new_name = new.rpartition(".")

        def from_import(
            match: re.Match[str],
            parent: str = parent,
            name: str = name,
            new_parent: str = new_parent,
            new_name: str = new_name,
        ) -> str:
            names = [n.strip() for n in match.group(2).split(",")]
            if name not in names:
                return match.group(0)
            rest = [n for n in names if n != name]
            moved = f"{match.group(1)}from {new_parent} import {new_name}"
            if new_name != name:
                moved += f" as {name}"
            if match.group(3):
                moved += f"  {match.group(3)}"
            if not rest:
                return moved
            return f"{match.group(1)}from {parent} import {', '.join(rest)}\n{moved}"

        text = re.sub(
            rf"^([ \t]*)from {re.escape(parent)} import ([\w, ]+?)[ \t]*(#.*)?$",
            from_import,
            text,
            flags=re.MULTILINE,
        )
    return text


def main() -> None:
    pairs = load(Path(sys.argv[1]))
    for name in sys.argv[2:]:
        path = Path(name)
        before = path.read_text()
        after = rewrite(before, pairs)
        if after != before:
            path.write_text(after)


if __name__ == "__main__":
    main()

"""The history store: every vehicle with its pictures, visits, run-time watch lists (issue 22).

`HistoryStore` (store.py) is the store the web page and `plate-bridge web` read; `HistoryExtension`
(extension.py) fills it while the bridge runs. The extension's module imports SQLAlchemy; this
package's `__init__` does not, so the extension table stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.extensions.history.extension import HistoryExtension

__all__ = ["HistoryExtension"]


def __getattr__(name: str) -> Any:
    if name == "HistoryExtension":
        from bridge.extensions.history.extension import HistoryExtension

        return HistoryExtension
    raise AttributeError(name)

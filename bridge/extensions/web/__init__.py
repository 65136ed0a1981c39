"""The web page: live plates, search, a plate's visits and pictures, who is present, watch lists, usage.

Served by `plate-bridge run` (the `web:` section; `WebExtension`) and by `plate-bridge web` (against
the same history store). Everything it shows comes from the history store (bridge/extensions/history/).
"""

from bridge.extensions.web.extension import WebExtension

__all__ = ["WebExtension"]

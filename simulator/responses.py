"""The simulator's JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as StarletteJSONResponse


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response (UTF-8, no escapes), except for a body that
    holds a lone surrogate, which UTF-8 cannot encode: it goes out with
    `\\uXXXX` escapes (`"\\ud800"` is valid JSON text, and a real provider
    can send it), so a test can script a model reply a client must survive
    instead of the simulator answering 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(
                content, ensure_ascii=True, allow_nan=False, indent=None, separators=(",", ":")
            ).encode("ascii")

"""Provider-side errors the simulator answers with.

Routes raise `ProviderError`; each dialect renders it in its provider's error
shape, so one code path produces both OpenAI's and Anthropic's bodies.
"""

from __future__ import annotations


class ProviderError(Exception):
    """An HTTP error as a provider would return it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = headers or {}


def default_message(status: int) -> str:
    messages = {
        400: "Bad request.",
        401: "Invalid or missing API key.",
        403: "Permission denied.",
        404: "Not found.",
        408: "Request timed out.",
        409: "Conflict.",
        429: "Rate limit reached. Please retry later.",
        500: "The server had an error while processing your request.",
        502: "Bad gateway.",
        503: "The server is overloaded or not ready yet.",
        529: "Overloaded.",
    }
    return messages.get(status, f"HTTP {status}.") + " (simulated fault)"

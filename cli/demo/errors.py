"""The one error of the demo."""


class DemoError(RuntimeError):
    """The demo could not set up (stack, knowledge, registry or simulator)."""

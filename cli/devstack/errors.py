"""The one error of the dev stack."""


class DevStackError(RuntimeError):
    """A dev-stack service could not be started or is misconfigured."""

"""The simulator's script for the demo: the classifier's verdict on each
ticket, which the built-in SIMULATOR cannot judge by itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cli.demo.errors import DemoError
from cli.demo.tickets import SampleTicket

SCRIPTED_NOTE = (
    "The models are the built-in SIMULATOR, which cannot judge a ticket, so the "
    "classifier's verdict for each ticket is scripted (one single-use simulator rule "
    "per ticket). Everything after the verdict runs for real: routing, retrieval, "
    "citation and personal-data checks, approvals, and cost accounting. The simulator's "
    "replies are placeholder text that echoes the prompt."
)


def classifier_rule(ticket: SampleTicket) -> Any:
    """A single-use simulator rule answering the classify step of this
    ticket only, so a shared simulator is left as it was once it is used."""
    from simulator.models import Rule

    return Rule(
        model="sim-mini",
        match=f"Classify this ticket(?s:.*){re.escape(ticket.message)}",
        json=ticket.verdict.as_json(),
        times=1,
    )


async def script_verdicts(simulator_url: str, tickets: Iterable[SampleTicket]) -> None:
    """Add one classifier rule per ticket to the simulator at `simulator_url`."""
    from simulator.control import SimulatorControl, SimulatorControlError

    try:
        async with SimulatorControl(simulator_url) as control:
            await control.add_rules(*(classifier_rule(t) for t in tickets))
    except (SimulatorControlError, OSError) as exc:
        raise DemoError(f"cannot script the simulator at {simulator_url}: {exc}") from exc

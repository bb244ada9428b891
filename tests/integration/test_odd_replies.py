"""Replies a provider may really send that Temporal's payloads cannot carry
as they are: the run completes, the call counted once."""

from __future__ import annotations

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec


async def test_a_lone_surrogate_in_a_reply_completes_the_run_with_u_fffd(
    runner: ChainRunner, sim: SimulatorControl, registry
) -> None:
    """The simulator sends `"\\ud800"` (valid JSON text); before the gateway
    replaced it, the paid reply failed to serialise as the activity's result
    and every retry failed the same way (AllModelsFailed)."""
    await sim.add_rules(Rule(model="sim-mini", reply="caf\ud800 ok\x00end"))
    spec = load_spec(
        {
            "name": "odd_reply",
            "defaults": FAST_RETRY,
            "steps": [{"name": "answer", "kind": "model", "model": "cheap", "prompt": "Hi"}],
        },
        registry,
    )

    result = await runner.run(spec, {})

    assert result.status == "completed"
    assert result.output == "caf\ufffd ok\x00end"
    [call] = result.steps["answer"].calls
    assert call.outcome == "ok" and call.cost_usd > 0
    assert result.usage.per_model["cheap"].calls == 1
    assert result.usage.cost_usd == call.cost_usd
    sent = await sim.calls()
    assert [(c.outcome, c.reply) for c in sent] == [("completed", "caf\ud800 ok\x00end")]

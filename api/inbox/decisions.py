"""Sending a reviewer's decision from the inbox, and saying plainly why one
was not applied.

The decision goes through `api.approvals.decide`, exactly as
POST /v1/runs/{id}/approvals/{approval_id}: the workflow's validator refuses
a decided approval, a payload that changed since the reviewer saw it (the
form carries the hash of what it showed), a second vote by the same
reviewer, or a missing role. Each refusal becomes a `Refusal` the page shows
above the refreshed approval, so nothing is overwritten silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from api import approvals
from api.inbox.auth import InboxUser
from api.schemas import DecisionRequest, DecisionResult
from core.problems import ApiProblem
from runs.client import RunClient

DECISIONS = ("approve", "reject", "edit")
MAX_REASON = 10_000


@dataclass(frozen=True)
class Refusal(Exception):
    """Why a decision was not applied: an HTTP status, a headline and a sentence."""

    status: int
    title: str
    message: str
    kind: str


_GONE = (
    "Already decided",
    "This approval is no longer open: it was already decided, or its run has ended. "
    "Your decision was not applied.",
)

_BY_CODE: dict[str, tuple[int, str, str]] = {
    "approval_already_decided": (
        409,
        "Already decided",
        "Someone else already decided this approval. Your decision was not applied; "
        "the current state is below.",
    ),
    "stale_payload": (
        409,
        "The text changed",
        "The text was changed after you opened it (an edit by another reviewer). Your "
        "decision was not applied: read the current text below and decide again.",
    ),
    "reviewer_already_decided": (
        409,
        "You already decided this",
        "Your earlier decision on this approval stands; it needs another reviewer now.",
    ),
    "reviewer_role_missing": (
        403,
        "Not your approval",
        "Your key lacks the role this approval requires.",
    ),
    "approval_not_found": (409, *_GONE),
    "run_not_found": (409, *_GONE),
    "run_not_running": (409, *_GONE),
    "decision_timeout": (
        504,
        "No answer yet",
        "No worker answered within 30 seconds; the decision may still be applied. "
        "Reload this approval before deciding again.",
    ),
}


def check_fields(decision: str, comment: str, edited: str | None) -> None:
    """Refuse a form that cannot be a decision before anything is sent."""
    if decision not in DECISIONS:
        raise Refusal(
            422, "Unknown decision", f"{decision!r} is not approve, reject or edit.", "invalid"
        )
    if decision == "reject" and not comment.strip():
        raise Refusal(
            422,
            "A reason is required",
            "Say why you reject it: the reason goes into the audit log and back to the run.",
            "invalid",
        )
    if len(comment) > MAX_REASON:
        raise Refusal(
            422, "Reason too long", f"Keep the reason under {MAX_REASON:,} characters.", "invalid"
        )
    if decision == "edit" and edited is None:
        raise Refusal(422, "No edited text", "An edit needs the edited text.", "invalid")


async def submit(
    runs: RunClient,
    user: InboxUser,
    *,
    run_id: str,
    approval_id: str,
    decision: str,
    payload_hash: str,
    comment: str,
    edited: str | None,
) -> DecisionResult:
    """Send the decision; Refusal naming why it was not applied."""
    check_fields(decision, comment, edited)
    try:
        body = DecisionRequest(
            decision=decision,  # type: ignore[arg-type]
            payload_hash=payload_hash,
            comment=comment.strip() or None,
            edited_output=edited if decision == "edit" else None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Refusal(422, "The form is not valid", f"{where}: {first['msg']}", "invalid") from None
    try:
        return await approvals.decide(
            runs, run_id=run_id, approval_id=approval_id, body=body, principal=user.principal
        )
    except ApiProblem as problem:
        status, title, message = _BY_CODE.get(
            problem.code,
            (503, "Could not send the decision", f"{problem.message}. Try again shortly."),
        )
        raise Refusal(status, title, message, problem.code) from None

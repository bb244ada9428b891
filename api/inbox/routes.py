"""The inbox's pages: sign-in and sign-out, the list (and the fragment its
page polls), one approval, the edit preview, the decision, and a reviewer's
recent decisions.

Routes are thin: they read the session (`api.inbox.auth`), check the CSRF
token and origin of every POST, and hand the work to `listing`, `detail`
and `decisions`. Every refusal is a page (or, for the poll, JSON) with a
clear status and sentence; none is a 500.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.deps import StateDep
from api.inbox import decisions
from api.inbox.auth import (
    COOKIE_PATH,
    SESSION_COOKIE,
    InboxUser,
    SignInRefused,
    csrf_ok,
    resolve,
    sign_in,
    sign_out,
)
from api.inbox.detail import Detail, NotVisible, load_detail
from api.inbox.forms import BadForm, read_form, same_origin
from api.inbox.listing import STATUS_FILTERS, InboxList, item_url, load_inbox, neighbour
from api.inbox.records import recent_decisions
from api.inbox.rendering import diff_counts, word_diff
from api.inbox.settings import InboxSettings
from api.inbox.templating import make_templates
from api.schemas import RUN_ID_PATTERN
from api.state import ApiState
from core.chain_spec import CHAIN_NAME_PATTERN
from core.logging import get_logger
from core.problems import ApiProblem
from runs.client import RunClient

log = get_logger(__name__)

router = APIRouter(prefix="/inbox", include_in_schema=False)
templates = make_templates()

RunIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=RUN_ID_PATTERN)]
ApprovalIdPath = Annotated[str, Path(min_length=1, max_length=200)]
_NEXT = re.compile(r"^/inbox(?:/[A-Za-z0-9_.:%@/-]*)?(?:\?[A-Za-z0-9_.:%=&+-]*)?$")
_CHAIN = re.compile(CHAIN_NAME_PATTERN)


def inbox_settings(request: Request) -> InboxSettings:
    settings: InboxSettings | None = getattr(request.app.state, "inbox_settings", None)
    if settings is None:
        settings = InboxSettings()
        request.app.state.inbox_settings = settings
    return settings


# -- helpers ---------------------------------------------------------------------------


async def current_user(request: Request, state: ApiState) -> InboxUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await state.database.read(resolve, token=token, admin_key=state.settings.admin_key)


async def run_client(state: ApiState) -> RunClient:
    client = await state.temporal.get()
    return RunClient(client, task_queue=state.settings.task_queue, catalog=state.catalog)


def page(
    request: Request,
    name: str,
    user: InboxUser | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    settings = inbox_settings(request)
    values = {
        "user": user,
        "csrf_token": user.csrf_token if user else "",
        "poll_ms": int(settings.poll_interval_s * 1000),
        "title": "Chorus inbox",
        "notice": None,
        **context,
    }
    return templates.TemplateResponse(request, name, values, status_code=status_code)


def error_page(
    request: Request, user: InboxUser | None, status_code: int, title: str, message: str
) -> HTMLResponse:
    return page(
        request,
        "error.html",
        user,
        status_code=status_code,
        title=f"{title} · Chorus inbox",
        heading=title,
        message=message,
    )


def to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = urlencode({"next": target}) if target != "/inbox" else ""
    return RedirectResponse("/inbox/sign-in" + (f"?{query}" if query else ""), status_code=303)


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a page of the inbox only (no open redirect)."""
    if value and _NEXT.match(value) and "//" not in value and ".." not in value:
        return value
    return "/inbox"


def cookie_secure(request: Request) -> bool:
    configured = inbox_settings(request).secure_cookie
    return configured if configured is not None else request.url.scheme == "https"


async def checked_post(
    request: Request, state: ApiState
) -> tuple[InboxUser | None, dict[str, str] | Response]:
    """The user and form of a POST, or the response refusing it: not signed in
    (303 to sign-in), another origin or a missing/wrong CSRF token (403), a
    body that is not a form (400)."""
    user = await current_user(request, state)
    if user is None:
        return None, to_sign_in(request)
    if not same_origin(request):
        return user, error_page(
            request, user, 403, "Refused", "This form was sent from another site."
        )
    try:
        form = await read_form(request)
    except BadForm as exc:
        return user, error_page(request, user, 400, "Bad form", exc.message)
    if not csrf_ok(user, form.get("csrf_token")):
        return user, error_page(
            request,
            user,
            403,
            "Form expired",
            "This form is missing its security token or it belongs to another session. "
            "Reload the page and try again.",
        )
    return user, form


def problem_page(request: Request, user: InboxUser | None, problem: ApiProblem) -> HTMLResponse:
    status = 503 if problem.code in ("temporal_unavailable", "database_unavailable") else 502
    if problem.code == "database_busy":
        status = 503
    return error_page(request, user, status, "Temporarily unavailable", problem.message)


# -- sign-in ---------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request,
    state: StateDep,
    next: Annotated[str | None, Query(max_length=500)] = None,
    signed_out: Annotated[bool, Query()] = False,
) -> Response:
    try:
        user = await current_user(request, state)
    except ApiProblem as problem:
        return problem_page(request, None, problem)
    if user is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(
        request,
        "sign_in.html",
        None,
        title="Sign in · Chorus inbox",
        next=safe_next(next),
        error=None,
        notice="You are signed out." if signed_out else None,
    )


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in_submit(request: Request, state: StateDep) -> Response:
    def refuse(status_code: int, message: str, next_url: str = "/inbox") -> Response:
        return page(
            request,
            "sign_in.html",
            None,
            status_code=status_code,
            title="Sign in · Chorus inbox",
            next=next_url,
            error=message,
        )

    if not same_origin(request):
        return refuse(403, "This form was sent from another site.")
    try:
        form = await read_form(request)
    except BadForm as exc:
        return refuse(400, exc.message)
    next_url = safe_next(form.get("next"))
    ttl = timedelta(seconds=inbox_settings(request).session_ttl_s)
    try:
        user, token = await state.database.write(
            sign_in, presented=form.get("key", ""), admin_key=state.settings.admin_key, ttl=ttl
        )
    except SignInRefused as refused:
        log.info("inbox sign-in refused", reason=refused.message)
        return refuse(401 if "unknown" in refused.message else 403, refused.message, next_url)
    except ApiProblem as problem:
        return refuse(503, problem.message, next_url)
    log.info("inbox sign-in", reviewer=user.name, role=user.principal.role)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
    )
    return response


@router.post("/sign-out")
async def sign_out_submit(request: Request, state: StateDep) -> Response:
    user, form = await checked_post(request, state)
    if isinstance(form, Response):
        return form
    token = request.cookies.get(SESSION_COOKIE, "")
    await state.database.write(sign_out, token=token)
    log.info("inbox sign-out", reviewer=user.name if user else None)
    response = RedirectResponse("/inbox/sign-in?signed_out=true", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
    )
    return response


# -- the list --------------------------------------------------------------------------


def _filters(chain: str | None, status: str | None) -> tuple[str | None, str]:
    chain = chain if chain and _CHAIN.match(chain) else None
    return chain, status if status in STATUS_FILTERS else "all"


def _title(listing: InboxList) -> str:
    count = len(listing.items)
    return f"({count}) Inbox · Chorus" if count else "Inbox · Chorus"


def _notice(params: dict[str, str]) -> str | None:
    """The sentence after a decision, composed from known words (the query
    string carries no free text, so a crafted link cannot put words here)."""
    done = params.get("done")
    if done not in decisions.DECISIONS:
        return None
    run, approval = params.get("run", ""), params.get("approval", "")
    if params.get("status") == "pending":
        return (
            f"Your approval of {approval} on run {run} is recorded: "
            f"{params.get('n', '?')} of {params.get('of', '?')}. It waits for another reviewer."
        )
    verb = {"approve": "approved", "reject": "rejected", "edit": "edited and approved"}[done]
    return f"You {verb} {approval} on run {run}."


@router.get("", response_class=HTMLResponse)
async def inbox_list(
    request: Request,
    state: StateDep,
    chain: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    try:
        user = await current_user(request, state)
    except ApiProblem as problem:
        return problem_page(request, None, problem)
    if user is None:
        return to_sign_in(request)
    chain, status = _filters(chain, status)
    try:
        listing = await load_inbox(
            db=state.database, runs=await run_client(state), user=user, chain=chain, status=status
        )
    except ApiProblem as problem:
        return problem_page(request, user, problem)
    return page(
        request,
        "list.html",
        user,
        title=_title(listing),
        listing=listing,
        chain=chain,
        status=status,
        status_filters=STATUS_FILTERS,
        notice=_notice(dict(request.query_params)),
    )


@router.get("/items")
async def inbox_items(
    request: Request,
    state: StateDep,
    chain: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """What the list page polls: the rows as HTML (rendered and escaped here),
    their count and a signature that changes when any row does."""
    try:
        user = await current_user(request, state)
        if user is None:
            return JSONResponse({"signed_in": False}, status_code=401)
        chain, status = _filters(chain, status)
        listing = await load_inbox(
            db=state.database, runs=await run_client(state), user=user, chain=chain, status=status
        )
    except ApiProblem as problem:
        return JSONResponse({"signed_in": True, "error": problem.message}, status_code=503)
    rows = templates.get_template("_rows.html").render(listing=listing, request=request)
    return JSONResponse(
        {
            "signed_in": True,
            "count": len(listing.items),
            "title": _title(listing),
            "signature": listing.signature,
            "html": rows,
            "unavailable": len(listing.unavailable_runs),
        }
    )


@router.get("/decisions", response_class=HTMLResponse)
async def my_decisions(request: Request, state: StateDep) -> Response:
    try:
        user = await current_user(request, state)
        if user is None:
            return to_sign_in(request)
        rows = await state.database.read(recent_decisions, reviewer=user.name, limit=50)
    except ApiProblem as problem:
        return problem_page(request, None, problem)
    return page(
        request,
        "decisions.html",
        user,
        title="My decisions · Chorus inbox",
        rows=rows,
        item_url=item_url,
    )


# -- one approval ----------------------------------------------------------------------


async def _detail_page(
    request: Request,
    state: ApiState,
    user: InboxUser,
    run_id: str,
    approval_id: str,
    *,
    status_code: int = 200,
    refusal: decisions.Refusal | None = None,
    edited: str | None = None,
    shown_hash: str = "",
    draft: dict[str, str] | None = None,
) -> Response:
    try:
        detail = await load_detail(
            state.database,
            await run_client(state),
            user,
            run_id,
            approval_id,
            seen_before=refusal is not None,
        )
    except NotVisible:
        return error_page(
            request,
            user,
            404,
            "Not found",
            "No pending approval by that id is yours to see: it may have been decided "
            "already, or it needs a role your key lacks.",
        )
    except ApiProblem as problem:
        return problem_page(request, user, problem)
    preview = None
    if edited is not None:
        preview = _preview(detail, edited, shown_hash)
        draft = {"edited_text": edited}
        if not preview["sendable"]:
            status_code = 422
    return page(
        request,
        "detail.html",
        user,
        status_code=status_code,
        title=_detail_title(detail),
        d=detail,
        d_url=item_url(run_id, approval_id),
        refusal=refusal,
        preview=preview,
        draft=draft or {},
    )


def _detail_title(detail: Detail) -> str:
    return f"{detail.approval_id} · {detail.root_run_id} · Chorus inbox"


@router.get("/runs/{run_id}/approvals/{approval_id}", response_class=HTMLResponse)
async def approval_detail(
    request: Request, state: StateDep, run_id: RunIdPath, approval_id: ApprovalIdPath
) -> Response:
    try:
        user = await current_user(request, state)
    except ApiProblem as problem:
        return problem_page(request, None, problem)
    if user is None:
        return to_sign_in(request)
    return await _detail_page(request, state, user, run_id, approval_id)


@router.get("/runs/{run_id}/approvals/{approval_id}/{direction}", response_class=HTMLResponse)
async def approval_neighbour(
    request: Request,
    state: StateDep,
    run_id: RunIdPath,
    approval_id: ApprovalIdPath,
    direction: Annotated[str, Path(pattern="^(next|prev)$")],
) -> Response:
    """The next or previous approval in the list's order, reached by a
    redirect: the listing (a query per run awaiting approval) is computed when
    the reviewer moves, not on every view of an approval. Past either end of
    the list, back to the list."""
    try:
        user = await current_user(request, state)
        if user is None:
            return to_sign_in(request)
        listing = await load_inbox(
            db=state.database, runs=await run_client(state), user=user, chain=None, status="all"
        )
    except ApiProblem as problem:
        return problem_page(request, None, problem)
    item = neighbour(listing, run_id, approval_id, 1 if direction == "next" else -1)
    return RedirectResponse(item.url if item else "/inbox", status_code=303)


@router.post("/runs/{run_id}/approvals/{approval_id}/preview", response_class=HTMLResponse)
async def edit_preview(
    request: Request, state: StateDep, run_id: RunIdPath, approval_id: ApprovalIdPath
) -> Response:
    """The edit's diff against the text shown, before anything is sent."""
    user, form = await checked_post(request, state)
    if isinstance(form, Response):
        return form
    assert user is not None
    edited = form.get("edited_text", "").replace("\r\n", "\n")
    return await _detail_page(
        request,
        state,
        user,
        run_id,
        approval_id,
        edited=edited,
        shown_hash=form.get("payload_hash", ""),
    )


def _preview(detail: Detail, edited: str, shown_hash: str) -> dict[str, Any]:
    """The diff of an edit against the approval's current text, and what
    stops it from being sent (unchanged, invalid tool JSON, text changed)."""
    problem = None
    if detail.approval is None:
        problem = "This approval is no longer pending."
    elif shown_hash != detail.approval.payload_hash:
        problem = (
            "The text changed after you opened it (another reviewer edited it). "
            "The diff below is against the current text: check it before sending."
        )
    if edited.strip() == detail.text.strip():
        problem = "The text is unchanged: approve it instead, or change something."
    elif detail.is_tool:
        problem = _json_problem(edited) or problem
    removed, added = diff_counts(detail.text, edited)
    return {
        "diff": word_diff(detail.text, edited),
        "removed": removed,
        "added": added,
        "edited": edited,
        "problem": problem,
        "sendable": problem is None or problem.startswith("The text changed"),
    }


def _json_problem(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"The tool's arguments must stay valid JSON: {exc}."
    if not isinstance(value, dict):
        return "The tool's arguments must stay a JSON object."
    return None


@router.post("/runs/{run_id}/approvals/{approval_id}/decide", response_class=HTMLResponse)
async def decide(
    request: Request, state: StateDep, run_id: RunIdPath, approval_id: ApprovalIdPath
) -> Response:
    user, form = await checked_post(request, state)
    if isinstance(form, Response):
        return form
    assert user is not None
    decision = form.get("decision", "")
    comment = form.get("comment", "")
    edited = form.get("edited_text") if decision == "edit" else None
    if edited is not None:
        edited = edited.replace("\r\n", "\n")
    try:
        result = await decisions.submit(
            await run_client(state),
            user,
            run_id=run_id,
            approval_id=approval_id,
            decision=decision,
            payload_hash=form.get("payload_hash", ""),
            comment=comment,
            edited=edited,
        )
    except decisions.Refusal as refusal:
        log.info(
            "inbox decision refused",
            run_id=run_id,
            approval_id=approval_id,
            reviewer=user.name,
            reason=refusal.kind,
        )
        draft = {"comment": comment} if refusal.kind == "invalid" else {}
        return await _detail_page(
            request,
            state,
            user,
            run_id,
            approval_id,
            status_code=refusal.status,
            refusal=refusal,
            draft=draft,
        )
    except ApiProblem as problem:
        return problem_page(request, user, problem)
    log.info(
        "inbox decision",
        run_id=run_id,
        approval_id=approval_id,
        reviewer=user.name,
        decision=decision,
        status=result.status,
    )
    query = urlencode(
        {
            "done": decision,
            "run": run_id,
            "approval": approval_id,
            "status": result.status,
            "n": result.approvals,
            "of": result.required_approvals,
        }
    )
    return RedirectResponse(f"/inbox?{query}", status_code=303)

"""Turning a run's text into safe HTML: Markdown with raw HTML off, citations
linked to the passages they name, and word diffs of an edit.

Everything here returns `markupsafe.Markup` built only from escaped text, so
a ticket holding `<script>` or `<img onerror>` shows those characters and
never becomes markup (the page's Content-Security-Policy is the second wall).
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Collection

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.disable("image")  # an image would be fetched (tracking); CSP blocks it anyway

_CITATION = re.compile(
    r"\[([^\[\]<>\n]{1,400}?#\d{1,6}(?:\s*[,;]\s*[^\[\]<>\n]{1,200}?#\d{1,6})*)\]"
)
_ONE_ID = re.compile(r"[^\s,;\[\]][^,;\[\]]*?#\d{1,6}")


def passage_anchor(index: int) -> str:
    return f"passage-{index}"


def markdown(text: str, *, citations: dict[str, int] | None = None) -> Markup:
    """`text` as Markdown (HTML escaped, not rendered); each `[doc#n]` whose id
    is in `citations` (id → passage number) becomes a link to that passage."""
    rendered = _md.render(text)
    if citations:
        rendered = _link_citations(rendered, citations)
    return Markup(rendered)  # markdown-it escaped every character of the input


def _link_citations(rendered: str, citations: dict[str, int]) -> str:
    escaped_ids = {html.escape(cid, quote=False): n for cid, n in citations.items()}

    def link_group(match: re.Match[str]) -> str:
        inner = match.group(1)

        def link_one(one: re.Match[str]) -> str:
            cid = one.group(0).strip()
            number = escaped_ids.get(cid)
            if number is None:
                return one.group(0)
            return (
                f'<a class="cite" href="#{passage_anchor(number)}" '
                f'title="Passage {number}">{one.group(0)}</a>'
            )

        ids = _ONE_ID.findall(inner)
        if len(ids) == 1 and ids[0].strip() in escaped_ids:
            number = escaped_ids[ids[0].strip()]
            return (
                f'<a class="cite" href="#{passage_anchor(number)}" '
                f'title="Passage {number}">[{inner}]</a>'
            )
        return "[" + _ONE_ID.sub(link_one, inner) + "]"

    return _CITATION.sub(link_group, rendered)


def citations_in(text: str) -> list[str]:
    """Citation ids (`document#n`) in square brackets, in order of first use."""
    found: list[str] = []
    for match in _CITATION.finditer(text):
        for one in _ONE_ID.finditer(match.group(1)):
            cid = one.group(0).strip()
            if cid not in found:
                found.append(cid)
    return found


def cited_unknown(text: str, known: Collection[str]) -> list[str]:
    """Citation ids in `text` that no retrieved passage has (shown as a warning)."""
    return [cid for cid in citations_in(text) if cid not in known]


_TOKEN = re.compile(r"\S+\s*|\s+")
"""A word with the whitespace after it: neighbouring changed words diff as one run."""


def word_diff(before: str, after: str) -> Markup:
    """An inline diff of two texts, word by word: removed words in `<del>`,
    added ones in `<ins>` (screen readers announce both)."""
    old = _TOKEN.findall(before)
    new = _TOKEN.findall(after)
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(str(escape("".join(old[a1:a2]))))
            continue
        if op in ("delete", "replace"):
            parts.append(f"<del>{escape(''.join(old[a1:a2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{escape(''.join(new[b1:b2]))}</ins>")
    return Markup("".join(parts))  # every piece is escaped above


def diff_counts(before: str, after: str) -> tuple[int, int]:
    """Words removed and added (for the summary line above the diff)."""
    old = before.split()
    new = after.split()
    removed = added = 0
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            removed += a2 - a1
        if op in ("insert", "replace"):
            added += b2 - b1
    return removed, added

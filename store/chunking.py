"""Splitting documents into the passages retrieval ranks and cites.

A passage should answer one question and be citable on its own, so markdown
is split on its headings first (a help-center article puts one topic under
each heading), then on paragraphs, packing paragraphs into chunks of at most
`MAX_CHUNK_CHARS`. Consecutive chunks of the same section share a small
overlap, so a sentence cut at a chunk boundary is still read in context.
Every chunk keeps its heading path ("Refunds > How long a refund takes") as
its title: the path is indexed with the text and shown with the citation.

Plain text has no headings: it is packed by paragraphs under the document's
title. Everything here is pure (no I/O), so it is unit-tested on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_CHUNK_CHARS = 800
"""Long enough for a self-contained answer, short enough that a handful of
passages fit in a prompt next to the question."""
OVERLAP_CHARS = 120
"""About one sentence carried from a chunk into the next one of its section."""

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})
TITLE_SEPARATOR = " > "

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n---[ \t]*(?:\n|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Chunk:
    position: int
    """0-based order within the document; the `#n` of a citation."""
    title: str | None
    """Heading path, outermost first, joined by ` > `; None for untitled text."""
    text: str


@dataclass(frozen=True)
class _Section:
    path: tuple[str, ...]
    blocks: list[str]


def is_markdown(name: str) -> bool:
    """Markdown by file name: `.md`, `.markdown`, `.mdx`."""
    return PurePosixPath(name).suffix.lower() in MARKDOWN_SUFFIXES


def markdown_title(text: str) -> str | None:
    """The first level-1 heading of a markdown text, if it has one."""
    in_fence = False
    for line in _strip_front_matter(text).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return _clean_heading(match.group(2))
    return None


def chunk_document(
    name: str,
    text: str,
    *,
    title: str | None = None,
    max_chars: int = MAX_CHUNK_CHARS,
    overlap: int = OVERLAP_CHARS,
) -> list[Chunk]:
    """Chunks of a document: markdown-aware when `name` says markdown,
    paragraphs otherwise. `title` heads chunks that sit under no heading."""
    if max_chars < 100:
        raise ValueError(f"max_chars must be at least 100, got {max_chars}")
    if not 0 <= overlap < max_chars // 2:
        raise ValueError(f"overlap must be between 0 and max_chars/2, got {overlap}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if is_markdown(name):
        sections = _markdown_sections(_strip_front_matter(text), title)
    else:
        sections = [_Section((title,) if title else (), _paragraphs(text.split("\n")))]
    chunks: list[Chunk] = []
    for section in sections:
        section_title = TITLE_SEPARATOR.join(section.path) or None
        for piece in _pack(section.blocks, max_chars, overlap):
            chunks.append(Chunk(position=len(chunks), title=section_title, text=piece))
    return chunks


# -- markdown -------------------------------------------------------------------------


def _strip_front_matter(text: str) -> str:
    return _FRONT_MATTER.sub("", text, count=1)


def _clean_heading(raw: str) -> str:
    # Headings are titles, not markup: drop emphasis and inline-code marks.
    return re.sub(r"[*_`]+", "", raw).strip()


def _markdown_sections(text: str, title: str | None) -> list[_Section]:
    """Sections in document order, each with its heading path; headings
    inside fenced code blocks are code, not structure. A document without
    a `#` heading gets `title` as the root of every path."""
    root: tuple[str, ...] = (title,) if title and markdown_title(text) is None else ()
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        path = root + tuple(heading for _, heading in stack)
        if not path and title:  # text above the first heading
            path = (title,)
        blocks = _paragraphs(lines)
        if blocks:
            sections.append(_Section(path, blocks))
        lines.clear()

    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level = len(match.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, _clean_heading(match.group(2))))
    flush()
    return sections


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block."""
    blocks: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                blocks.append("\n".join(current).strip("\n"))
                current = []
            continue
        current.append(line.rstrip())
    if current:
        blocks.append("\n".join(current).strip("\n"))
    return [block for block in blocks if block.strip()]


# -- packing --------------------------------------------------------------------------


def _pack(blocks: list[str], max_chars: int, overlap: int) -> list[str]:
    """Greedy packing of blocks into chunks of at most `max_chars`; a new
    chunk starts with the tail of the previous one when it fits."""
    pieces = [piece for block in blocks for piece in _split_long(block, max_chars - overlap)]
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len("\n\n".join([*current, piece])) > max_chars:
            chunks.append("\n\n".join(current))
            tail = _tail(chunks[-1], overlap)
            current = [tail] if tail and len(tail) + 2 + len(piece) <= max_chars else []
        current.append(piece)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _split_long(block: str, limit: int) -> list[str]:
    """A block longer than `limit` cut at sentence ends, then at spaces,
    and only as a last resort inside a word."""
    if len(block) <= limit:
        return [block]
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(block):
        for piece in _split_words(sentence, limit):
            joined = f"{current} {piece}" if current else piece
            if len(joined) <= limit:
                current = joined
            else:
                parts.append(current)
                current = piece
    if current:
        parts.append(current)
    return parts


def _split_words(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    parts: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:limit])
            word = word[limit:]
        joined = f"{current} {word}" if current else word
        if len(joined) <= limit:
            current = joined
        else:
            parts.append(current)
            current = word
    if current:
        parts.append(current)
    return parts


def _tail(text: str, overlap: int) -> str:
    """The last whole sentence(s) within `overlap` characters, else the last
    whole words; empty when overlap is 0."""
    if overlap <= 0 or not text:
        return ""
    window = text[-overlap:]
    sentence_start = _SENTENCE_END.search(window)
    if sentence_start and sentence_start.end() < len(window):
        return window[sentence_start.end() :].strip()
    space = window.find(" ")
    return window[space + 1 :].strip() if 0 <= space < len(window) - 1 else ""

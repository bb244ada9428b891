"""Personal data detectors: email addresses, phone numbers and payment card
numbers in text, as spans; and redaction of what they find.

Guards (workflows/guards.py) run these inside workflows and the evaluation's
scoring (activities/evals/scoring.py) runs them on answers, so both agree on
what counts as personal data. Everything here is pure and deterministic: the
same text always yields the same spans. The detectors are conservative (an
order number or a timestamp is not a phone) and take well under a second on
100,000 adversarial characters. An allow-list of the business's own
published contacts (`find_pii(..., allow=...)`) is the same for both too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, Literal

__all__ = [
    "MAX_ALLOWED_CONTACTS",
    "MAX_CONTACT_CHARS",
    "PII_KINDS",
    "PII_NAMES",
    "PiiKind",
    "allowed_contact_problem",
    "find_pii",
    "redact_pii",
]

PiiKind = Literal["email", "phone", "card"]
PII_KINDS: Final[tuple[PiiKind, ...]] = ("email", "phone", "card")

_EMAIL = re.compile(
    r"(?<![\w.%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"([A-Za-z]{2,24})"
    r"(?![\w-]|\.[A-Za-z0-9])"
)
_NOT_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff"})
"""`icon@2x.png` is a file name, not an address: no top-level domain is an
image extension."""

# Phone numbers. Conservative: a digit run alone (an order number, a
# timestamp) is not a phone; the shape must be a phone's (a + or 00 prefix,
# US grouping, or a 0-led national number with one consistent separator), or
# a phone word must stand just before it. Neighbouring letters, digits,
# currency signs and `-` followed by a digit (NW-1001-..., $1 299 000, version
# and IP-like strings) rule a candidate out.
_PHONE_START = r"(?<![\w+$€£¥#@/\\-])(?<!\d[.,:])"
_PHONE_END = r"(?![\w$€£¥%]|[-.,:/]\d)"
_PHONE = re.compile(
    _PHONE_START + r"(?:"
    # International: +CC then digit groups, separators optional (E.164 too).
    r"\+[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}\)?){1,6}"
    # International with the 00 prefix: separators required, or it is a digit run.
    r"|00[1-9]\d{0,2}(?:[ .-]\(?\d{1,5}\)?){2,6}"
    # US / NANP: (555) 123-4567, 555-123-4567, 555.123.4567, 1 555 123 4567.
    r"|(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}([ .-]))\d{3}(?(1)\1|[ .-])\d{4}"
    # National 0-led (EU, UK...): 06 12 34 56 78, 030-1234-5678, (020) 7946 0958.
    r"|(?:\(0\d{1,4}\)[ ]?\d{2,8}(?:[ ]\d{2,8}){0,4}"
    r"|0\d{1,4}([ .-])\d{2,8}(?:\2\d{2,8}){0,4})"
    r")" + _PHONE_END
)
_PHONE_WORD = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|cellphone|call|sms|whatsapp|fax)\b"
    r"[^\d\n]{0,20}?" + _PHONE_START + r"(\d{9,15})" + _PHONE_END
)
_PHONE_DIGITS = (9, 15)
"""E.164 numbers have at most 15 digits; fewer than 9 is too short to dial."""

_CARD_RUN = re.compile(r"(?<![\w.-])(?<!\d[ -])[2-6]\d*(?:[ -]\d+)*(?![\w]|[-.,]\d)")
"""A run of digit groups (single spaces or dashes between them) that starts
with 2-6, the issuer ranges of Visa, Mastercard, Amex, Discover, JCB,
Diners and UnionPay. A card is 13-19 of its digits, Luhn-valid: the whole
run, or else its longest such prefix ending between groups (a card followed
by an expiry date, `4111 1111 1111 1111 12/25`)."""
_CARD_DIGITS = (13, 19)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        if m.group(1).lower() not in _NOT_TLDS:
            yield m.span()


def _find_phones(text: str) -> Iterator[tuple[int, int]]:
    low, high = _PHONE_DIGITS
    spans = [m.span() for m in _PHONE.finditer(text) if low <= len(_digits(m.group(0))) <= high]
    spans += [m.span(1) for m in _PHONE_WORD.finditer(text)]
    yield from _merge(spans)


def _find_cards(text: str) -> Iterator[tuple[int, int]]:
    low, high = _CARD_DIGITS
    for m in _CARD_RUN.finditer(text):
        run = m.group(0)
        digits = _digits(run)
        if low <= len(digits) <= high and _luhn(digits):
            yield m.span()
            continue
        # Prefixes ending between groups, at most `high` digits, longest first.
        ends: list[int] = []
        count = 0
        for group in re.finditer(r"\d+", run):
            count += len(group.group(0))
            if count > high or group.end() == len(run):
                break
            if count >= low:
                ends.append(group.end())
        for end in reversed(ends):
            if _luhn(_digits(run[:end])):
                yield m.start(), m.start() + end
                break


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


_FINDERS: Final[dict[PiiKind, Callable[[str], Iterator[tuple[int, int]]]]] = {
    "email": _find_emails,
    "phone": _find_phones,
    "card": _find_cards,
}
PII_NAMES: Final[dict[PiiKind, tuple[str, str]]] = {
    "email": ("an email address", "email addresses"),
    "phone": ("a phone number", "phone numbers"),
    "card": ("a payment card number", "payment card numbers"),
}
"""How messages name each kind: one, many."""


MAX_ALLOWED_CONTACTS: Final = 20
"""Most entries an allow-list (a guard's `pii_allow`, a `no_pii` check's
`allow`) may hold: a business publishes a few contacts, not a directory."""
MAX_CONTACT_CHARS: Final = 254
"""Longest allowed entry (the longest email address SMTP carries)."""


def find_pii(text: str, kind: PiiKind, allow: Collection[str] = ()) -> list[tuple[int, int]]:
    """(start, end) spans of one kind of PII in `text`, in order.

    `allow` lists the business's own published contacts (its support phone
    number, its no-reply address), which are not personal data: a span is
    skipped when it is one of them, compared as the detector reads it (a
    phone number by its digits, so `1 (800) 555-0142` is `1-800-555-0142`;
    an email address case-insensitively). Only a whole detected span is ever
    skipped, so text around an allowed contact is still checked, and a
    different number is still found.
    """
    spans = _FINDERS[kind](text)
    if not allow:
        return list(spans)
    allowed = {_contact_key(kind, entry) for entry in allow}
    return [
        (start, end) for start, end in spans if _contact_key(kind, text[start:end]) not in allowed
    ]


def _contact_key(kind: PiiKind, text: str) -> str:
    """What makes two spellings of a contact the same contact."""
    if kind == "email":
        return text.strip().casefold()
    return _digits(text)


def allowed_contact_problem(entry: str) -> str | None:
    """Why `entry` cannot be on an allow-list, or None when it can.

    An entry must be, as a whole, one email address or phone number the
    detectors find: anything else would never match a detected span, so it
    is a mistake (a typo, a partial number) better refused when the chain
    or eval set is checked than silently ignored. A payment card number is
    never a published contact, so it is refused too.
    """
    if not entry or len(entry) > MAX_CONTACT_CHARS:
        return f"{len(entry)} characters; an allowed contact has 1 to {MAX_CONTACT_CHARS}"
    whole = (0, len(entry))
    if list(_FINDERS["card"](entry)):
        return "a payment card number is never a published contact and cannot be allowed"
    for kind in ("email", "phone"):
        if list(_FINDERS[kind](entry)) == [whole]:
            return None
    return (
        "this is not, as a whole, an email address or phone number the PII detectors find "
        "(write the contact exactly as published, e.g. 1-800-555-0142 or help@example.com)"
    )


def redact_pii(text: str, kinds: Iterable[PiiKind] = PII_KINDS) -> str:
    """`text` with each detected email, phone and card number replaced by
    `[email]`, `[phone]`, `[card]` (for logs and the escalation view).

    Cards are found first, then phones, then emails, each in the text left
    by the previous pass, so a card number is never half-redacted as a phone.
    """
    wanted = set(kinds)
    unknown = wanted - set(PII_KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds {sorted(unknown)} (known: {', '.join(PII_KINDS)})")
    for kind in ("card", "phone", "email"):
        if kind in wanted:
            text = _replace(text, find_pii(text, kind), f"[{kind}]")
    return text


def _replace(text: str, spans: list[tuple[int, int]], token: str) -> str:
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], token]
        last = end
    parts.append(text[last:])
    return "".join(parts)

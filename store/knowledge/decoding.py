"""Documents' bytes as text: UTF-8, a leading byte-order mark dropped.

Editors on Windows save UTF-8 with a byte-order mark (EF BB BF). Read as plain
`utf-8` it stays in the text as U+FEFF, so the first line no longer starts
with `#` and a markdown document loses its title and first heading. Every
way a document comes in (the CLI's files, the API's uploads and text
bodies) decodes through here.
"""

from __future__ import annotations

from store.knowledge.errors import InvalidDocumentError

BYTE_ORDER_MARK = "\ufeff"


def decode_document(data: bytes, *, name: str) -> str:
    """The text of a document's bytes (`utf-8-sig`: a BOM is dropped).

    InvalidDocumentError naming the document, the first byte that is not
    UTF-8, its offset and line, for a file in another encoding (Latin-1,
    UTF-16) or a binary file.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1].hex()
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidDocumentError(
            f"{name} is not UTF-8 text: byte 0x{byte} at offset {exc.start} (line {line}) "
            "cannot be decoded; save the file as UTF-8"
        ) from None


def without_byte_order_mark(text: str) -> str:
    """`text` without a leading U+FEFF (text that was decoded as plain `utf-8`)."""
    return text[1:] if text.startswith(BYTE_ORDER_MARK) else text

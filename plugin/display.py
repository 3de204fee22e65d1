"""The one place text is made safe to show a person: doctor, list, log lines and CNI error
messages all pass through `safe`.

A pod chooses the names of its links (and the kernel sends a NIC home under the name the pod
gave it), an alias or an altname: raw, 15 bytes are enough for a terminal escape (OSC 52
writes the admin's clipboard), and bidi controls reorder what a person reads. Everything that
is not printable (controls, format characters such as bidi overrides, line and paragraph
separators, the bytes of a name that is not UTF-8) is shown as a Python-style escape.
"""

from __future__ import annotations


def _escape(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:   # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: str) -> str:
    """`text` with every character that is not printable escaped (space stays)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)

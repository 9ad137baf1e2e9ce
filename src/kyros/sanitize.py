"""Making untrusted text safe to show: no terminal escapes, no control characters.

Command output, file contents and file names reach two readers that must not be steered by
them: the model (an ESC byte in its context is noise at best and an injection channel at worst)
and the user's terminal (OSC 52 writes the clipboard, OSC 0 sets the title, ``CSI 2J`` clears the
screen). :func:`clean_text` removes every escape sequence and then every remaining C0/C1 control
character except newline and tab, so its result never holds ``\\x1b`` (RELIABILITY.md S13).

It is the one sanitiser: the agents' tools (``kyros.core.tools``), every string the CLI prints
that came from a user, a model, a file or a process, and the console's widgets all pass text
through it. It lives in the base layer so that every layer can import it.
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "one_line"]

# ECMA-48 control sequences, as a terminal parses them. The C1 forms (0x9B CSI, 0x9D OSC, ...)
# are matched too: they arrive as U+0080-U+009F once valid UTF-8 is decoded. The ESC forms
# share one leading literal so the regex engine can skip ahead to it (3x faster on 10 MB).
#
# OSC, DCS, SOS, PM and APC are strings ended by ST (ESC \ or 0x9C); xterm also ends OSC with
# BEL. Only terminated strings are removed whole: an unterminated one loses its introducer
# (as a two-byte escape, or as a C1 control below) and its payload stays as inert text,
# instead of swallowing the rest of the output.
_ST = r"(?:\x07|\x1b\\|\x9c)"
_STRING_BODY = rf"[^\x07\x1b\x9c]*{_ST}"
# CSI: parameter bytes 0x30-0x3F, intermediate bytes 0x20-0x2F, one final byte 0x40-0x7E.
_CSI_BODY = r"[0-?]*[ -/]*[@-~]"
_SEQUENCE = re.compile(
    rf"\x1b(?:[\]PX^_]{_STRING_BODY}|\[{_CSI_BODY}|[ -/]*[0-~])"  # ESC forms; last: ESC c, ESC ( B
    rf"|[\x90\x98\x9d\x9e\x9f]{_STRING_BODY}"  # 8-bit DCS, SOS, OSC, PM, APC
    rf"|\x9b{_CSI_BODY}"  # 8-bit CSI
)

# Whatever control characters remain: C0 except \t \n (\r is handled before), DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Anything that needs work at all; most text has none of it and is returned as it came.
_NEEDS_WORK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _last_overwrite(line: str) -> str:
    """What a terminal shows for a line redrawn with bare carriage returns (progress bars):
    the last non-empty segment, which is the final state of the redraw."""
    for segment in reversed(line.split("\r")):
        if segment:
            return segment
    return ""


def clean_text(data: bytes | str) -> str:
    """Decode ``data`` (UTF-8, invalid bytes replaced) and strip terminal control from it.

    Removes CSI, OSC, DCS/SOS/PM/APC strings, two-byte ESC sequences and C1 controls, turns
    ``\\r\\n`` into ``\\n``, keeps only the final redraw of a line that uses bare ``\\r``, then
    drops every control character left except ``\\n`` and ``\\t``. Lone surrogates (from
    undecodable file names) become U+FFFD so the result always encodes as UTF-8.
    """
    if isinstance(data, bytes | bytearray):
        text = data.decode("utf-8", "replace")  # never holds a surrogate
        if not _NEEDS_WORK.search(text):
            return text
    else:
        text = data
        if not _NEEDS_WORK.search(text):
            return text
        text = _SURROGATE.sub("\ufffd", text)
    text = _SEQUENCE.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = "\n".join(
                _last_overwrite(line) if "\r" in line else line for line in text.split("\n")
            )
    return _CONTROL.sub("", text)


_SPACES = re.compile(r"\s+")


def one_line(value: object, width: int | None = None) -> str:
    """``value`` as one safe line for a table cell or a summary: :func:`clean_text`, then every
    run of whitespace (newlines and tabs included, which would break a tab-separated row) as
    one space; cut to ``width`` characters with an ellipsis when given."""
    text = _SPACES.sub(" ", clean_text("" if value is None else str(value))).strip()
    if width is not None and len(text) > width:
        return text[: max(0, width - 1)] + "\u2026"
    return text

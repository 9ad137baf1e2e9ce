"""What of a daemon terminal's output `kyros term attach` lets reach the user's own terminal.

A program in a shared session (or a file someone ``cat``\\s in it) must not use the user's
terminal: write their clipboard, retitle their window, or ask it questions whose answers the
terminal *types* back into the session — the reply to a capability query (XTGETTCAP
``ESC P + q … ESC \\``), a setting request (DECRQSS ``ESC P $ q … ESC \\``), a title report
(``CSI 21 t``) or a screen checksum is input the session never typed, and the classic way to
inject commands through a terminal (RELIABILITY S13). So :class:`EscapeFilter` drops:

- every device-control string and its kin: DCS (``ESC P``), SOS (``ESC X``), PM (``ESC ^``),
  APC (``ESC _``), and their C1 forms as UTF-8 (``U+0090`` …), whatever they hold;
- OSC 0/1/2 (titles) and 52 (clipboard), and any OSC that asks (a ``?`` field: colour queries);
- CSI queries and reports: DSR other than the cursor position (``CSI 5 n``, ``CSI ? 15 n`` …),
  secondary and tertiary device attributes (``CSI > c``, ``CSI = c``), DECRQM (``CSI ? 1 $ p``),
  XTVERSION (``CSI > q``), window operations and reports (``CSI … t`` but the title stack
  ``22``/``23``), DECREQTPARM (``CSI x``), XTQMODKEYS, XTSMGRAPHICS, DECRQCRA, DECRQPSR/TSR
  and the locator request.

Kept, because programs wait for their answer and it says nothing but where the cursor is and
that a terminal is there: the cursor position report (``CSI 6 n``, ``CSI ? 6 n``) and primary
device attributes (``CSI c``). Sequences split across reads are held until complete (up to
64 KiB for a string; a longer one is dropped to its end without being held).
"""

from __future__ import annotations

import re

#: OSC numbers never passed to the local terminal: 0/1/2 titles, 52 clipboard.
BLOCKED_OSC = frozenset({b"0", b"1", b"2", b"52"})
MAX_STRING = 64 * 1024
_MAX_CSI = 256

# ESC, or a C1 introducer encoded as UTF-8 (C2 90 DCS, 98 SOS, 9B CSI, 9D OSC, 9E PM, 9F APC),
# or a lone C2/ESC at the end of a chunk (the rest is in the next one).
_INTRODUCER = re.compile(rb"\x1b|\xc2(?:[\x90\x98\x9b\x9d\x9e\x9f]|\Z)")
_C1 = {0x90: ord("P"), 0x98: ord("X"), 0x9B: ord("["), 0x9D: ord("]"), 0x9E: ord("^")}
_C1[0x9F] = ord("_")
# What ends a string: BEL, CAN, SUB, ESC (ST when followed by a backslash), or C1 ST (C2 9C).
_STRING_END = re.compile(rb"[\x07\x18\x1a\x1b]|\xc2\x9c")
_CSI = re.compile(rb"([\x30-\x3f]*)([\x20-\x2f]*)([\x40-\x7e])")
_CSI_PARTIAL = re.compile(rb"[\x20-\x3f]*\Z")
_DROP_STRINGS = frozenset(b"PX^_")


def _csi_is_query(params: bytes, inter: bytes, final: int) -> bool:
    """True for the CSI sequences that make a terminal answer (see the module docstring)."""
    prefix = params[:1] if params[:1] in (b"<", b"=", b">", b"?") else b""
    final_char = bytes([final])
    if inter:
        return (inter, final_char) in {
            (b"$", b"p"),  # DECRQM
            (b"$", b"w"),  # DECRQPSR
            (b"$", b"u"),  # DECRQTSR
            (b"*", b"y"),  # DECRQCRA: a checksum of screen contents
            (b"'", b"|"),  # DECRQLP: locator position
        }
    if final_char == b"n":
        return params not in (b"6", b"?6")
    if final_char == b"c":
        return prefix in (b">", b"=")
    if final_char == b"q":
        return prefix == b">"
    if final_char == b"t":
        return params.split(b";", 1)[0] not in (b"22", b"23")
    if final_char == b"x":
        return not prefix
    if final_char in (b"S", b"m"):
        return prefix == b"?"  # XTSMGRAPHICS, XTQMODKEYS
    return False


def _osc_is_blocked(body: bytes) -> bool:
    fields = body.split(b";")
    return fields[0] in BLOCKED_OSC or b"?" in fields[1:]


class EscapeFilter:
    """Drops what must not reach the user's terminal from a byte stream, across ``feed`` calls."""

    def __init__(self) -> None:
        self.pending = b""
        self._skipping = False  # inside a dropped string longer than MAX_STRING

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        self.pending = b""
        out = bytearray()
        i = 0
        if self._skipping:
            found = self._string_end(data, 0)
            if found is None:
                if data[-1:] in (b"\x1b", b"\xc2"):  # maybe the start of the terminator
                    self.pending = data[-1:]
                return b""
            self._skipping = False
            i = found[1]
        n = len(data)
        while True:
            match = _INTRODUCER.search(data, i)
            if match is None:
                out += data[i:]
                return bytes(out)
            j = match.start()
            out += data[i:j]
            if j + 1 >= n:  # ESC or C2 at the very end: wait for what it starts
                self.pending = data[j:]
                return bytes(out)
            kind = data[j + 1] if data[j] == 0x1B else _C1[data[j + 1]]
            start = j + 2
            if kind in _DROP_STRINGS or kind == ord("]"):
                found = self._string_end(data, start)
                if found is None:
                    if n - j <= MAX_STRING:
                        self.pending = data[j:]
                    else:
                        self._skipping = True
                    return bytes(out)
                body_end, end = found
                if kind == ord("]") and not _osc_is_blocked(data[start:body_end]):
                    out += data[j:end]
                i = end
            elif kind == ord("["):
                csi = _CSI.match(data, start)
                if csi is None:
                    if _CSI_PARTIAL.match(data, start) and n - j <= _MAX_CSI:
                        self.pending = data[j:]
                        return bytes(out)
                    out += data[j:start]  # malformed: the terminal makes of it what it will
                    i = start
                    continue
                params, inter, final = csi.group(1), csi.group(2), csi.group(3)[0]
                if not _csi_is_query(params, inter, final):
                    out += data[j : csi.end()]
                i = csi.end()
            else:
                out += data[j:start]  # any other escape sequence passes
                i = start

    @staticmethod
    def _string_end(data: bytes, pos: int) -> tuple[int, int] | None:
        """Where the body of the string starting at ``pos`` ends, and where the string ends
        (after its terminator; before an ESC that starts the next sequence); None if it does
        not end in ``data``."""
        match = _STRING_END.search(data, pos)
        if match is None:
            return None
        k = match.start()
        if data[k] != 0x1B:
            return k, match.end()
        if k + 1 >= len(data):
            return None  # ESC at the end: ST or the next sequence, the next chunk tells
        return k, (k + 2 if data[k + 1] == 0x5C else k)

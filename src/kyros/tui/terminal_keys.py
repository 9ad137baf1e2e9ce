"""The bytes a terminal sends for a key, from Textual's key name and character (xterm's choices).

Textual names keys (``enter``, ``ctrl+a``, ``shift+up``, ``f5``) and gives the character typed
when there is one. A program on a pty expects what xterm sends: ``\\r`` for Enter, DEL for
Backspace, ``ESC [ A`` for Up (``ESC O A`` once the program set application cursor keys, as
vim and less do), ``ESC [ 1 ; 5 A`` for Ctrl+Up, control bytes for Ctrl+letter, ESC before the
key for Alt. Nothing here imports Textual: :func:`key_bytes` is a pure function of strings.
"""

from __future__ import annotations

import unicodedata

#: Gives the focus back to the console from a terminal pane; ``kyros term attach`` detaches
#: with the same key (the ``detach_key`` setting moves both).
LEAVE_KEY = "ctrl+backslash"
#: The leave binding's id in the app's keymap.
LEAVE_BINDING = "terminal.leave"

#: Cursor keys: the final byte after ``ESC [`` (or ``ESC O`` in application mode).
_CURSOR = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
#: Editing keys sent as ``ESC [ n ~``.
_TILDE = {"insert": 2, "delete": 3, "pageup": 5, "pagedown": 6}
#: F1-F4 are SS3 P-S; F5 and above are ``ESC [ n ~`` with xterm's numbers (gaps at 16 and 22).
_F_SS3 = {1: "P", 2: "Q", 3: "R", 4: "S"}
_F_TILDE = {5: 15, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 23, 12: 24}
#: Keys that are one fixed byte string whatever the modes.
_PLAIN = {
    "enter": b"\r",
    "tab": b"\t",
    "shift+tab": b"\x1b[Z",
    "escape": b"\x1b",
    "backspace": b"\x7f",
    "space": b" ",
}
#: Ctrl with a punctuation key: the C0 byte a terminal sends (ctrl+@ is also ctrl+space).
_CTRL_PUNCT = {
    "@": 0x00,
    "space": 0x00,
    "left_square_bracket": 0x1B,
    "backslash": 0x1C,
    "right_square_bracket": 0x1D,
    "circumflex_accent": 0x1E,
    "underscore": 0x1F,
    "minus": 0x1F,
    "question_mark": 0x7F,
}
#: xterm's modifier parameter: 1 + the sum of these.
_MODIFIER_BITS = {"shift": 1, "alt": 2, "ctrl": 4, "meta": 8}


def _split(key: str) -> tuple[frozenset[str], str]:
    """``ctrl+shift+up`` -> ({ctrl, shift}, up); a lone ``+`` key stays itself."""
    parts = key.split("+")
    if len(parts) > 1 and parts[-1] == "" and parts[-2] == "":
        parts = [*parts[:-2], "+"]
    mods = frozenset(p for p in parts[:-1] if p in _MODIFIER_BITS)
    return mods, parts[-1]


def _modified(mods: frozenset[str]) -> int:
    return 1 + sum(_MODIFIER_BITS[m] for m in mods)


def _function_key(name: str, mods: frozenset[str], app_cursor: bool) -> bytes | None:
    """Cursor, editing and F keys, with xterm's modifier parameter when modified."""
    if name in _CURSOR:
        final = _CURSOR[name]
        if mods:
            return f"\x1b[1;{_modified(mods)}{final}".encode()
        return f"\x1bO{final}".encode() if app_cursor else f"\x1b[{final}".encode()
    if name in _TILDE:
        code = _TILDE[name]
        return f"\x1b[{code};{_modified(mods)}~".encode() if mods else f"\x1b[{code}~".encode()
    if len(name) > 1 and name[0] == "f" and name[1:].isdigit():
        number = int(name[1:])
        if number in _F_SS3:
            final = _F_SS3[number]
            return f"\x1b[1;{_modified(mods)}{final}".encode() if mods else f"\x1bO{final}".encode()
        if number in _F_TILDE:
            code = _F_TILDE[number]
            return f"\x1b[{code};{_modified(mods)}~".encode() if mods else f"\x1b[{code}~".encode()
    return None


def key_bytes(key: str, character: str | None, *, app_cursor: bool = False) -> bytes | None:
    """What a terminal sends for Textual key ``key`` typed as ``character`` (None when the key
    has no character); None for a key that sends nothing (a lone modifier, an unknown name).

    ``app_cursor``: the program set DECCKM (application cursor keys).
    """
    if key in _PLAIN:
        if key == "backspace" and character == "\x08":
            return b"\x08"  # Ctrl+H arrives as backspace: keep what was typed
        return _PLAIN[key]
    mods, name = _split(key)
    special = _function_key(name, mods, app_cursor)
    if special is not None:
        return special
    if name in _PLAIN and mods <= {"alt", "shift"}:
        base = _PLAIN["shift+tab"] if name == "tab" and "shift" in mods else _PLAIN[name]
        return b"\x1b" + base if "alt" in mods else base
    prefix = b"\x1b" if "alt" in mods or "meta" in mods else b""
    if "ctrl" in mods:
        if len(name) == 1 and name.isascii() and name.isalpha():
            return prefix + bytes([ord(name.lower()) & 0x1F])
        if name in _CTRL_PUNCT:
            return prefix + bytes([_CTRL_PUNCT[name]])
        if len(name) == 1 and name in "@[\\]^_":
            return prefix + bytes([ord(name) & 0x1F])
    if character:
        if prefix and character.startswith("\x1b"):
            prefix = b""  # Alt already spelled out in the character
        return prefix + character.encode("utf-8", "replace")
    if prefix and len(name) == 1:
        upper = "shift" in mods and name.isalpha()
        return prefix + (name.upper() if upper else name).encode()
    return None


def paste_bytes(text: str, *, bracketed: bool = False) -> bytes:
    """What a terminal sends for pasted ``text``: line ends as ``\\r`` (Enter), wrapped in
    ``ESC [200~`` … ``ESC [201~`` when the program asked for bracketed paste."""
    body = text.replace("\r\n", "\r").replace("\n", "\r")
    if bracketed:
        body = body.replace("\x1b[201~", "")  # a paste may not end the bracket early
        return b"\x1b[200~" + body.encode("utf-8", "replace") + b"\x1b[201~"
    return body.encode("utf-8", "replace")


#: Textual's names for the C0 bytes typed with Ctrl and punctuation.
_C0_NAMES = {
    0x00: "ctrl+@",
    0x1C: "ctrl+backslash",
    0x1D: "ctrl+right_square_bracket",
    0x1E: "ctrl+circumflex_accent",
    0x1F: "ctrl+underscore",
}


def key_name(data: bytes) -> str:
    """Textual's name for the key that sends the one byte ``data`` (a detach key: the
    ``detach_key`` setting), e.g. ``b"\\x1c"`` -> ``ctrl+backslash``, ``b"\\x02"`` -> ``ctrl+b``.

    Raises ``ValueError`` for anything but one byte that is a control key or a character.
    """
    if len(data) != 1:
        raise ValueError(f"{data!r} is not one key")
    code = data[0]
    if code in _C0_NAMES:
        return _C0_NAMES[code]
    if 0x01 <= code <= 0x1A:
        return f"ctrl+{chr(code + 0x60)}"
    char = chr(code)
    if char.isalnum() and char.isascii():
        return char
    if char.isprintable() and char != " ":
        return unicodedata.name(char).lower().replace("-", "_").replace(" ", "_")
    raise ValueError(f"{data!r} cannot leave a terminal: use ctrl-X")

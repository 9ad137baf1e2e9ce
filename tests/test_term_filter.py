"""What `kyros term attach` passes to the user's real terminal: everything but clipboard and
title escapes, device-control strings and the queries a terminal would answer by typing into the
session (S13), also when a sequence is split across reads."""

from __future__ import annotations

import random

import pytest

from kyros.cli.escape_filter import EscapeFilter

CLIPBOARD = b"\x1b]52;c;cHduZWQ=\x07"
TITLE = b"\x1b]0;owned\x1b\\"
HYPERLINK = b"\x1b]8;;https://example.com\x07link\x1b]8;;\x07"
XTGETTCAP = b"\x1bP+q544e\x1b\\"  # "what is your terminal name?" (TN, hex)
DECRQSS = b"\x1bP$qm\x1b\\"  # "what is your SGR setting?"
TITLE_REPORT = b"\x1b[21t"  # "type my window title back"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"plain text\r\n", b"plain text\r\n"),
        (b"a" + CLIPBOARD + b"b", b"ab"),
        (b"a" + TITLE + b"b", b"ab"),
        (b"\x1b]2;t\x07\x1b]1;i\x07x", b"x"),
        (b"\x1b[31mred\x1b[0m", b"\x1b[31mred\x1b[0m"),  # colours pass
        (HYPERLINK, HYPERLINK),  # other OSCs pass
        (b"a" + XTGETTCAP + b"b", b"ab"),
        (b"a" + DECRQSS + b"b", b"ab"),
        (b"\x1bPq#0;2;0;0;0#0~~@@\x1b\\x", b"x"),  # sixel: every DCS is dropped
        (b"\x1bX sos \x1b\\\x1b^ pm \x1b\\\x1b_Gf=24;AAAA\x1b\\x", b"x"),  # SOS, PM, APC
        (b"\xc2\x90+q544e\xc2\x9cx", b"x"),  # C1 DCS as UTF-8 (U+0090 ... U+009C)
        (b"\xc2\x9d52;c;cHduZWQ=\x07x", b"x"),  # C1 OSC 52
        (b"\x1bP+q544e\x07x", b"x"),  # ended by BEL
        (b"\x1bP+q544e\x1b[31mred", b"\x1b[31mred"),  # ended by the next sequence
        (b"\x1b]11;?\x07\x1b]4;1;?\x1b\\x", b"x"),  # colour queries
        (b"\x1b]11;#000000\x07", b"\x1b]11;#000000\x07"),  # setting a colour passes
        (b"\x1b[5n\x1b[?15n\x1b[?996nx", b"x"),  # status reports
        (b"\x1b[6n\x1b[?6n", b"\x1b[6n\x1b[?6n"),  # the cursor position is answered
        (b"\x1b[c\x1b[0c", b"\x1b[c\x1b[0c"),  # primary device attributes are answered
        (b"\x1b[>c\x1b[>0c\x1b[=cx", b"x"),  # secondary and tertiary ones are not
        (b"\x1b[?2026$p\x1b[>q\x1b[xx", b"x"),  # DECRQM, XTVERSION, DECREQTPARM
        (TITLE_REPORT + b"\x1b[14t\x1b[18t\x1b[3;0;0tx", b"x"),  # window reports and moves
        (b"\x1b[22;0t\x1b[23;0t", b"\x1b[22;0t\x1b[23;0t"),  # the title stack passes
        (b"\x1b[1;1;1;1;1*yx\x1b[1$w\x1b[?4m", b"x"),  # DECRQCRA, DECRQPSR, XTQMODKEYS
        (b"\x1b[2J\x1b[H\x1b[?1049h\x1b7\x1b8\x1b(B", b"\x1b[2J\x1b[H\x1b[?1049h\x1b7\x1b8\x1b(B"),
        ("中文 é".encode(), "中文 é".encode()),  # UTF-8 with C2/other lead bytes passes
        ("\u00a0x".encode(), "\u00a0x".encode()),
    ],
)
def test_filter(data: bytes, expected: bytes) -> None:
    assert EscapeFilter().feed(data) == expected


def test_split_sequences_are_still_dropped() -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    dropped = [CLIPBOARD, TITLE, XTGETTCAP, DECRQSS, TITLE_REPORT, b"\xc2\x90$qm\xc2\x9c"]
    kept = [b"text ", b"\x1b[1mbold\x1b[0m", b"\xe4\xb8\xad", b"\x1b[6n", b"\xc2\xa0"]
    stream = b"".join(rng.choice(dropped + kept) for _ in range(400))
    f = EscapeFilter()
    out = b""
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 7)
        out += f.feed(stream[pos : pos + step])
        pos += step
    assert b"]52;" not in out and b"]0;" not in out and b"P" not in out, f"seed {seed}"
    expected = stream
    for seq in dropped:
        expected = expected.replace(seq, b"")
    assert out == expected, f"seed {seed}"


def test_an_unterminated_osc_is_not_buffered_forever() -> None:
    f = EscapeFilter()
    f.feed(b"\x1b]52;c;" + b"A" * (100 * 1024))
    assert len(f.pending) == 0


def test_a_long_dcs_is_dropped_to_its_end_without_being_held() -> None:
    f = EscapeFilter()
    out = f.feed(b"a\x1bP+q" + b"41" * (40 * 1024))
    assert out == b"a" and len(f.pending) == 0
    assert f.feed(b"4142" * 1000) == b""  # still inside it
    assert f.feed(b"43\x1b") == b""
    assert f.feed(b"\\after") == b"after"

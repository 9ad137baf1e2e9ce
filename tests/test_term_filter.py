"""What `kyros term attach` passes to the user's real terminal: everything but clipboard and
title escapes (S13), also when a sequence is split across reads."""

from __future__ import annotations

import random

import pytest

from kyros.cli.term_attach import OscFilter

CLIPBOARD = b"\x1b]52;c;cHduZWQ=\x07"
TITLE = b"\x1b]0;owned\x1b\\"
HYPERLINK = b"\x1b]8;;https://example.com\x07link\x1b]8;;\x07"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"plain text\r\n", b"plain text\r\n"),
        (b"a" + CLIPBOARD + b"b", b"ab"),
        (b"a" + TITLE + b"b", b"ab"),
        (b"\x1b]2;t\x07\x1b]1;i\x07x", b"x"),
        (b"\x1b[31mred\x1b[0m", b"\x1b[31mred\x1b[0m"),  # colours pass
        (HYPERLINK, HYPERLINK),  # other OSCs pass
    ],
)
def test_filter(data: bytes, expected: bytes) -> None:
    assert OscFilter().feed(data) == expected


def test_split_sequences_are_still_dropped() -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stream = b"".join(
        rng.choice([b"text ", CLIPBOARD, TITLE, b"\x1b[1mbold\x1b[0m", b"\xe4\xb8\xad"])
        for _ in range(300)
    )
    f = OscFilter()
    out = b""
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 7)
        out += f.feed(stream[pos : pos + step])
        pos += step
    assert b"]52;" not in out and b"]0;" not in out, f"seed {seed}"
    assert out == stream.replace(CLIPBOARD, b"").replace(TITLE, b""), f"seed {seed}"


def test_an_unterminated_osc_is_not_buffered_forever() -> None:
    f = OscFilter()
    f.feed(b"\x1b]52;c;" + b"A" * (100 * 1024))
    assert len(f.pending) == 0

"""Host values as the daemon reads them (kyros.hosts) and the allowed_hosts setting."""

from __future__ import annotations

import pytest

from kyros import settings
from kyros.errors import UsageError
from kyros.hosts import MalformedHost, canonical_name, parse_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("LOCALHOST.:8080", ("localhost", 8080)),
        ("[::1]", ("::1", None)),
        ("[0:0::1]:80", ("::1", 80)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("ci.example.", ("ci.example", None)),
        ("my_host", ("my_host", None)),
    ],
)
def test_well_formed_hosts(value: str, expected: tuple[str, int | None]) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "[::1].evil",
        "localhost:evil",
        "localhost:0",
        "localhost:65536",
        "localhost:",
        "::1",
        "[::1",
        "[127.0.0.1]",
        "a..b",
        ".a",
        "-a.example",
        "a b",
        "",
        "x" * 64 + ".example",
        "localhost:80:80",
    ],
)
def test_malformed_hosts(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host(value)


def test_canonical_names_match_parsed_hosts() -> None:
    assert canonical_name("[::1]") == canonical_name("0::1") == parse_host("[::1]:1")[0]
    assert canonical_name("Example.COM.") == parse_host("example.com:443")[0]


def test_allowed_hosts_setting_is_checked_and_canonical(xdg: dict[str, str]) -> None:
    loaded = settings.load(env={**xdg, "KYROS_ALLOWED_HOSTS": "CI.Example., 10.0.0.7, [::2]"})
    assert loaded.settings.allowed_hosts == ["ci.example", "10.0.0.7", "::2"]
    with pytest.raises(UsageError, match=r"allowed_hosts.*without a port"):
        settings.load({"allowed_hosts": ["ci.example:8080"]}, env=xdg)

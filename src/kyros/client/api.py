"""The synchronous daemon client used by the CLI."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from kyros import API_VERSION, __version__
from kyros.client.discovery import DaemonTarget
from kyros.errors import (
    AuthError,
    BadAnswer,
    DaemonUnreachable,
    Forbidden,
    InvalidInput,
    KyrosError,
    UsageError,
    VersionSkew,
    from_payload,
)
from kyros.statuses import FINAL_EVENT_TYPES

_TRANSPORT_ERRORS = (httpx.TransportError,)

#: httpx's failures that come without a message, in words.
_TRANSPORT_WORDS = {
    "ConnectTimeout": "no answer to the connection within 5 s",
    "ReadTimeout": "it accepted the connection but did not answer in time",
    "WriteTimeout": "it stopped reading the request",
    "PoolTimeout": "too many connections at once",
    "RemoteProtocolError": "it closed the connection without a valid answer",
    "ReadError": "the connection broke while reading the answer",
}

#: One path segment the daemon could have made: ids (``r_01jd3kq8m4x7f2ba9c``), agent and
#: terminal names. Anything else (``../agents``, ``ID?x=1``, ``''``, a control character) is
#: refused before a request is made: it could only reach another endpoint or none.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: A model name may hold ``/`` (``openai/gpt-4.1-mini``) and ``:`` (``ollama/qwen:7b``).
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]*(?:/[A-Za-z0-9_.:@+-]+)*")

#: What each kind of path segment is, how it looks, and which command lists the real ones.
_SEGMENT_WORDS = {
    "run": ("a run id", "r_01jd3kq8m4x7f2ba9c", "kyros runs list"),
    "agent": ("an agent name", "implementer", "kyros agents list"),
    "terminal": ("a terminal id or name", "t_01jd3kq8m4x7f2ba9c or build", "kyros term ls"),
    "model": ("a model name", "openai/gpt-4.1-mini", "kyros models list"),
}

#: Fields a record of each kind always has; an answer without them is not kyros's.
_REQUIRED = {
    "run": ("id", "kind", "status", "goal"),
    "review": ("children", "assessments", "escalations"),
    "agent": ("name", "role", "approval_policy", "status"),
    "terminal": ("id", "status", "command"),
}


def segment(value: str, what: str) -> str:
    """``value`` as one URL path segment naming a ``what`` (run, agent, terminal, model), or a
    :class:`~kyros.errors.UsageError` (exit 2) saying what it should look like."""
    pattern = _MODEL if what == "model" else _SEGMENT
    ok = pattern.fullmatch(value) is not None and ".." not in value.split("/")
    if not ok or (what == "model" and len(value) > 256):
        noun, example, lister = _SEGMENT_WORDS[what]
        raise UsageError(
            f"{_shown(value)} is not {noun} (one looks like {example})",
            code="malformed_id",
            hint=lister,
        )
    return quote(value, safe="/" if what == "model" else "")


def _shown(value: str, width: int = 60) -> str:
    """A value the user gave, quoted so that no control character reaches the terminal."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


class Client:
    """Typed calls to the daemon API. Every transport failure becomes
    :class:`~kyros.errors.DaemonUnreachable`; every error answer the matching KyrosError."""

    def __init__(self, target: DaemonTarget, *, timeout: float = 30.0) -> None:
        self.target = target
        headers = {"user-agent": f"kyros/{__version__}"}
        if target.token and not target.uds:
            headers["authorization"] = f"Bearer {target.token}"
        local: dict[str, Any] = {}
        if target.uds:
            # Plain HTTP, whatever the URL; each connection proves its server is this user's.
            from kyros.client.peer import transport

            local = {"transport": transport(target.uds), "verify": False}
        self._http = httpx.Client(
            base_url=target.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            **local,
        )
        self._version_checked = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        hint = (
            " — start one with `kyros daemon start`"
            if self.target.local
            else " — check the address and that the daemon runs there"
        )
        reason = re.sub(r"^\[Errno \d+\] ", "", str(exc)) or _TRANSPORT_WORDS.get(
            type(exc).__name__, "the connection failed"
        )
        return DaemonUnreachable(
            f"cannot reach the kyros daemon at {self.target.describe()} ({reason}){hint}"
        )

    def _bad_answer(self, response: httpx.Response, what: str) -> BadAnswer:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return BadAnswer(
            f"the daemon at {self.target.describe()} answered {what} (HTTP "
            f"{response.status_code}, {kind}): something other than a kyros daemon may be "
            "listening there",
            hint="kyros --daemon URL daemon status (check the address)",
        )

    def _auth_error(self, error: KyrosError) -> KyrosError:
        """A refusal in words: which daemon refused, and whether a token was sent at all."""
        where = self.target.describe()
        if error.code in ("forbidden_host", "forbidden_origin"):
            return Forbidden(f"the daemon at {where} refused the request: {error.message}")
        if not self.target.token or self.target.uds:
            return AuthError(
                f"the daemon at {where} requires a token and none was sent",
                code="token_missing",
                hint="pass --token TOKEN or set KYROS_TOKEN; `kyros daemon token`, run on the "
                "daemon's machine, prints it",
            )
        return AuthError(
            f"the daemon at {where} refused the token that was sent (it may have been rotated)",
            code="token_refused",
            hint="run `kyros daemon token` on the daemon's machine and pass what it prints "
            "with --token or KYROS_TOKEN",
        )

    def _check(self, response: httpx.Response) -> None:
        version = response.headers.get("x-kyros-api-version")
        if version is not None and version != API_VERSION and not self._version_checked:
            raise VersionSkew(
                f"the daemon speaks API v{version} but this kyros {__version__} speaks "
                f"v{API_VERSION}: restart the daemon (`kyros daemon stop`, then run again)"
            )
        self._version_checked = True
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            error = from_payload(response.status_code, payload)
            if isinstance(error, AuthError):
                error = self._auth_error(error)
            elif payload is None and response.status_code not in (404, 405, 413):
                error = self._bad_answer(response, "with an error that is not kyros's")
            raise error

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        except httpx.InvalidURL as exc:
            raise UsageError(f"a value given cannot be sent in a URL ({exc})") from None
        except UnicodeEncodeError as exc:
            raise InvalidInput(_not_utf8(exc)) from None
        self._check(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self._bad_answer(response, "with a body that is not JSON") from None

    def _object(self, payload: Any, what: str | None = None) -> dict[str, Any]:
        """``payload`` if it is a JSON object (with ``what``'s required fields), else BadAnswer."""
        required = _REQUIRED.get(what or "", ())
        if isinstance(payload, dict) and all(k in payload for k in required):
            return payload
        raise BadAnswer(
            f"the daemon at {self.target.describe()} answered JSON of another shape than "
            f"kyros's API ({'a ' + what if what else 'an object'} was expected)",
            hint="kyros daemon status",
        )

    def _items(self, payload: Any, key: str, what: str | None = None) -> list[dict[str, Any]]:
        """The list under ``key`` of an answer, each item checked like :meth:`_object`."""
        items = self._object(payload).get(key)
        if not isinstance(items, list):
            self._object(None, what or key)
        return [self._object(item, what) for item in items or []]

    # --- API -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._object(self.request("GET", "/healthz"))

    def ready(self) -> dict[str, Any]:
        try:
            response = self._http.get("/readyz")
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 503:
            return self._object(_json_or_none(response))
        self._check(response)
        return self._object(_json_or_none(response))

    def create_run(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(
            self.request("POST", f"/v1/runs/{segment(kind, 'run')}", json=body), "run"
        )

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.runs_page(**params)["runs"]
        return runs

    def runs_page(self, **params: Any) -> dict[str, Any]:
        """A page of runs, newest first: ``{runs, next_before}`` (``next_before``: the id to
        pass as ``before`` for the next page, None on the last one)."""
        clean = {k: v for k, v in params.items() if v is not None}
        if clean.get("before") is not None:
            segment(clean["before"], "run")
        page = self._object(self.request("GET", "/v1/runs", params=clean))
        runs = self._items(page, "runs", "run")
        after = page.get("next_before")
        return {"runs": runs, "next_before": after if isinstance(after, str) else None}

    def run(self, run_id: str) -> dict[str, Any]:
        return self._object(self.request("GET", f"/v1/runs/{segment(run_id, 'run')}"), "run")

    def cancel(self, run_id: str) -> dict[str, Any]:
        path = f"/v1/runs/{segment(run_id, 'run')}/cancel"
        return self._object(self.request("POST", path), "run")

    def jobs(self, **params: Any) -> list[dict[str, Any]]:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._items(self.request("GET", "/v1/jobs", params=clean), "jobs")

    def approve(
        self, run_id: str, *, approve: bool, always: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        body = {"approve": approve, "always": always, "reason": reason}
        path = f"/v1/runs/{segment(run_id, 'run')}/approve"
        return self._object(self.request("POST", path, json=body), "run")

    def apply(self, run_id: str) -> dict[str, Any]:
        return self._object(self.request("POST", f"/v1/runs/{segment(run_id, 'run')}/apply"))

    def discard(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/runs/{run_id}/discard"))

    def clean_worktrees(self, older_than_seconds: float = 0.0) -> list[dict[str, Any]]:
        body = {"older_than_seconds": older_than_seconds}
        return list(self.request("POST", "/v1/worktrees/clean", json=body)["removed"])

    def review(self, run_id: str) -> dict[str, Any]:
        path = f"/v1/runs/{segment(run_id, 'run')}/review"
        return self._object(self.request("GET", path), "review")

    def threads(self, *, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/threads", params={"limit": limit})["threads"])

    def thread(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/threads/{ref}"))

    def nodes(self) -> dict[str, Any]:
        """The service registry: ``{"nodes": [...], "now": the database's clock}``."""
        return dict(self.request("GET", "/v1/registry"))

    def node(self, node_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/registry/{quote(node_id, safe='')}"))

    def drain_node(self, node_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/registry/{quote(node_id, safe='')}/drain"))

    def agents_status(self) -> list[dict[str, Any]]:
        return self._items(self.request("GET", "/v1/agents/status"), "agents")

    def agents(self) -> list[dict[str, Any]]:
        return self._items(self.request("GET", "/v1/agents"), "agents", "agent")

    def agent(self, name: str) -> dict[str, Any]:
        path = f"/v1/agents/{segment(name, 'agent')}"
        return self._object(self.request("GET", path), "agent")

    def add_agent(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._object(self.request("POST", "/v1/agents", json=spec), "agent")

    def edit_agent(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/agents/{segment(name, 'agent')}"
        return self._object(self.request("PATCH", path, json=changes), "agent")

    def remove_agent(self, name: str) -> None:
        self.request("DELETE", f"/v1/agents/{segment(name, 'agent')}")

    def terminals(self) -> list[dict[str, Any]]:
        return self._items(self.request("GET", "/v1/terminals"), "terminals", "terminal")

    def terminal(self, ref: str) -> dict[str, Any]:
        path = f"/v1/terminals/{segment(ref, 'terminal')}"
        return self._object(self.request("GET", path), "terminal")

    def create_terminal(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(self.request("POST", "/v1/terminals", json=body), "terminal")

    def kill_terminal(self, ref: str) -> dict[str, Any]:
        path = f"/v1/terminals/{segment(ref, 'terminal')}"
        return self._object(self.request("DELETE", path), "terminal")

    def send_terminal(self, ref: str, data: str) -> dict[str, Any]:
        path = f"/v1/terminals/{segment(ref, 'terminal')}/input"
        return self._object(self.request("POST", path, json={"data": data}))

    def terminal_logs(self, ref: str) -> str:
        path = f"/v1/terminals/{segment(ref, 'terminal')}/logs"
        try:
            response = self._http.get(path)
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        self._check(response)
        return response.text

    def config(self) -> list[dict[str, Any]]:
        return self._items(self.request("GET", "/v1/config"), "entries")

    def daemon(self) -> dict[str, Any]:
        """The daemon's own view: pid, start, idle, config file, key fingerprints."""
        return dict(self.request("GET", "/v1/daemon"))

    def usage(
        self,
        by: str = "model",
        since: str | None = None,
        until: str | None = None,
        run: str | None = None,
    ) -> dict[str, Any]:
        """The cost ledger grouped ``by`` (run, agent, model, project, day, provider, outcome),
        within ISO-8601 ``since``/``until``: ``{by, since, until, run, groups, total}``."""
        params = {"by": by, "since": since, "until": until, "run": run}
        clean = {k: v for k, v in params.items() if v is not None}
        return self._object(self.request("GET", "/v1/usage", params=clean))

    def usage_calls(
        self,
        since: str | None = None,
        until: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Individual model calls from the ledger, newest first."""
        params = {"since": since, "until": until, "run": run, "limit": limit}
        clean = {k: v for k, v in params.items() if v is not None}
        return self._items(self.request("GET", "/v1/usage/calls", params=clean), "calls")

    def models(self) -> dict[str, Any]:
        """Every model kyros could use and the role table: ``{models: [...], roles: {...}}``."""
        return self._object(self.request("GET", "/v1/models"))

    def model(self, name: str) -> dict[str, Any]:
        """One catalogue entry (``name`` may be a litellm id with ``/``)."""
        return self._object(self.request("GET", f"/v1/models/{segment(name, 'model')}"))

    def test_model(self, name: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """One tiny call to ``name``: latency, tokens, cost and reply, or the failure."""
        return self._object(
            self.request(
                "POST",
                f"/v1/models/{segment(name, 'model')}/test",
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        )

    def events(
        self,
        run_id: str,
        *,
        after: int = 0,
        follow: bool = True,
        reconnect_for: float = 30.0,
        stop_on: frozenset[str] = frozenset(),
        revive: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream a run's events from ``seq > after``. A dropped connection is resumed with
        ``Last-Event-ID`` for up to ``reconnect_for`` seconds: no event is lost or repeated.
        The stream ends after the run's final event, or after any type in ``stop_on``.

        ``revive`` is called once per outage when the daemon stops answering (a local
        client starts a new daemon there); ``reconnect_for`` counts again from its return."""
        segment(run_id, "run")
        last = after
        failing_since: float | None = None
        revived = False
        while True:
            try:
                for event in self._stream_once(run_id, last, follow):
                    failing_since, revived = None, False
                    if "seq" not in event:  # stream.end: the run has nothing more
                        return
                    if event["seq"] <= last:
                        continue
                    last = event["seq"]
                    yield event
                    if event["type"] in FINAL_EVENT_TYPES or event["type"] in stop_on:
                        return
                if not follow:
                    return
                # The stream ended before the run did (a daemon restarting): resume.
                failing_since = failing_since or time.monotonic()
            except DaemonUnreachable:
                failing_since = failing_since or time.monotonic()
                if revive is not None and not revived:
                    revived = True
                    with contextlib.suppress(DaemonUnreachable):
                        revive()
                        failing_since = time.monotonic()
            if time.monotonic() - failing_since > reconnect_for:
                raise DaemonUnreachable(
                    f"lost the event stream of run {run_id} and could not resume it within "
                    f"{reconnect_for:.0f}s; `kyros runs events {run_id} --after {last}` resumes"
                )
            time.sleep(0.2)

    def _stream_once(self, run_id: str, last: int, follow: bool) -> Iterator[dict[str, Any]]:
        headers = {"last-event-id": str(last), "accept": "text/event-stream"}
        params = {"follow": "true" if follow else "false"}
        try:
            with self._http.stream(
                "GET",
                f"/v1/runs/{run_id}/events",
                headers=headers,
                params=params,
                timeout=httpx.Timeout(5.0, read=60.0),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                self._check(response)
                data: list[str] = []
                kind = "message"
                for line in response.iter_lines():
                    if not line:
                        if data:
                            payload = self._event(response, "\n".join(data), kind)
                            yield (
                                {"type": kind, "data": payload} if kind == "stream.end" else payload
                            )
                        data, kind = [], "message"
                        continue
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        except KyrosError:
            raise

    def _event(self, response: httpx.Response, text: str, kind: str) -> dict[str, Any]:
        try:
            payload = json.loads(text)
        except ValueError:
            raise self._bad_answer(response, "an event that is not JSON") from None
        if kind == "stream.end":
            return self._object(payload)
        event = self._object(payload)
        if not isinstance(event.get("seq"), int) or not isinstance(event.get("type"), str):
            self._object(None, "event")
        return event


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _not_utf8(exc: UnicodeEncodeError) -> str:
    """What is wrong with text that cannot be sent: a byte that is not UTF-8 (Python keeps
    such bytes of the command line as lone surrogates, U+DC80-U+DCFF)."""
    bad = exc.object[exc.start : exc.end]
    raw = ", ".join(f"0x{ord(ch) - 0xDC00:02x}" for ch in bad if 0xDC80 <= ord(ch) <= 0xDCFF)
    what = f"the byte {raw}" if raw else "a character that cannot be encoded"
    return (
        f"a value given is not valid UTF-8 text: it holds {what}; retype it or convert it "
        "(iconv -t UTF-8)"
    )

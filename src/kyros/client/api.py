"""The synchronous daemon client used by the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from kyros import API_VERSION, __version__
from kyros.client.discovery import DaemonTarget
from kyros.errors import DaemonUnreachable, KyrosError, VersionSkew, from_payload
from kyros.statuses import FINAL_EVENT_TYPES

_TRANSPORT_ERRORS = (httpx.TransportError,)


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
            # Plain HTTP over a Unix socket, whatever the URL: there is no TLS to verify, and
            # a verifying client loads the CA bundle twice (~50 ms of every command's start).
            transport = httpx.HTTPTransport(uds=target.uds, verify=False)
            local = {"transport": transport, "verify": False}
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
        return DaemonUnreachable(
            f"cannot reach the kyros daemon at {self.target.describe()} "
            f"({type(exc).__name__}: {exc or 'connection failed'}){hint}"
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
            raise from_payload(response.status_code, payload)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        self._check(response)
        return response.json() if response.content else None

    # --- API -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/healthz"))

    def ready(self) -> dict[str, Any]:
        try:
            response = self._http.get("/readyz")
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 503:
            return dict(response.json())
        self._check(response)
        return dict(response.json())

    def create_run(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/runs/{kind}", json=body))

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        clean = {k: v for k, v in params.items() if v is not None}
        return list(self.request("GET", "/v1/runs", params=clean)["runs"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/runs/{run_id}"))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/runs/{run_id}/cancel"))

    def jobs(self, **params: Any) -> list[dict[str, Any]]:
        clean = {k: v for k, v in params.items() if v is not None}
        return list(self.request("GET", "/v1/jobs", params=clean)["jobs"])

    def approve(
        self, run_id: str, *, approve: bool, always: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        body = {"approve": approve, "always": always, "reason": reason}
        return dict(self.request("POST", f"/v1/runs/{run_id}/approve", json=body))

    def apply(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/runs/{run_id}/apply"))

    def discard(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/runs/{run_id}/discard"))

    def clean_worktrees(self, older_than_seconds: float = 0.0) -> list[dict[str, Any]]:
        body = {"older_than_seconds": older_than_seconds}
        return list(self.request("POST", "/v1/worktrees/clean", json=body)["removed"])

    def review(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/runs/{run_id}/review"))

    def agents_status(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/agents/status")["agents"])

    def agents(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/agents")["agents"])

    def agent(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/agents/{name}"))

    def add_agent(self, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/agents", json=spec))

    def edit_agent(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/v1/agents/{name}", json=changes))

    def remove_agent(self, name: str) -> None:
        self.request("DELETE", f"/v1/agents/{name}")

    def terminals(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/terminals")["terminals"])

    def terminal(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/terminals/{ref}"))

    def create_terminal(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/terminals", json=body))

    def kill_terminal(self, ref: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/v1/terminals/{ref}"))

    def send_terminal(self, ref: str, data: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/terminals/{ref}/input", json={"data": data}))

    def terminal_logs(self, ref: str) -> str:
        try:
            response = self._http.get(f"/v1/terminals/{ref}/logs")
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        self._check(response)
        return response.text

    def config(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/config")["entries"])

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
        return dict(self.request("GET", "/v1/usage", params=clean))

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
        return list(self.request("GET", "/v1/usage/calls", params=clean)["calls"])

    def models(self) -> dict[str, Any]:
        """Every model kyros could use and the role table: ``{models: [...], roles: {...}}``."""
        return dict(self.request("GET", "/v1/models"))

    def model(self, name: str) -> dict[str, Any]:
        """One catalogue entry (``name`` may be a litellm id with ``/``)."""
        return dict(self.request("GET", f"/v1/models/{quote(name, safe='/')}"))

    def test_model(self, name: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """One tiny call to ``name``: latency, tokens, cost and reply, or the failure."""
        return dict(
            self.request(
                "POST",
                f"/v1/models/{quote(name, safe='/')}/test",
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
    ) -> Iterator[dict[str, Any]]:
        """Stream a run's events from ``seq > after``. A dropped connection is resumed with
        ``Last-Event-ID`` for up to ``reconnect_for`` seconds: no event is lost or repeated.
        The stream ends after the run's final event, or after any type in ``stop_on``."""
        last = after
        failing_since: float | None = None
        while True:
            try:
                for event in self._stream_once(run_id, last, follow):
                    failing_since = None
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
                            payload = json.loads("\n".join(data))
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

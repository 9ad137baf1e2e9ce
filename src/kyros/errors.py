"""The one exception tree of kyros.

Every error a user can see is a :class:`KyrosError`. Each carries a stable machine ``code``, a
plain-words ``message``, optional ``detail``, the HTTP status the daemon answers with and the
exit code the CLI ends with (see DESIGN.md, "CLI conventions"), and may carry a ``hint``: the
next command to try, which the CLI prints under the message and puts in its JSON error
document::

    KyrosError                      exit 1   HTTP 500
    ├── InternalError               exit 70  HTTP 500 (a bug: "please report it")
    ├── UsageError                  exit 2   HTTP 400
    │   ├── InvalidInput            exit 2   HTTP 422
    │   ├── PayloadTooLarge         exit 2   HTTP 413
    │   ├── NotFound                exit 2   HTTP 404
    │   ├── Conflict                exit 2   HTTP 409
    │   └── ModelNotConfigured      exit 2   HTTP 422
    ├── DaemonUnreachable           exit 3   HTTP 503 (client side only)
    ├── StoreUnavailable            exit 3   HTTP 503
    ├── AuthError                   exit 4   HTTP 401
    │   ├── Forbidden               exit 4   HTTP 403
    │   └── UntrustedSocket         exit 4   (client side: another user serves the socket)
    ├── NeedsApproval               exit 5   HTTP 409
    ├── VersionSkew                 exit 3   (client side)
    ├── BadAnswer                   exit 3   (client side: what answered is not a kyros daemon)
    └── RunFailed                   exit 1
"""

from __future__ import annotations

from typing import Any, ClassVar


class ExitCode:
    """Process exit codes shared by every CLI command."""

    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    DAEMON_UNREACHABLE = 3
    AUTH = 4
    NEEDS_APPROVAL = 5
    #: A bug in kyros, not something the user did: sysexits.h's EX_SOFTWARE, so that scripts
    #: can tell it from a failed run (1) or a usage error (2).
    INTERNAL = 70


class KyrosError(Exception):
    """Base of every error kyros reports to a user."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = ExitCode.RUN_FAILED

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape: ``{"error": {"code", "message", "detail"}}``."""
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class InternalError(KyrosError):
    """Something kyros did not expect: a bug to report, never the user's mistake."""

    code = "internal"
    exit_code = ExitCode.INTERNAL


class UsageError(KyrosError):
    code = "bad_request"
    http_status = 400
    exit_code = ExitCode.USAGE


class InvalidInput(UsageError):
    code = "invalid_input"
    http_status = 422


class PayloadTooLarge(UsageError):
    code = "payload_too_large"
    http_status = 413


class NotFound(UsageError):
    code = "not_found"
    http_status = 404


class Conflict(UsageError):
    code = "conflict"
    http_status = 409


class ModelNotConfigured(UsageError):
    code = "model_not_configured"
    http_status = 422


class DaemonUnreachable(KyrosError):
    code = "daemon_unreachable"
    http_status = 503
    exit_code = ExitCode.DAEMON_UNREACHABLE


class StoreUnavailable(KyrosError):
    code = "store_unavailable"
    http_status = 503
    exit_code = ExitCode.DAEMON_UNREACHABLE


class VersionSkew(KyrosError):
    code = "version_skew"
    http_status = 409
    exit_code = ExitCode.DAEMON_UNREACHABLE


class BadAnswer(KyrosError):
    """What answered at the daemon's address does not speak kyros's API (an HTML page, a body
    that is not JSON, JSON of another shape): another server, a proxy, or a broken daemon."""

    code = "bad_answer"
    http_status = 502
    exit_code = ExitCode.DAEMON_UNREACHABLE


class AuthError(KyrosError):
    code = "unauthorized"
    http_status = 401
    exit_code = ExitCode.AUTH


class Forbidden(AuthError):
    code = "forbidden"
    http_status = 403


class UntrustedSocket(AuthError):
    """The local socket is not this user's daemon's: nothing was sent to it (RELIABILITY S1)."""

    code = "untrusted_socket"
    http_status = 403


class NeedsApproval(KyrosError):
    code = "needs_approval"
    http_status = 409
    exit_code = ExitCode.NEEDS_APPROVAL


class RunFailed(KyrosError):
    code = "run_failed"


_BY_CODE: dict[str, type[KyrosError]] = {}


def _index(cls: type[KyrosError]) -> None:
    _BY_CODE[cls.code] = cls  # a subclass wins its parent's code (internal: InternalError)
    for sub in cls.__subclasses__():
        _index(sub)


_index(KyrosError)


def from_payload(status: int, payload: Any) -> KyrosError:
    """Rebuild a :class:`KyrosError` from a daemon's JSON error body (client side)."""
    err = payload.get("error") if isinstance(payload, dict) else None
    by_status = {
        401: AuthError,
        403: Forbidden,
        404: NotFound,
        413: PayloadTooLarge,
        422: InvalidInput,
    }.get(status, UsageError if 400 <= status < 500 else InternalError)
    if not isinstance(err, dict):
        return by_status(f"the daemon answered HTTP {status} without an explanation")
    code = str(err.get("code") or "internal")
    cls = _BY_CODE.get(code, by_status)
    hint = err.get("hint")
    return cls(
        str(err.get("message") or code),
        detail=err.get("detail"),
        code=code,
        hint=str(hint) if isinstance(hint, str) else None,
    )

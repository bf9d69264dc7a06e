"""Fault injection for the emulated controller.

Lets tests reproduce the failure modes of ``docs/controller-api.md`` §8 (429 ``SERVER_TOO_MANY_REQUESTS`` from
the command rate limiter, 503 ``CLUSTER_NO_LEADER`` in HA) and those of the network in front of the controller
(a load balancer answering 502/503/504 with a non-JSON body, added latency, a controller that is down).

``apply=True`` serves the request first and then answers the fault: the controller's command may be applied
through raft and still be answered 429/503/500 (``controller/command/rate_limiter.go``, a leader change after
apply), or a proxy may lose the answer (502/504). The controller itself never sends ``Retry-After``
(``controller/apierror``/``response`` set no such header); ``retry_after`` imitates a proxy that does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import ApiError, cluster_no_leader, too_many_requests, unhandled


@dataclass
class Fault:
    """Answer ``status`` instead of serving the request (or after serving it, with ``apply``),
    ``remaining`` more times (None = until cleared)."""

    status: int
    remaining: int | None
    method: str | None = None
    path_contains: str | None = None
    envelope: bool = True
    retry_after: float | None = None
    apply: bool = False  # serve the request, then answer the fault instead of its response

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def api_error(self) -> ApiError:
        """The controller-style envelope for an injected fault (only used when ``envelope`` is true)."""
        if self.status == 429:
            err = too_many_requests()
        elif self.status == 503:
            err = cluster_no_leader()
        elif self.status == 500:
            err = unhandled("injected fault")
        else:
            err = ApiError(self.status, "UNHANDLED", "injected fault")
        if self.retry_after is not None:
            err.headers["Retry-After"] = str(int(self.retry_after))
        return err


class FaultInjector:
    """Thread-safe fault configuration; the test thread sets it, the server thread consumes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.latency: float = 0.0
        self._down: Fault | None = None

    def inject(
        self,
        status: int,
        count: int | None = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        envelope: bool | None = None,
        retry_after: float | None = None,
        apply: bool = False,
    ) -> Fault:
        """Make the next ``count`` matching requests answer ``status``.

        ``envelope`` defaults to True for 429/500/503 (controller answers) and False otherwise (a proxy's
        plain-text answer, e.g. 502/504). ``apply`` lets the request take effect before the fault answers.
        """
        if envelope is None:
            envelope = status in (429, 500, 503)
        fault = Fault(status, count, method, path_contains, envelope, retry_after, apply)
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_down(self, down: bool = True, *, status: int = 503, envelope: bool = False) -> None:
        """While down, every request answers ``status`` (plain text by default, as a load balancer would)."""
        with self._lock:
            self._down = Fault(status, None, envelope=envelope) if down else None

    @property
    def down(self) -> bool:
        return self._down is not None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._down = None
            self.latency = 0.0

    def take(self, method: str, path: str) -> Fault | None:
        """The fault to apply to this request, consuming one use of it."""
        with self._lock:
            if self._down is not None:
                return self._down
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

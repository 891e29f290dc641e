"""A stop request (SIGINT / SIGTERM) that loops which can run for an unbounded time honour.

The runner's signal handler calls :func:`request`; it then stops after the current iteration,
so that a resumed run is bit-identical to an uninterrupted one. But some loops inside an
iteration need not end at all: evaluation episodes of an env without a time limit, REINFORCE's
collection of whole episodes, waiting on an env worker whose env hangs. They call
:func:`check`, which raises :class:`Interrupted` once the request is older than the grace
period, or at once on a second request; the runner then checkpoints what it has and exits.

Process-wide state, like the signal handlers that set it; algorithms and envs import this
module, never the runner.
"""

from __future__ import annotations

import time

_requested_at: float | None = None
_requests = 0
_grace_s = 10.0


class Interrupted(Exception):
    """A long loop gave up because a stop was requested (see the module docstring)."""


def arm(grace_s: float) -> None:
    """Start a run: no stop requested; a request cuts long loops after ``grace_s`` seconds."""
    global _requested_at, _requests, _grace_s
    _requested_at, _requests, _grace_s = None, 0, max(float(grace_s), 0.0)


def request() -> None:
    """A stop was asked for (called from the signal handler)."""
    global _requested_at, _requests
    _requests += 1
    if _requested_at is None:
        _requested_at = time.monotonic()


def clear() -> None:
    global _requested_at, _requests
    _requested_at, _requests = None, 0


def check() -> None:
    """Raise :class:`Interrupted` when a stop request has outlasted the grace period or was
    repeated. Cheap enough for every step of a loop."""
    if _requested_at is None:
        return
    waited = time.monotonic() - _requested_at
    if _requests > 1 or waited >= _grace_s:
        raise Interrupted(
            f"stop requested {waited:.1f} s ago; the running loop did not end by itself"
        )

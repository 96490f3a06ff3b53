"""Stopping the local stack: what ``airloop down`` does, and the clean-up of what a dead service
left behind, which ``airloop up`` does before starting it again.

Services stop in waves, dependents first (the scheduler before the api-server, the database
last). A service is stopped when its whole tree and session are gone, not just its leader: a
child left listening on a port (HAProxy) counts. What is still there after the timeout is
killed, and named.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

from config import Settings
from tasks.platform.stack.processes import (
    kill_all,
    leftovers,
    members,
    reap,
    recorded_pid,
    service_pid,
    still_running,
    terminate,
)
from tasks.platform.stack.services import SERVICES, Service, pid_file


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _left_over(name: str, rest: dict[int, str], timeout: float) -> str:
    names = ", ".join(f"{n} (pid {p})" for p, n in sorted(rest.items()))
    return f"  {name}: still running after {timeout:.0f}s: {names}; killed"


def clean_leftovers(settings: Settings, services: list[Service], quiet: bool, grace: float = 10.0) -> None:
    """Stop what dead services left behind (SIGTERM, SIGKILL after ``grace``), saying what it
    was: a restart must not run beside the old one's workers, nor find its port taken."""
    for service in services:
        rest = leftovers(settings, service)
        if not rest:
            continue
        names = ", ".join(f"{n} (pid {p})" for p, n in sorted(rest.items()))
        _say(f"  {service.name} had died; stopping what it left running: {names}", quiet)
        session = recorded_pid(settings, service) or 0
        for pid in rest:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        _gone(set(rest), session, timeout=grace)
        kill_all(still_running(set(rest), session))
        _gone(set(rest), session)


def _gone(known: set[int], session: int, timeout: float = 10.0) -> None:
    """Wait until killed processes are gone (their sockets close only then)."""
    deadline = time.monotonic() + timeout
    while still_running(known, session) and time.monotonic() < deadline:
        time.sleep(0.05)


NOTICE_AFTER_S = 5.0
"""A service still stopping after this long (or the base timeout, if shorter) and allowed longer
is named, with how long it may take: ``down`` does not sit silent for the scheduler's minutes."""


def _stop_wave(
    wave: list[str],
    targets: dict[str, int],
    by_name: dict[str, Service],
    timeouts: dict[str, float],
    quiet: bool,
    *,
    notice_after: float = NOTICE_AFTER_S,
) -> list[str]:
    """Ask every service of the wave to stop and wait until its whole tree and session are gone
    (a child left listening counts); after its timeout, SIGKILL what is left and say what it was.
    Returns the services that had to be killed."""
    known = {name: members(targets[name]) for name in wave}
    t0 = time.monotonic()
    for name in wave:
        terminate(by_name[name], targets[name])
    left, killed, noticed = list(wave), [], set()
    while left:
        for name in list(left):
            if not still_running(known[name], targets[name]):
                left.remove(name)
                reap(targets[name])
                _say(f"  stopped {name:<14} pid {targets[name]:<7} after {time.monotonic() - t0:.1f}s", quiet)
            elif time.monotonic() > t0 + timeouts[name]:
                rest = still_running(known[name], targets[name])
                _say(_left_over(name, rest, timeouts[name]), quiet)
                kill_all(rest)
                _gone(known[name], targets[name])
                reap(targets[name])
                left.remove(name)
                killed.append(name)
            elif (
                name not in noticed and notice_after < time.monotonic() - t0 and notice_after < timeouts[name]
            ):
                noticed.add(name)
                why = by_name[name].stop_note or "waiting for it"
                _say(
                    f"  {name}: stopping for {notice_after:.0f}s; {why} (SIGKILL at {timeouts[name]:.0f}s)",
                    quiet,
                )
        if left:
            time.sleep(0.1)
    return killed


def stop_waves(services: list[Service], names: Iterable[str]) -> list[list[str]]:
    """Stop order: first what nothing running depends on, then what those depended on, and so on
    (the api-server after the scheduler, the database last)."""
    left = list(names)
    after = {s.name: set(s.after) for s in services}
    waves = []
    while left:
        needed = {dep for name in left for dep in after.get(name, set())}
        wave = [name for name in left if name not in needed] or list(left)
        waves.append(wave)
        left = [name for name in left if name not in wave]
    return waves


def stop(
    settings: Settings,
    *,
    timeout: float = 30.0,
    quiet: bool = False,
    services: Iterable[Service] | None = None,
) -> list[str]:
    """Ask each service to stop, dependents first, and wait until its whole process group is gone;
    SIGKILL only what is still there after ``timeout`` (or the service's longer ``stop_grace``:
    the scheduler's running tasks finish first), and say so.

    The api-server goes after the scheduler, so tasks interrupted by the scheduler's shutdown can
    still report their state through the execution API; the database goes last. Returns the names
    of the services that were running.
    """
    wanted = list(SERVICES if services is None else services)
    targets = {s.name: pid for s in wanted if (pid := service_pid(settings, s)) is not None}
    clean_leftovers(settings, [s for s in wanted if s.name not in targets], quiet)
    if not targets:
        for service in wanted:
            pid_file(settings, service).unlink(missing_ok=True)
        _say("airloop stack: nothing running", quiet)
        return []
    by_name = {s.name: s for s in wanted}
    timeouts = {name: max(timeout, by_name[name].stop_grace(settings)) for name in targets}
    killed = []
    for wave in stop_waves(wanted, targets):
        killed += _stop_wave(
            wave, targets, by_name, timeouts, quiet, notice_after=min(timeout, NOTICE_AFTER_S)
        )
    for service in wanted:
        if service.name in targets:
            pid_file(settings, service).unlink(missing_ok=True)
    if killed:
        _say(f"  killed after their stop timeout: {', '.join(killed)} (see their logs)", quiet)
    return list(targets)

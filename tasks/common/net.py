"""Ports of local servers.

Ports are drawn below the kernel's ephemeral range: a port the kernel hands out for ``bind(0)``
can be taken again by any outgoing connection (a scheduler's heartbeat, a database client)
between the moment it is chosen and the moment the server binds it, which made a Ray head fail
to start on a busy machine.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FALLBACK_RANGE = (32768, 60999)
_LOWEST = 20000
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _FALLBACK_RANGE


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, *, contiguous: bool = False) -> list[int]:
    """``count`` TCP ports nothing listens on, outside the ephemeral range, none given before.

    ``contiguous`` asks for a run of consecutive ports (a Ray worker port range).
    """
    ephemeral_low, _ = _ephemeral_range()
    high = max(ephemeral_low - count, _LOWEST + 1000)
    for _ in range(2000):
        if contiguous:
            start = random.randrange(_LOWEST, high)
            candidates = list(range(start, start + count))
        else:
            candidates = random.sample(range(_LOWEST, high), count)
        if any(p in _given for p in candidates) or not all(_bindable(p) for p in candidates):
            continue
        _given.update(candidates)
        return candidates
    raise RuntimeError(f"no {count} free TCP ports between {_LOWEST} and {high}")


def free_port() -> int:
    """A TCP port nothing listens on now (for listeners a second local instance would clash on)."""
    return free_ports(1)[0]

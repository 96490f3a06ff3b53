"""``airloop down``'s side of a clean stop (``tasks.platform.stack.control.stop``): it waits for a
service's whole tree and session, not only its leader, and reports (then kills) what a service
left behind, such as a child in a process group of its own still listening on a port.

The services here are small Python processes started through ``stack.start`` like any other.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest

from config import read_config
from tasks.common.net import free_port
from tasks.platform import stack
from tasks.platform.stack.processes import alive
from tasks.platform.stack.services import Service

# The leader starts a child in a process group of its own that listens on a port and ignores
# SIGTERM (HAProxy left behind by the serving process did exactly this); the leader itself
# leaves at once on SIGTERM.
STUBBORN = """
import os, signal, socket, subprocess, sys, time  # airloop-test-stubborn
port = int(sys.argv[1])
child = '''
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(600)
'''
subprocess.Popen([sys.executable, "-c", child, str(port)], process_group=0)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
time.sleep(600)
"""

# A leader that forwards SIGTERM to its child and waits for it: a clean stop.
POLITE = """
import signal, subprocess, sys, time  # airloop-test-polite
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
def bye(*_):
    kid.terminate(); kid.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, bye)
time.sleep(600)
"""


def _service(name: str, code: str, *args: str) -> Service:
    return Service(
        name,
        lambda s: [sys.executable, "-c", code, *args],
        match=f"airloop-test-{name}",
        airflow=False,
        port_setting="",
    )


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    return read_config("local")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def test_stop_waits_for_the_whole_session_and_kills_what_is_left(settings, capsys):
    port = free_port()
    stubborn = _service("stubborn", STUBBORN, str(port))
    pid = stack.start(settings, services=[stubborn], quiet=True)["stubborn"]
    _wait_listening(port)
    t0 = time.monotonic()
    assert stack.stop(settings, services=[stubborn], timeout=2.0) == ["stubborn"]
    out = capsys.readouterr().out
    assert time.monotonic() - t0 < 10
    assert "still running after 2s: python" in out and "killed" in out
    assert not alive(pid)
    assert not _listening(port)  # nothing of the service is left holding its port


def test_a_clean_stop_needs_no_kill(settings, capsys):
    polite = _service("polite", POLITE)
    pid = stack.start(settings, services=[polite], quiet=True)["polite"]
    assert stack.stop(settings, services=[polite], timeout=20.0) == ["polite"]
    out = capsys.readouterr().out
    assert "stopped polite" in out and "killed" not in out and "stopping for" not in out
    assert not alive(pid)
    assert stack.stop(settings, services=[polite]) == []  # a second stop finds nothing


# A leader whose child stays in its session: killed with -9, the leader leaves the child behind.
ORPHANING = """
import subprocess, sys, time  # airloop-test-orphaning
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # airloop-test-orphan"])
print("child", kid.pid, flush=True)
time.sleep(600)
"""


def _child_of(settings, service: Service) -> int:
    log = stack.service_log(settings, service)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines()[::-1]:
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no child pid in {log}")


def test_what_a_killed_service_left_is_stopped_before_it_starts_again(settings, capsys):
    import os
    import signal

    orphaning = _service("orphaning", ORPHANING)
    first = stack.start(settings, services=[orphaning], quiet=True)["orphaning"]
    child = _child_of(settings, orphaning)
    os.kill(first, signal.SIGKILL)
    while alive(first):
        time.sleep(0.05)
    assert alive(child)  # the orphan runs on, in the dead service's session
    stack.service_log(settings, orphaning).write_text("")
    second = stack.start(settings, services=[orphaning])["orphaning"]
    out = capsys.readouterr().out
    assert f"orphaning had died; stopping what it left running: python (pid {child})" in out
    assert not alive(child) and alive(second)
    new_child = _child_of(settings, orphaning)
    os.kill(second, signal.SIGKILL)
    while alive(second):
        time.sleep(0.05)
    assert stack.stop(settings, services=[orphaning], quiet=True) == []  # nothing runs ...
    assert not alive(new_child)  # ... but what it left is stopped all the same


# A leader that finishes what it is doing (3 s) after SIGTERM, as the scheduler finishes its
# running tasks (LocalExecutor) before it exits.
FINISHING = """
import signal, socket, sys, time  # airloop-test-finishing
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(3), sys.exit(0)))
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()  # ready
time.sleep(600)
"""


def test_a_service_given_a_longer_grace_finishes_its_work_instead_of_being_killed(settings, capsys):
    port = free_port()
    base = _service("finishing", FINISHING, str(port))
    finishing = Service(
        **{**base.__dict__, "stop_grace": lambda s: 15.0, "stop_note": "its work finishes first"}
    )
    pid = stack.start(settings, services=[finishing], quiet=True)["finishing"]
    _wait_listening(port)
    t0 = time.monotonic()
    assert stack.stop(settings, services=[finishing], timeout=1.0) == ["finishing"]
    out = capsys.readouterr().out
    assert "stopped finishing" in out and "killed" not in out, out
    # while it finishes, `down` says why it waits and for how long at most, once
    assert out.count("finishing: stopping for 1s; its work finishes first (SIGKILL at 15s)") == 1, out
    assert 2.5 < time.monotonic() - t0 < 15
    assert not alive(pid)
    scheduler = next(s for s in stack.SERVICES if s.name == "scheduler")
    assert scheduler.stop_grace(settings) == settings.airflow.scheduler_stop_seconds >= 60


def test_a_port_a_killed_process_is_still_releasing_is_waited_for(monkeypatch):
    """``airloop up`` right after a ``kill -9``: the dying process's pid is no longer recognised
    while its listening socket is still open; start waits a moment instead of refusing."""
    import threading

    from tasks.platform.stack import control

    monkeypatch.setattr(control, "PORT_RELEASE_SECONDS", 2.0)
    for closes_after, taken in ((0.5, False), (None, True)):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            if closes_after is not None:
                threading.Timer(closes_after, sock.close).start()
            assert control._port_stays_taken("127.0.0.1", port) is taken

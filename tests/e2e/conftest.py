"""End-to-end fixtures: one real Airflow stack per test session, started with ``tasks.platform.stack``.

The stack lives in a private tmp ``AIRLOOP_HOME`` (its own data dir, PostgreSQL metadata
database and logs), listens on free ports, and runs the ingest cron every minute so a scheduled
run comes within about a minute. It runs at the closed-loop test's scale (``CLOSED_LOOP``: small
windows, short holds, one small model family), which the other tests do not notice. It is
always stopped at the end (serving included, when a test started it); when a test fails, the
tails of the service logs are attached to that test's report.

The home is not under pytest's base temp: as root (CI) PostgreSQL runs as ``postgres``, which
must reach its folders, and every pytest session on the machine resets that base to 0700.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tasks.platform import stack
from tasks.platform.airflow_client import AirflowClient
from tasks.platform.scale import SMALL_LOOP
from tests.services import MLFLOW_LOGIN, release_shared_services

PAST = "2026-06-01T00:00:00+00:00"
"""Where the tests' own batches are placed in time (``generate_batch(..., at=PAST)``): their
indices keep their ids apart from the story's, but that far along the simulated history they
would be in the future, which ingest refuses."""
STARTUP_TIMEOUT_S = 300.0
"""A cold start on 2 cores takes about a minute (no bytecode cache: every import compiles)."""


class E2EStack(NamedTuple):
    """What e2e tests get: ``settings, client = airflow_stack`` (``env`` for CLI subprocesses)."""

    settings: Settings
    client: AirflowClient
    env: dict[str, str]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: starts real Airflow processes")
    config.addinivalue_line("markers", "e2e_last: runs after every other test (stops the stack)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared stack run after all others, so its processes (and its every-minute
    ingest cron) do not load the machine under the rest of the suite; the ones that stop it, last."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("e2e_last") is not None,
            "airflow_stack" in item.fixturenames,
        )
    )


CLOSED_LOOP = SMALL_LOOP
"""Overrides that make the closed loop fit in CI (``tests/e2e/test_closed_loop.py``)."""


def _airloop_vars(home: Path) -> dict[str, str]:
    """The AIRLOOP_* environment of the stack (replacing any the test process has)."""
    return {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP_PROFILE": "local",
        "AIRLOOP__AIRFLOW__PORT": str(free_port()),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        "AIRLOOP__SERVING__PORT": str(free_port()),
        # Quoted: override values are parsed as YAML, where a bare `*` starts an alias.
        "AIRLOOP__INGEST__CRON": "* * * * *",
        **CLOSED_LOOP,
        **MLFLOW_LOGIN,
    }


def service_log_tails(settings: Settings, lines: int = 25) -> str:
    parts = [
        f"--- {stack.service_log(settings, s)} ---\n{stack.tail(stack.service_log(settings, s), lines)}"
        for s in stack.LOOP
    ]
    return "\n".join(parts)


@contextmanager
def airloop_environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with exactly the ``AIRLOOP*`` variables of ``env``: what a shell that runs
    ``airloop up`` for this stack has (``tasks.platform.stack`` builds its processes' environment
    from ``os.environ``); the test session's own environment is restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("AIRLOOP")]:
            mp.delenv(name)
        for name, value in env.items():
            if name.startswith("AIRLOOP"):
                mp.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """A running Airflow stack on the project's dags/, stopped at the end of the session."""
    release_shared_services()  # the serving tests' Ray and MLflow are done with by now
    home = Path(tempfile.mkdtemp(prefix="airloop-e2e-"))
    airloop = _airloop_vars(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOOP")} | airloop
    with airloop_environment(airloop):
        settings = read_config("local")  # relative paths resolve against AIRLOOP_HOME
        try:
            stack.start(settings, timeout=STARTUP_TIMEOUT_S, quiet=True)
        except BaseException:
            stack.stop(settings, quiet=True, services=stack.LOOP)
            raise
    try:
        yield E2EStack(settings, AirflowClient.from_settings(settings), env)
    finally:
        stack.stop(settings, quiet=True, services=stack.LOOP)
        shutil.rmtree(home, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On a failing e2e test, attach the service logs' tails to its report."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed and "airflow_stack" in funcargs:
        settings = funcargs["airflow_stack"].settings
        report.sections.append(("airflow service logs", service_log_tails(settings)))

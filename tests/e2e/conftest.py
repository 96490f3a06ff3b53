"""End-to-end fixtures: one real Airflow stack per test session, started with ``tasks.platform.stack``.

The stack lives in a private tmp ``AIRLOOP_HOME`` (its own data dir, SQLite metadata DB and
logs), listens on a free port, and runs the ingest cron every minute so a scheduled run comes
within about a minute. It is always stopped at the end; when a test fails, the tails of the
service logs are attached to that test's report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from config import Settings, read_config
from tasks.common.net import free_port
from tasks.platform import stack
from tasks.platform.airflow_client import AirflowClient

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
    """Tests that stop the shared stack run last, whatever order or selection was asked for."""
    items.sort(key=lambda item: item.get_closest_marker("e2e_last") is not None)


def _airloop_vars(home: Path) -> dict[str, str]:
    """The AIRLOOP_* environment of the stack (replacing any the test process has)."""
    return {
        "AIRLOOP_HOME": str(home),
        "AIRLOOP_PROFILE": "local",
        "AIRLOOP__AIRFLOW__PORT": str(free_port()),
        "AIRLOOP__MLFLOW__PORT": str(free_port()),
        # Quoted: override values are parsed as YAML, where a bare `*` starts an alias.
        "AIRLOOP__INGEST__CRON": "* * * * *",
    }


def service_log_tails(settings: Settings, lines: int = 25) -> str:
    parts = [
        f"--- {stack.service_log(settings, s)} ---\n{stack.tail(stack.service_log(settings, s), lines)}"
        for s in stack.SERVICES
    ]
    return "\n".join(parts)


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """A running Airflow stack on the project's dags/, stopped at the end of the session."""
    home = tmp_path_factory.mktemp("airloop-e2e")
    airloop = _airloop_vars(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOOP")} | airloop
    with pytest.MonkeyPatch.context() as mp:
        # tasks.platform.stack builds the Airflow processes' environment from os.environ; keep the test
        # session's own environment untouched once the stack is up.
        for name in [k for k in os.environ if k.startswith("AIRLOOP")]:
            mp.delenv(name)
        for name, value in airloop.items():
            mp.setenv(name, value)
        settings = read_config("local")  # relative paths resolve against AIRLOOP_HOME
        try:
            stack.start(settings, timeout=STARTUP_TIMEOUT_S, quiet=True)
        except BaseException:
            stack.stop(settings, quiet=True)
            raise
    try:
        yield E2EStack(settings, AirflowClient.from_settings(settings), env)
    finally:
        stack.stop(settings, quiet=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On a failing e2e test, attach the service logs' tails to its report."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed and "airflow_stack" in funcargs:
        settings = funcargs["airflow_stack"].settings
        report.sections.append(("airflow service logs", service_log_tails(settings)))

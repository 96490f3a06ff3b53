"""Stage outcomes as Airflow task states.

Stage code (``tasks/``) raises ``tasks.common.outcomes.Skip`` when there is nothing to do and
``Fail`` when a retry cannot help; here they become Airflow's skip and fail-without-retry.
``stage_task`` is ``@task`` with that translation, so a DAG's task body is one call into
``tasks/``; operators wrap their work in ``airflow_outcomes()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from tasks.common.outcomes import Fail, Skip


@contextmanager
def airflow_outcomes() -> Iterator[None]:
    """Turn ``Skip`` into a skipped task and ``Fail`` into a failed one that is not retried."""
    try:
        yield
    except Skip as exc:
        raise AirflowSkipException(str(exc)) from exc
    except Fail as exc:
        raise AirflowFailException(str(exc)) from exc


def with_outcomes(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``airflow_outcomes``; its signature (what Airflow injects) is kept."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with airflow_outcomes():
            return func(*args, **kwargs)

    return run


def stage_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``@task`` (with the same arguments) whose callable may raise ``Skip`` or ``Fail``."""
    if python_callable is not None:
        return task(with_outcomes(python_callable), **kwargs)
    return lambda func: task(with_outcomes(func), **kwargs)

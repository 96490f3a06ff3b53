"""Reading back what a ``dag.test()`` run left in the Airflow metadata DB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def xcom(run: Any, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.run_id == run.run_id, XComModel.task_id == task_id, XComModel.key == key
            )
        ).scalar_one()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value  # a bare string (what Airflow stores for some values, e.g. link URLs)
    return value


def load_dag(file: str, dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    # Not ``tests.conftest.ROOT``: importing conftest as a module runs it a second time, which
    # points AIRFLOW_HOME at a fresh database after Airflow has started.
    bag = DagBag(str(ROOT / "dags" / file))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)

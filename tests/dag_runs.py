"""Reading back what a ``dag.test()`` run left in the Airflow metadata DB."""

from __future__ import annotations

import json
from typing import Any


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

    from tests.conftest import ROOT

    bag = DagBag(str(ROOT / "dags" / file))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)

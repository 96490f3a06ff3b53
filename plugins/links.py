"""Extra links whose URLs the task itself pushed to XCom.

A task knows where its report or run lives only once it has run, so it pushes the URL (or a
dict of them) under ``source_key``, and the link reads it back for the task's page in the UI.
(Not ``xcom_key``: that is where Airflow stores the finished link, ``_link_<class name>``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


class XComLink(BaseOperatorLink):
    """Subclasses set ``name`` (the button), ``source_key`` and, for a dict of URLs, ``field``."""

    source_key = ""
    field: str | None = None

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(ti_key=ti_key, key=self.source_key)
        if self.field is None:
            return value or ""
        return (value or {}).get(self.field, "")

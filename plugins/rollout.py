"""The rollout operator: one step of ``tasks.rollout`` per task, with a link to the rollout history.

Every step task of the deploy DAG is a ``RolloutStepOperator``. It runs its step against the
serving application and the MLflow registry, republishes the rollout history page, and keeps
its address in XCom so that the task's page in the Airflow UI links to it ("Rollout history").
A failed judgment has already rolled traffic back when the task fails; it fails without retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from plugins.links import XComLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINK_XCOM_KEY = "rollout_history"
STEPS = ("begin", "smoke", "shadow", "canary", "promote", "rollback")


class RolloutHistoryLink(XComLink):
    """The rollout history page (steps on a timeline, judgments, the model's earlier rollouts)."""

    name = "Rollout history"
    source_key = LINK_XCOM_KEY


def version_from_events(context: Context) -> str | None:
    """The version announced by the newest ``registered_model`` asset event that triggered the run."""
    events = context.get("triggering_asset_events") or {}
    newest = None
    for asset_events in events.values():
        for event in asset_events:
            if (event.extra or {}).get("version") is not None and (
                newest is None or event.timestamp >= newest.timestamp
            ):
                newest = event
    return None if newest is None else str(newest.extra["version"])


class RolloutStepOperator(BaseOperator):
    """Run one rollout step: ``begin``, ``smoke``, ``shadow``, ``canary`` (with ``canary_index``),
    ``promote`` or ``rollback``. ``version`` (templated) applies to ``begin`` only: empty means
    the version in the triggering asset event, else the ``challenger`` alias."""

    template_fields = ("version", "rollout_id")
    operator_extra_links = (RolloutHistoryLink(),)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        step: str,
        settings: Settings | None = None,
        version: str | None = None,
        rollout_id: str | None = None,
        canary_index: int | None = None,
        **kwargs: Any,
    ) -> None:
        if step not in STEPS:
            raise ValueError(f"unknown rollout step {step!r}; one of {STEPS}")
        if step == "canary" and canary_index is None:
            raise ValueError("a canary step needs canary_index")
        super().__init__(**kwargs)
        self.step = step
        self.settings = settings
        self.version = version
        self.rollout_id = rollout_id
        self.canary_index = canary_index

    def _settings(self) -> Settings:
        from config import load_config

        return self.settings or load_config()

    def execute(self, context: Context) -> Any:
        from tasks.rollout import steps
        from tasks.rollout.record import load

        settings = self._settings()
        ti = context["ti"]
        if self.step == "begin":
            run = context.get("dag_run")
            record = steps.begin(
                settings,
                version=(self.version or None) or version_from_events(context),
                context={
                    "dag_id": ti.dag_id,
                    "dag_run_id": ti.run_id,
                    "run_type": str(getattr(run, "run_type", "")),
                },
            )
            self._publish(settings, record, ti)
            return record.id

        if not self.rollout_id:
            raise AirflowFailException("no rollout id: the begin task did not run")
        try:
            if self.step == "smoke":
                record = steps.smoke(settings, self.rollout_id)
            elif self.step == "shadow":
                record = steps.shadow(settings, self.rollout_id)
            elif self.step == "canary":
                record = steps.canary(settings, self.rollout_id, self.canary_index)
            elif self.step == "promote":
                record = steps.promote(settings, self.rollout_id)
            else:
                record = load(settings, self.rollout_id)
                if record.finished:
                    raise steps.Skip(f"the rollout already ended: {record.status}")
                running = [s.name for s in record.steps if s.status == "running"]
                where = f"step {running[-1]}" if running else "a step"
                record = steps.rollback(settings, record, reason=f"{where} did not finish: its task failed")
        except steps.Skip as exc:
            self._publish(settings, load(settings, self.rollout_id), ti)
            raise AirflowSkipException(str(exc)) from exc
        except steps.StepFailed as exc:
            self._publish(settings, load(settings, self.rollout_id), ti)
            raise AirflowFailException(f"rolled back: {exc}") from exc
        self._publish(settings, record, ti)
        return {"rollout_id": record.id, "status": record.status, "version": record.version}

    def _publish(self, settings: Settings, record: Any, ti: Any) -> None:
        from tasks.rollout import history_page

        published = history_page.publish(settings, record)
        ti.xcom_push(key=LINK_XCOM_KEY, value=f"/airloop/reports/{published.kind}/{published.name}")

"""The rollout operators: one step of ``tasks.rollout`` per task, with a link to the rollout history.

The deploy DAG's chain comes from ``tasks.rollout.plan.steps``; ``rollout_step(spec)`` picks the
operator for each ``StepSpec`` once: ``BeginStepOperator``, ``SmokeStepOperator``,
``ShadowStepOperator``, ``CanaryStepOperator``, ``PromoteStepOperator`` or
``RollbackStepOperator``. Each runs its step against the serving application and the MLflow
registry, republishes the rollout history page, and keeps its address in XCom so that the task's
page in the Airflow UI links to it ("Rollout history"). A judged failure has already rolled
traffic back when the task fails, and it fails without retry (``Fail``); ``Skip`` skips it.

Nothing heavy at module level: the deploy DAG imports this file at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from config import load_config
from plugins.assets import event_extras
from plugins.links import XComLink
from plugins.outcomes import airflow_outcomes
from tasks.common.outcomes import Fail, Skip
from tasks.rollout import history_page, plan
from tasks.rollout.record import RolloutRecord, StepResult, load

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config import Settings

LINK_XCOM_KEY = "rollout_history"
ROLLOUT_ID = "{{ (ti.xcom_pull(task_ids='begin') or {}).get('rollout_id', '') }}"
"""The rollout the ``begin`` task started (its ``StepResult``), for every later step."""


class RolloutHistoryLink(XComLink):
    """The rollout history page (steps on a timeline, judgments, the model's earlier rollouts)."""

    name = "Rollout history"
    source_key = LINK_XCOM_KEY


class RolloutStepOperator(BaseOperator):
    """One step of a rollout (``rollout_id``, templated); subclasses say which in ``run``."""

    template_fields: Sequence[str] = ("rollout_id",)
    operator_extra_links = (RolloutHistoryLink(),)
    ui_color = "#e8f4ea"

    def __init__(
        self, *, settings: Settings | None = None, rollout_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.rollout_id = rollout_id

    @classmethod
    def from_spec(cls, spec: plan.StepSpec, *, settings: Settings) -> RolloutStepOperator:
        return cls(
            task_id=spec.task_id, trigger_rule=spec.trigger_rule, settings=settings, rollout_id=ROLLOUT_ID
        )

    def _settings(self) -> Settings:
        return self.settings or load_config()

    def _rollout(self) -> str:
        if not self.rollout_id:
            raise Fail("no rollout id: the begin task did not run")
        return self.rollout_id

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        settings = self._settings()
        with airflow_outcomes():
            try:
                record = self.run(settings, context)
            except (Skip, Fail):
                if self.rollout_id:
                    self._publish(settings, load(settings, self.rollout_id), context)
                raise
        self._publish(settings, record, context)
        return StepResult.of(record).as_dict()

    def _publish(self, settings: Settings, record: RolloutRecord, context: Context) -> None:
        context["ti"].xcom_push(key=LINK_XCOM_KEY, value=history_page.publish(settings, record).url)


class BeginStepOperator(RolloutStepOperator):
    """Start a rollout of ``version`` (templated); empty: the version in the triggering asset
    event, else the ``challenger`` alias."""

    template_fields: Sequence[str] = ("version",)

    def __init__(self, *, version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    @classmethod
    def from_spec(cls, spec: plan.StepSpec, *, settings: Settings) -> RolloutStepOperator:
        return cls(
            task_id=spec.task_id,
            trigger_rule=spec.trigger_rule,
            settings=settings,
            version="{{ params.version or '' }}",
        )

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import steps  # noqa: PLC0415 - pandas and MLflow stay out of DAG parsing

        ti = context["ti"]
        announced = plan.announced_version(event_extras(context.get("triggering_asset_events")))
        run = context.get("dag_run")
        where = {"dag_id": ti.dag_id, "dag_run_id": ti.run_id, "run_type": str(getattr(run, "run_type", ""))}
        return steps.begin(settings, version=(self.version or None) or announced, context=where)


class SmokeStepOperator(RolloutStepOperator):
    """Load the version into the challenger slot and score known inputs on it."""

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import steps  # noqa: PLC0415 - pandas and MLflow stay out of DAG parsing

        return steps.smoke(settings, self._rollout())


class ShadowStepOperator(RolloutStepOperator):
    """Mirror live traffic to the challenger and judge it."""

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import steps  # noqa: PLC0415 - pandas and MLflow stay out of DAG parsing

        return steps.shadow(settings, self._rollout())


class CanaryStepOperator(RolloutStepOperator):
    """Send ``rollout.canary[canary_index]`` of live traffic to the challenger and judge it."""

    def __init__(self, *, canary_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.canary_index = canary_index

    @classmethod
    def from_spec(cls, spec: plan.StepSpec, *, settings: Settings) -> RolloutStepOperator:
        if spec.canary_index is None:
            raise ValueError(f"{spec.task_id}: a canary step needs its canary_index")
        return cls(
            task_id=spec.task_id,
            trigger_rule=spec.trigger_rule,
            settings=settings,
            rollout_id=ROLLOUT_ID,
            canary_index=spec.canary_index,
        )

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import steps  # noqa: PLC0415 - pandas and MLflow stay out of DAG parsing

        return steps.canary(settings, self._rollout(), self.canary_index)


class PromoteStepOperator(RolloutStepOperator):
    """Make the version the champion, in serving and in the registry."""

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import steps  # noqa: PLC0415 - pandas and MLflow stay out of DAG parsing

        return steps.promote(settings, self._rollout())


class RollbackStepOperator(RolloutStepOperator):
    """The teardown: roll back a rollout that a dead task left running; skipped otherwise."""

    def run(self, settings: Settings, context: Context) -> RolloutRecord:
        from tasks.rollout import rollback  # noqa: PLC0415 - MLflow stays out of DAG parsing

        return rollback.after_failed_task(settings, self._rollout())


STEP_OPERATORS: dict[str, type[RolloutStepOperator]] = {
    plan.BEGIN: BeginStepOperator,
    plan.SMOKE: SmokeStepOperator,
    plan.SHADOW: ShadowStepOperator,
    plan.CANARY: CanaryStepOperator,
    plan.PROMOTE: PromoteStepOperator,
    plan.ROLLBACK: RollbackStepOperator,
}


def rollout_step(spec: plan.StepSpec, *, settings: Settings) -> RolloutStepOperator:
    """The operator for one step of ``tasks.rollout.plan.steps``, chosen by its kind."""
    return STEP_OPERATORS[spec.kind].from_spec(spec, settings=settings)

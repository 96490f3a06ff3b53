"""What every stage of the story shares: the settings, the Airflow client, the options, the
timeline and the traffic playing under it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config import Settings
from tasks.platform.airflow_client import AirflowClient
from tasks.platform.story.timeline import Timeline
from tasks.platform.traffic import Background

SCENARIO_NAMES = {"covariate": "covariate_drift", "concept": "concept_drift", "none": None}
"""``--scenario`` names and the simulator's scenario each plays (``none``: no drift)."""


@dataclass(frozen=True)
class StoryOptions:
    batches: int = 3
    """Stable batches landed at the start (the simulated history continues from the last demo)."""
    rows: int | None = None
    """Rows per batch; None: ``simulate.batch_rows``."""
    bad: str | None = "nulls"
    """The kind of bad batch landed with the stable ones (None: none)."""
    scenario: str = "covariate"
    """The drift that begins: ``covariate``, ``concept`` or ``none``."""
    drift_batches: int = 2
    """Batches of the drifted world landed when the drift begins (labelled data to retrain on)."""
    rate: float = 20.0
    """Live requests per second under the story."""
    label_delay: float = 10.0
    """Seconds until each request's label is posted (the chargeback feed)."""
    steady_windows: int = 1
    """Monitor windows judged on steady traffic before the drift begins (0: ``steady_seconds``)."""
    steady_seconds: float = 30.0
    quiet_windows: int = 3
    """With no drift: windows the monitor judges (and does not retrain on) before the story ends."""
    served_answers: int = 100
    """Answers in a row from the new champion that show it serves all traffic."""
    timeout: float = 900.0
    """Seconds each stage may take."""
    until: str = "loop"
    """``features``: stop after the features runs; ``serve``: after the first champion goes live;
    ``loop``: the whole closed loop."""


@dataclass
class Story:
    settings: Settings
    client: AirflowClient
    options: StoryOptions
    timeline: Timeline = field(default_factory=Timeline)
    traffic: Background | None = None
    seen: dict[str, Any] = field(default_factory=dict)
    """What later stages need from earlier ones (run ids, versions, times)."""
    _serving: threading.Thread | None = None
    _serving_error: list[BaseException] = field(default_factory=list)

    def start_serving(self, start: Callable[[], object]) -> None:
        """Start the serving application in a thread (Ray takes a minute): the data stages run
        meanwhile; ``serving_ready`` waits for it before anything needs it."""

        def run() -> None:
            try:
                start()
            except BaseException as exc:  # noqa: BLE001 - raised again by serving_ready
                self._serving_error.append(exc)

        self._serving = threading.Thread(target=run, name="serving-start", daemon=True)
        self._serving.start()

    def serving_ready(self) -> None:
        """Wait until the serving application started in the background is up (its error, if
        it failed to start)."""
        if self._serving is not None:
            self._serving.join()
        if self._serving_error:
            raise self._serving_error[0]

    @property
    def drift_scenario(self) -> str | None:
        return SCENARIO_NAMES[self.options.scenario]

    def now(self) -> datetime:
        return datetime.now(UTC)

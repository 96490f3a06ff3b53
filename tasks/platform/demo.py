"""The whole closed loop on the local profile, on simulated data: what ``airloop demo`` (``make
demo``) runs.

Starts the local stack with the serving application and plays the story (``tasks.platform.story``):
an upstream system lands stable batches and one bad one; ingest curates them and quarantines the
bad one; features materializes them; the first model is trained and goes live (a second demo keeps
the champion the first one left); live traffic with delayed labels flows; then a drift begins
(``--scenario covariate|concept|none``), the monitor decides to retrain and says why, the retrain's
challenger passes the gate and goes through shadow and canary steps to promote, and the traffic is
served by the new champion. A live display shows each stage; the summary prints the timeline,
both model versions with their metrics, the drift numbers, the traffic and memory, and where to
look. A second demo continues the simulated history.

``until="features"`` stops after the features runs; ``until="serve"`` once the first champion
serves steady traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from tasks.platform import simulate, stack
from tasks.platform.airflow_client import AirflowAPIError, AirflowClient
from tasks.platform.story import Story, StoryError, StoryOptions, play, print_summary


@dataclass(frozen=True)
class DemoOptions:
    batches: int = 3
    rows: int | None = None
    """Rows per batch; None: ``simulate.batch_rows``."""
    bad: str | None = "nulls"
    """The kind of bad batch landed with the good ones (None: none)."""
    timeout: float = 900.0
    """Seconds to wait for each stage."""
    until: str = "loop"
    """``features``, ``serve`` (the first champion serving) or ``loop`` (the whole story)."""
    scenario: str = "covariate"
    """The drift that begins: ``covariate``, ``concept`` or ``none``."""
    rate: float = 20.0
    label_delay: float = 10.0
    steady_windows: int = 1

    def story(self) -> StoryOptions:
        return StoryOptions(
            batches=self.batches,
            rows=self.rows,
            bad=self.bad,
            scenario=self.scenario,
            rate=self.rate,
            label_delay=self.label_delay,
            steady_windows=self.steady_windows,
            timeout=self.timeout,
            until=self.until,
        )


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(settings: Settings, options: DemoOptions) -> int:
    """The story with a live line per stage, then the summary; 0 when it got through, 1 with the
    reason when a stage failed or timed out (the stack is left up, to look at)."""
    story = Story(settings, AirflowClient.from_settings(settings), options.story())
    _say(f"==> airloop demo: the closed loop on {settings.airflow.home} (scenario {options.scenario})")
    failed: str | None = None
    try:
        path = play(story)
    except (StoryError, stack.StackError, simulate.NotifyError, AirflowAPIError, TimeoutError) as exc:
        failed = str(exc)
        path = None
    print_summary(story, _say)
    if failed:
        _say(f"\nerror: {failed}")
        _say(f"  see `airloop status` and the logs in {stack.log_dir(settings)}; stop with `make down`")
        return 1
    _say(f"\ntimeline saved in {path}/latest.json")
    return 0

"""Live traffic for the serving application: simulated transactions scored at a steady rate, and
their labels posted after a delay, as a payment system and its chargeback feed would.

    airloop traffic --rate 50 --seconds 600                    # stable traffic for 10 minutes
    airloop traffic --scenario covariate_drift --requests 5000 --label-delay 120

Transactions happen on the simulated world's clock (``Clock``): anchored at the end of the
history upstream landed, it runs at wall speed from there. So a request comes just after the
events the online store holds, as every training event came just after the events before it, and
request-time features (seconds since the customer's last transaction) mean the same in both.
The inference log still records when each prediction was made in wall time; monitor windows
are cut on that.

Locally this is what the deploy DAG's shadow and canary steps are judged on, and what fills the
inference log the monitor DAG reads: it is sent as live traffic (no ``X-Airloop-Traffic:
synthetic`` mark), because it plays the real world. Requests are open-loop (the i-th is sent at ``i / rate``
seconds whether or not earlier ones have answered, so a slow server shows as latency, not as a
lower offered rate). Labels still pending when the run ends are posted then. Prints a progress
line every few seconds and a summary at the end; exits 1 if any request failed.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Settings
from tasks.platform.simulate import generate_batch, history_end
from tasks.serving.client import ServingClient

CHUNK_ROWS = 200
FIRST_INDEX = 100_000
"""Batches of the simulator are numbered; traffic uses its own range, apart from landed batches."""
RECENT = 200
"""How many of the latest answers ``TrafficStats.recent`` keeps (which versions serve now)."""


@dataclass
class Clock:
    """When live transactions happen: ``origin`` plus the wall time since it was anchored (the
    simulated world's present), or the wall clock itself while not anchored."""

    origin: datetime | None = None
    anchored: float = field(default_factory=time.monotonic)

    @classmethod
    def after_history(cls, settings: Settings) -> Clock:
        """A clock anchored where the landed simulated history ends."""
        return cls(history_end(settings).to_pydatetime())

    def anchor(self, origin: datetime) -> None:
        """Move the present to ``origin`` (new history landed), running on from there."""
        self.origin, self.anchored = origin, time.monotonic()

    def now(self) -> datetime:
        if self.origin is None:
            return datetime.now(UTC)
        return self.origin + timedelta(seconds=time.monotonic() - self.anchored)


@dataclass
class Mix:
    """What the traffic looks like: a scenario that can change while it plays (the demo's drift
    begins mid-run); the next transaction sent follows the change."""

    scenario: str = "stable"
    drift_strength: float = 1.0

    def switch(self, scenario: str, drift_strength: float | None = None) -> None:
        self.scenario = scenario
        if drift_strength is not None:
            self.drift_strength = drift_strength


@dataclass
class TrafficStats:
    """What one run sent and got back; ``line()`` is its progress line."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    labels_posted: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The model version of each of the latest answers, oldest first."""

    def serving_only(self, version: str, last: int) -> bool:
        """Whether the last ``last`` answers all came from ``version``."""
        latest = list(self.recent)[-last:]
        return len(latest) == last and all(v == version for v in latest)

    def quantile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        lat = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else "no answers yet"
        versions = ", ".join(f"v{v}: {n}" for v, n in sorted(self.versions.items()))
        return (
            f"{elapsed:6.1f} s  {self.sent} sent ({self.sent / max(elapsed, 1e-9):.1f}/s), "
            f"{self.failed} failed, {lat}, {self.labels_posted} labels  [{versions}]"
        )


def transactions(
    settings: Settings, mix: Mix, first_index: int, clock: Clock | None = None
) -> Iterator[dict[str, Any]]:
    """Endless simulated transactions (with their label) as ``mix`` says, chunk by chunk, each
    chunk drawn for the clock's present (the index only keeps ids apart); a change of the mix
    starts a new chunk at once. The player stamps each one with its own send time."""
    clock = clock or Clock()
    index = first_index
    while True:
        scenario, strength = mix.scenario, mix.drift_strength
        frame = generate_batch(
            settings, scenario, index, rows=CHUNK_ROWS, drift_strength=strength, at=clock.now()
        )
        for record in frame.to_dict("records"):
            if (mix.scenario, mix.drift_strength) != (scenario, strength):
                break
            yield {str(k): v for k, v in record.items()}
        index += 1


@dataclass(frozen=True)
class _Pace:
    """How fast to send and when to stop: after ``requests``, after ``seconds``, or on ``stop``."""

    rate: float
    seconds: float | None
    requests: int | None
    stop: threading.Event
    progress_every: float

    def done(self, sent: int, elapsed_when_due: float) -> bool:
        return (self.requests is not None and sent >= self.requests) or (
            self.seconds is not None and elapsed_when_due >= self.seconds
        )


class _Player:
    """The state of one run shared by the sending loop and the client threads."""

    def __init__(self, settings: Settings, client: ServingClient, label_delay: float, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.client = client
        self.label_delay = label_delay
        self.stats = TrafficStats()
        self.lock = threading.Lock()
        self.pending: deque[tuple[float, str, int]] = deque()  # (due, transaction id, label)

    def score(self, row: dict[str, Any]) -> None:
        schema = self.settings.schema_
        label = int(row.pop(schema.label))
        row[schema.timestamp] = self.clock.now().isoformat()
        stats = self.stats
        try:
            answer = self.client.score(row)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            with self.lock:
                stats.failed += 1
                if len(stats.errors) < 5:
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            stats.ok += 1
            stats.recent.append(str(answer["model_version"]))
            stats.versions[answer["model_version"]] += 1
            stats.routes[answer["route"]] += 1
            stats.latencies_ms.append(float(answer["latency_ms"]))
            self.pending.append((time.monotonic() + self.label_delay, row[schema.key], label))

    def post_labels(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            due = []
            while self.pending and (everything or self.pending[0][0] <= now):
                due.append(self.pending.popleft())
        size = self.settings.serving.max_label_rows
        for start in range(0, len(due), size):
            chunk = due[start : start + size]
            self.client.post_labels([{"transaction_id": t, "label": y} for _, t, y in chunk])
            self.stats.labels_posted += len(chunk)

    def send(
        self,
        pool: ThreadPoolExecutor,
        rows: Iterator[dict[str, Any]],
        pace: _Pace,
        progress: Callable[[str], None] | None,
    ) -> None:
        """Submit one request at each due time (open loop) until the pace says stop."""
        stats = self.stats
        last_report = stats.started
        while not pace.stop.is_set():
            due = stats.started + stats.sent / pace.rate
            if pace.done(stats.sent, due - stats.started):
                break
            wait = due - time.monotonic()
            if wait > 0 and pace.stop.wait(wait):
                break
            pool.submit(self.score, next(rows))
            stats.sent += 1
            self.post_labels()
            if progress and time.monotonic() - last_report >= pace.progress_every:
                last_report = time.monotonic()
                progress(f"[traffic] {stats.line()}")


def play(
    settings: Settings,
    *,
    rate: float,
    seconds: float | None = None,
    requests: int | None = None,
    scenario: str | Mix = "stable",
    drift_strength: float = 1.0,
    label_delay: float = 30.0,
    workers: int = 16,
    client: ServingClient | None = None,
    progress: Callable[[str], None] | None = print,
    progress_every: float = 5.0,
    stop: threading.Event | None = None,
    first_index: int = FIRST_INDEX,
    stats: TrafficStats | None = None,
    clock: Clock | None = None,
) -> TrafficStats:
    """Send ``requests`` (or for ``seconds``) transactions at ``rate`` per second; post each
    one's label ``label_delay`` seconds after it was scored. ``scenario`` may be a ``Mix`` that
    another thread switches; ``stats`` (else a new one) is filled as answers come. ``clock``
    (default: anchored after the landed history) stamps each transaction's time.

    Requests look like live traffic (no synthetic mark): what they score is monitored."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if seconds is None and requests is None:
        raise ValueError("give seconds or requests (or both)")
    client = client or ServingClient.from_settings(settings)
    clock = clock or Clock.after_history(settings)
    player = _Player(settings, client, label_delay, clock)
    if stats is not None:
        player.stats = stats
    pace = _Pace(rate, seconds, requests, stop or threading.Event(), progress_every)
    mix = scenario if isinstance(scenario, Mix) else Mix(scenario, drift_strength)
    rows = transactions(settings, mix, first_index, clock)
    with ThreadPoolExecutor(workers, thread_name_prefix="traffic") as pool:
        player.send(pool, rows, pace, progress)
    player.post_labels(everything=True)
    if progress:
        progress(f"[traffic] done: {player.stats.line()}")
        for error in player.stats.errors:
            progress(f"[traffic] failure: {error}")
    return player.stats


class Background:
    """Traffic in a thread until stopped, its mix switchable meanwhile: what the demo plays under
    the whole story (``start``, ``mix.switch(...)``, ``clock.anchor(...)`` when new history
    landed, ``stop`` returns the stats)."""

    def __init__(
        self,
        settings: Settings,
        *,
        rate: float,
        label_delay: float,
        mix: Mix | None = None,
        first_index: int = FIRST_INDEX,
        client: ServingClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings, self.rate, self.label_delay = settings, rate, label_delay
        self.mix = mix or Mix()
        self.clock = clock or Clock.after_history(settings)
        self.first_index = first_index
        self.client = client
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            play(
                self.settings,
                rate=self.rate,
                seconds=math.inf,
                scenario=self.mix,
                label_delay=self.label_delay,
                client=self.client,
                progress=None,
                stop=self._stop,
                first_index=self.first_index,
                stats=self.stats,
                clock=self.clock,
            )
        except BaseException as exc:  # noqa: BLE001 - kept for the caller, which reports it
            self.error = exc

    def start(self) -> Background:
        self.stats.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> TrafficStats:
        """Stop sending, post the labels still pending, and return what was sent and answered."""
        self._stop.set()
        self._thread.join(timeout)
        return self.stats

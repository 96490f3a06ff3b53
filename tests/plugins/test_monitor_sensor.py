"""The monitor's sensor and trigger on a real inference log (the serving module's own writer).

The trigger runs on a real asyncio loop; rows are written from another thread while it polls, and
the test waits on what the trigger saw (an event set by its polls), never on a sleep.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred

from plugins.monitoring import NewPredictionsSensor, NewPredictionsTrigger

NOW = datetime.now(UTC)


def write_predictions(
    settings,
    n_live: int,
    *,
    at: datetime | None = None,
    shadow: int = 0,
    tag: str = "r",
    traffic: str | None = None,
):
    """``n_live`` champion predictions (and ``shadow`` mirrored ones) a few minutes before ``at``;
    ``traffic``: the rows' mark (``live``, ``synthetic``; None: no mark, as older files)."""
    from tasks.serving.inference_log import InferenceLogWriter

    at = at or NOW - timedelta(minutes=10)
    n = n_live + shadow
    frame = pd.DataFrame(
        {
            "request_id": [f"{tag}{i}" for i in range(n)],
            "timestamp": pd.Timestamp(at) - pd.to_timedelta(np.arange(n), unit="s"),
            "route": ["champion"] * n_live + ["shadow"] * shadow,
            "model_version": "1",
            "score": np.linspace(0, 1, n),
            "transaction_id": [f"t{tag}{i}" for i in range(n)],
        }
    )
    if traffic is not None:
        frame["traffic"] = traffic
    writer = InferenceLogWriter(settings, writer_id=f"sensor-test-{tag}")
    assert writer.append(frame)
    writer.close()
    assert writer.rows_written == n


class Spy:
    """Records every poll of a trigger; ``too_few`` is set once a poll counted too few rows."""

    def __init__(self, trigger: NewPredictionsTrigger) -> None:
        self.polls: list[dict] = []
        self.too_few = threading.Event()
        original = trigger._check

        def check() -> dict:
            seen = original()
            self.polls.append(seen)
            if seen["count"] < trigger.min_new_predictions:
                self.too_few.set()
            return seen

        trigger._check = check  # type: ignore[method-assign]


async def _first_event(trigger: NewPredictionsTrigger):
    async for event in trigger.run():
        return event
    return None


def test_trigger_keeps_polling_while_too_few_then_fires_with_the_count(settings):
    write_predictions(settings, 60, shadow=20, tag="a")  # 60 live: too few for 100
    trigger = NewPredictionsTrigger(
        min_new_predictions=100,
        poke_interval=0.05,
        timeout_at=(datetime.now(UTC) + timedelta(minutes=2)).isoformat(),
    )
    spy = Spy(trigger)

    async def scenario():
        waiting = asyncio.create_task(_first_event(trigger))
        assert await asyncio.to_thread(spy.too_few.wait, 30), "the trigger never polled"
        assert not waiting.done()  # too few: still waiting
        polls_before = len(spy.polls)
        await asyncio.to_thread(write_predictions, settings, 60, shadow=10, tag="b")
        event = await asyncio.wait_for(waiting, timeout=30)
        return event, polls_before

    event, polls_before = asyncio.run(scenario())
    assert polls_before >= 1 and spy.polls[0]["count"] == 60  # shadow traffic is not live
    payload = event.payload
    assert payload["status"] == "ready" and payload["count"] == 120
    # no window recorded yet: the first window starts first_window_hours before its first poll's
    # end, and its end moves with the polls
    start, end = pd.Timestamp(payload["start"]), pd.Timestamp(payload["end"])
    first = pd.Timedelta(hours=settings.monitor.first_window_hours)
    assert first <= end - start < first + pd.Timedelta(minutes=1)
    lag = pd.Timedelta(seconds=settings.monitor.log_lag_seconds)
    assert pd.Timestamp(NOW) - lag - pd.Timedelta(minutes=1) < end <= pd.Timestamp.now(tz="UTC") - lag
    # every poll counted from the same start
    assert {p["start"] for p in spy.polls} == {payload["start"]}


def test_trigger_times_out_with_a_timeout_event(settings):
    write_predictions(settings, 5, tag="c")
    trigger = NewPredictionsTrigger(
        min_new_predictions=100,
        poke_interval=0.05,
        timeout_at=(datetime.now(UTC) + timedelta(seconds=0.5)).isoformat(),
    )
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), timeout=30))
    assert event.payload["status"] == "timeout" and event.payload["count"] == 5


def test_trigger_reports_an_error_after_repeated_failures(settings, monkeypatch):
    trigger = NewPredictionsTrigger(min_new_predictions=1, poke_interval=0.01, max_errors=2)

    def broken():
        raise OSError("storage is down")

    monkeypatch.setattr(trigger, "_check", broken)
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), timeout=30))
    assert event.payload == {"status": "error", "message": "OSError: storage is down"}


def test_trigger_serializes_to_its_classpath_and_rebuilds(settings):
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    trigger = NewPredictionsTrigger(
        min_new_predictions=250,
        start="2026-01-02T00:00:00+00:00",
        end=None,
        poke_interval=30,
        timeout_at="2026-01-02T06:00:00+00:00",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "plugins.monitoring.NewPredictionsTrigger"
    # as the triggerer (and dag.test) rebuilds it: serde-encoded kwargs, class from its path
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["min_new_predictions"] == 250 and kwargs["start"] == "2026-01-02T00:00:00+00:00"


def test_trigger_counts_from_the_end_of_the_last_monitored_window(settings):
    from tasks.monitoring import store

    last_end = pd.Timestamp(NOW - timedelta(minutes=30)).floor("s")
    store.record_window(settings, {"window_id": "w-previous", "end": last_end})
    write_predictions(settings, 40, at=last_end.to_pydatetime() - timedelta(minutes=1), tag="old")
    write_predictions(settings, 30, at=NOW - timedelta(minutes=5), tag="new")
    trigger = NewPredictionsTrigger(min_new_predictions=30, poke_interval=0.05)
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), timeout=30))
    assert event.payload["count"] == 30 and pd.Timestamp(event.payload["start"]) == last_end


def _sensor(**kwargs):
    return NewPredictionsSensor(
        task_id="wait_for_predictions",
        min_new_predictions=100,
        poke_interval=7,
        timeout=600,
        **kwargs,
    )


def test_sensor_defers_to_the_trigger_when_too_few(settings):
    write_predictions(settings, 40, tag="d")
    sensor = _sensor()
    deferred_at = datetime.now(UTC)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, NewPredictionsTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.min_new_predictions == 100 and trigger.poke_interval == 7
    assert trigger.start is not None and trigger.end is None  # the start is fixed, the end moves
    timeout_at = pd.Timestamp(trigger.timeout_at)
    assert pd.Timedelta(minutes=9) < timeout_at - pd.Timestamp(deferred_at) < pd.Timedelta(minutes=11)
    assert deferred.value.timeout >= timedelta(seconds=600)  # Airflow's own net, after the trigger's


def test_sensor_returns_the_window_at_once_when_enough(settings):
    write_predictions(settings, 150, shadow=30, tag="e")
    window = _sensor().execute(context={})
    assert window["count"] == 150 and set(window) == {"count", "start", "end"}


def test_sensor_leaves_synthetic_traffic_out_of_its_count(settings):
    """A load test's requests (marked synthetic) on the champion's route do not make a window."""
    write_predictions(settings, 60, tag="unmarked")  # an older file: no mark, live
    write_predictions(settings, 30, tag="live", traffic="live")
    write_predictions(settings, 500, tag="bench", traffic="synthetic")
    with pytest.raises(TaskDeferred) as deferred:
        _sensor().execute(context={})
    assert deferred.value.trigger.min_new_predictions == 100
    poked = _sensor(deferrable=False).poke(context={})
    assert not poked.is_done and poked.xcom_value["count"] == 90


def test_sensor_with_a_fixed_window_counts_only_inside_it(settings):
    at = NOW - timedelta(hours=3)
    write_predictions(settings, 120, at=at, tag="f")
    write_predictions(settings, 500, tag="g")
    start, end = (at - timedelta(hours=1)).isoformat(), (at + timedelta(minutes=1)).isoformat()
    window = _sensor(start=start, end=end).execute(context={})
    assert window == {"count": 120, "start": start, "end": end}
    poked = _sensor(start=start, end=end, deferrable=False).poke(context={})
    assert poked.is_done and poked.xcom_value == window


def test_execute_complete_returns_the_window_or_raises(settings):
    sensor = _sensor()
    ready = {"status": "ready", "count": 3, "start": "a", "end": "b"}
    assert sensor.execute_complete({}, ready) == {"count": 3, "start": "a", "end": "b"}
    with pytest.raises(AirflowSensorTimeout, match="only 4 of 100"):
        sensor.execute_complete({}, {"status": "timeout", "count": 4, "start": "a", "timeout_at": "c"})
    with pytest.raises(AirflowException, match="storage is down"):
        sensor.execute_complete({}, {"status": "error", "message": "storage is down"})

"""The demo's story without a stack: its timeline and live display, the traffic's switchable mix,
the memory sampler, and the benchmark's overhead arithmetic. The story against real processes
is ``tests/e2e/test_closed_loop.py``."""

from __future__ import annotations

import io
import json
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.closed_loop import union_seconds
from tasks.platform.stack import memory
from tasks.platform.story.context import SCENARIO_NAMES
from tasks.platform.story.monitor import INDEX_SPAN, first_traffic_index
from tasks.platform.story.timeline import FAILED, OK, Display, Timeline
from tasks.platform.traffic import FIRST_INDEX, Mix, TrafficStats, transactions


def test_timeline_records_shows_and_saves_each_stage(tmp_path):
    out = io.StringIO()
    tl = Timeline(display=Display(out))
    t0 = datetime.now(UTC)
    tl.begin("ingest", "ingest: validate and curate", at=t0.isoformat())
    tl.note("ingest", "1 of 2 files taken")
    tl.note("ingest", "1 of 2 files taken")  # the same news is not repeated off a terminal
    tl.end("ingest", OK, "2 curated", at=(t0 + timedelta(seconds=42)).isoformat(), run_id="manual__1")
    tl.begin("train", "train")
    tl.end("train", FAILED, "gate rejected: pr_auc 0.1 < 0.4")
    text = out.getvalue()
    assert text.count("1 of 2 files taken") == 1
    assert "✓ ingest: validate and curate (42 s) 2 curated  run manual__1" in text
    assert "✗ train" in text and "gate rejected" in text
    rows = tl.table()
    assert rows[1].split()[-4:] == ["42", "s", "ok", "manual__1"]
    saved = json.loads(tl.save(tmp_path).read_text())
    assert [s["key"] for s in saved["stages"]] == ["ingest", "train"]
    assert saved["stages"][0]["outcome"] == OK and saved["stages"][1]["outcome"] == FAILED
    assert (tmp_path / "latest.json").read_text() == tl.save(tmp_path).read_text()


def test_live_display_rewrites_one_status_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    display = Display(out)
    display.status("waiting 1")
    display.status("waiting 2")
    display.line("done")
    text = out.getvalue()
    assert text.count("\r\033[2K") >= 3 and "done\n" in text and text.endswith("waiting 2")


def test_the_traffic_mix_switches_mid_run(settings):
    mix = Mix("stable")
    rows = transactions(settings, mix, first_index=FIRST_INDEX)
    stable = [next(rows) for _ in range(5)]
    mix.switch("covariate_drift")
    drifted = [next(rows) for _ in range(5)]
    key = settings.schema_.key
    assert all(r[key] not in {s[key] for s in stable} for r in drifted)
    assert drifted[0][key][:2] != stable[0][key][:2]  # ids carry the scenario's code
    assert set(SCENARIO_NAMES) == {"covariate", "concept", "none"}


def test_traffic_stats_know_which_version_serves_now():
    stats = TrafficStats()
    stats.recent.extend(["1"] * 50 + ["2"] * 30)
    assert stats.serving_only("2", 30) and not stats.serving_only("2", 31)
    assert not stats.serving_only("3", 1)


def test_each_demo_gets_traffic_ids_of_its_own(monkeypatch):
    import tasks.platform.story.monitor as story_monitor

    now = 1_800_000_000
    monkeypatch.setattr(story_monitor.time, "time", lambda: now)
    first = first_traffic_index()
    monkeypatch.setattr(story_monitor.time, "time", lambda: now + 60)
    assert first_traffic_index() - first == INDEX_SPAN
    assert FIRST_INDEX <= first < 2_000_000  # simulated times stay within what pandas holds


def test_memory_sampler_keeps_the_peak():
    sampler = memory.Sampler(lambda: {"me": os.getpid()}, every=0.01).start()
    hold = bytearray(40 * 2**20)
    done = threading.Event()
    while sampler.samples < 3 and not done.wait(0.01):
        pass
    result = sampler.stop()
    del hold
    assert result["samples"] >= 3
    assert result["peak_rss"] >= 40 * 2**20 and result["peak_rss_by_service"]["me"] == result["peak_rss"]
    assert result["pss_by_service_at_peak"]["me"] == result["peak_pss"] >= 40 * 2**20


@pytest.mark.parametrize(
    ("spans", "covered"),
    [
        ([(0, 10), (20, 30)], 20),  # a 10 s gap
        ([(0, 10), (5, 15), (14, 30)], 30),  # overlapping tasks
        ([(-5, 5), (25, 40)], 10),  # clipped to the window
        ([], 0),
    ],
)
def test_overhead_is_what_no_task_covers(spans, covered):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    intervals = [(t0 + timedelta(seconds=a), t0 + timedelta(seconds=b)) for a, b in spans]
    assert union_seconds(intervals, t0, t0 + timedelta(seconds=30)) == covered


def _held(until: datetime) -> dict:
    return {"retrain": False, "blocked_by": "cooldown", "cooldown_until": until.isoformat(), "detail": "held"}


def test_the_story_waits_for_a_cooldown_that_ends_within_the_stage(settings):
    """A continued demo's monitor may retrain on performance before the drift: the drift's retrain
    then waits for the cooldown, and the story waits with it instead of failing."""
    from tasks.platform.story import monitor
    from tasks.platform.story.context import Story, StoryOptions
    from tasks.platform.story.reads import StoryError

    story = Story(settings, client=None, options=StoryOptions(timeout=900))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=900)
    note = monitor._cooldown_ends(story, [("r1", _held(now + timedelta(minutes=5)))], deadline)
    assert "holds a retrain back until" in note
    assert monitor._cooldown_ends(story, [("r1", {"retrain": True, "detail": "drift"})], deadline) == ""
    with pytest.raises(StoryError, match="past the stage's timeout"):
        monitor._cooldown_ends(story, [("r1", _held(now + timedelta(hours=2)))], deadline)

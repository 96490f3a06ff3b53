"""The ingest DAG's rules, without Airflow: which batches a run takes, when it posts the curated
event and with what, and when it fails."""

from __future__ import annotations

import pytest

from tasks.common import storage
from tasks.common.outcomes import Fail, Skip
from tasks.ingest.batches import BatchResult
from tasks.ingest.landing import pending_batches, requested_batches
from tasks.ingest.run_summary import check_run, curated_event_extra


def _result(name: str, status: str = "ingested", rows_added: int = 10, **more) -> dict:
    return BatchResult(
        batch_uri=f"file:///landing/{name}.csv",
        batch_id=f"{name}-abc",
        status=status,
        rows=rows_added,
        rows_added=rows_added,
        partitions=more.pop("partitions", ["2026-01-01"]),
        **more,
    ).as_dict()


def test_requested_batches_come_from_event_extras_in_order_then_the_conf():
    extras = [{"batch_uri": "s3://b/1.csv"}, {}, {"other": 1}, {"batch_uri": "s3://b/2.csv"}]
    assert requested_batches(extras, {"batch_uri": "s3://b/3.csv"}) == [
        "s3://b/1.csv",
        "s3://b/2.csv",
        "s3://b/3.csv",
    ]
    assert requested_batches([], None) == []
    assert requested_batches([], {"batch_uri": ""}) == []


def test_pending_batches_put_requested_ones_first_and_list_each_once(settings):
    landed = [
        storage.write_text(storage.join(settings.storage.landing_uri, n), "x") for n in ("a.csv", "b.csv")
    ]
    requested = [landed[1], "file:///elsewhere/c.csv"]
    assert pending_batches(settings, requested) == [landed[1], "file:///elsewhere/c.csv", landed[0]]


def test_batch_result_round_trips_through_its_dict():
    result = BatchResult.from_dict(_result("one", reason="", location="file:///archive/one.csv"))
    assert BatchResult.from_dict(result.as_dict()) == result


def test_a_run_that_added_no_rows_posts_no_curated_event(settings):
    with pytest.raises(Skip, match="no new rows"):
        curated_event_extra(settings, [_result("one", "duplicate", 0), _result("two", "quarantined", 0)])
    with pytest.raises(Skip):
        curated_event_extra(settings, [])


def test_the_curated_event_says_what_the_run_added(settings):
    results = [
        _result("one", rows_added=10, partitions=["2026-01-02"]),
        _result("two", rows_added=5, partitions=["2026-01-01", "2026-01-02"]),
        _result("bad", "quarantined", 0, partitions=[]),
        None,  # a mapped task that failed
    ]
    extra = curated_event_extra(settings, results)
    assert extra == {
        "rows_added": 15,
        "batches_ingested": ["one-abc", "two-abc"],
        "batches_quarantined": ["bad-abc"],
        "partitions": ["2026-01-01", "2026-01-02"],
        "total_rows": 0,  # nothing curated in this empty home: counted from the dataset, not the run
        "curated_uri": settings.storage.curated_uri,
    }


def test_the_run_fails_naming_quarantined_batches_and_counting_failed_ones():
    good = _result("one")
    bad = _result("bad", "quarantined", 0, reason="column 'amount' has 3 null values", location="q/bad-abc")
    check_run(["a", "b"], [good, _result("two", "duplicate", 0)])  # nothing to report

    with pytest.raises(Fail, match=r"^1 batches failed to ingest$"):
        check_run(["a", "b"], [good, None])
    with pytest.raises(Fail) as failed:
        check_run(["a", "b"], [good, bad])
    assert str(failed.value) == (
        "1 of 2 batches quarantined:\n- bad.csv: column 'amount' has 3 null values (see q/bad-abc)"
    )

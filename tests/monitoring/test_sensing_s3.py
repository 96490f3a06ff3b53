"""The sensor on S3 sees what other processes logged after its first look.

fsspec keeps one S3 filesystem per process and, by default, caches its listings: a sensor in the
long-lived triggerer then counted the inference log's first files for ever while serving (another
process) kept compacting new ones, and the production monitor never got its window.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest

from tasks.common import storage
from tasks.monitoring.sensing import count_predictions
from tasks.serving.logfiles import TIME, TRAFFIC

BUCKET = "airloop-sensing"


@pytest.fixture
def s3_settings(s3_server, tmp_path, monkeypatch):
    from config import read_config

    s3_server.create_bucket(BUCKET)
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP__STORAGE__S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AIRLOOP__STORAGE__DATA_URI", f"s3://{BUCKET}")
    settings = read_config("local")
    storage.configure(settings.storage.s3_endpoint_url)
    yield settings, s3_server.endpoint_url
    storage.configure(None)


def _put_from_another_process(endpoint: str, key: str, rows: int, at: datetime) -> None:
    """A compacted log file written the way serving writes it, but not through this process's
    filesystem object (whose own writes would refresh its cache)."""
    frame = pd.DataFrame(
        {
            TIME: pd.date_range(at, periods=rows, freq="s", tz=UTC),
            "route": ["champion"] * rows,
            TRAFFIC: ["live"] * rows,
        }
    )
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())


@pytest.mark.slow
def test_a_second_count_sees_files_logged_after_the_first(s3_settings):
    settings, endpoint = s3_settings
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    hour = f"inference/predictions/date={at:%Y-%m-%d}/hour={at:%H}"
    start, end = at - timedelta(minutes=1), at + timedelta(minutes=30)
    _put_from_another_process(endpoint, f"{hour}/part-a-1.parquet", 111, at)
    assert count_predictions(settings, start, end) == 111
    _put_from_another_process(endpoint, f"{hour}/part-b-1.parquet", 89, at)
    assert count_predictions(settings, start, end) == 200

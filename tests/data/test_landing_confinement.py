"""A ``batch_uri`` from an asset event or a run's conf names a file in the landing zone, or it is
refused: nothing is read, moved or echoed. Locally (a file elsewhere, ``..``, a symlink out, a
relative URI, a sibling folder with the same prefix, ``http://``) and on S3 (moto's server: another
bucket, another prefix of the same bucket), while files in the landing zone are still taken."""

from __future__ import annotations

import logging
import os

import pytest

from tasks.common import storage
from tasks.common.outcomes import Fail
from tasks.ingest.batches import ingest_batch
from tasks.ingest.confine import Refused, confine
from tasks.ingest.curated import curated_row_count
from tasks.ingest.landing import pending_batches
from tasks.platform import simulate

SECRET = "SECRET-FIRST-LINE-do-not-echo"


def _secret_file(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET},a,b\n1,2,3\n")
    return path.as_uri()


def _refused(settings, uri: str, caplog) -> Refused:
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(Refused) as refused:
        ingest_batch(uri, settings)
    assert isinstance(refused.value, Fail)  # a definite task failure: no retry
    assert "refused" in str(refused.value) and "nothing was read or moved" in str(refused.value)
    assert SECRET not in str(refused.value) and SECRET not in caplog.text
    return refused.value


def _untouched(settings) -> None:
    for where in (settings.storage.quarantine_uri, settings.storage.archive_uri):
        assert storage.list_files(where) == []
    assert curated_row_count(settings) == 0


def test_files_outside_the_landing_zone_are_refused_unread_and_stay_where_they_are(
    settings, tmp_path, caplog
):
    landing = settings.storage.landing_uri
    storage.makedirs(landing)
    elsewhere = tmp_path / "elsewhere" / "secret.csv"
    uri = _secret_file(elsewhere)
    sibling = _secret_file(tmp_path / "data" / "landing-evil" / "x.csv")  # same prefix, other folder
    link = tmp_path / "data" / "landing" / "innocent.csv"
    os.symlink(elsewhere, link)
    cases = {
        uri: "resolves outside the landing zone",
        f"{landing}/../../elsewhere/secret.csv": "'.' and '..' segments are not allowed",
        link.as_uri(): "resolves outside the landing zone",
        sibling: "resolves outside the landing zone",
        "file://elsewhere/secret.csv": "must be absolute",
        "http://127.0.0.1:9/secret.csv": "scheme 'http' is not the landing zone's",
        "s3://bucket/landing/secret.csv": "scheme 's3' is not the landing zone's",
        f"file://user:pw@/{elsewhere}": "credentials are not allowed",
        f"{landing}/x.csv?version=2": "a query",
    }
    for requested, why in cases.items():
        assert why in str(_refused(settings, requested, caplog)), requested
    assert "user:pw" not in str(_refused(settings, f"file://user:pw@/{elsewhere}", caplog))
    assert elsewhere.read_text().startswith(SECRET) and os.path.islink(link)
    _untouched(settings)
    assert pending_batches(settings) == []  # the sweep leaves the symlink out, too


def test_files_in_the_landing_zone_are_still_taken(settings):
    df = simulate.generate_batch(settings, "stable", index=0, rows=100)
    uri = simulate.write_batch(df, settings.storage.landing_uri, "ok.parquet")
    assert confine(settings, uri.replace("file:///", "file:/")) == uri
    assert ingest_batch(uri, settings).status == "ingested"


@pytest.fixture
def s3_settings(s3_server, tmp_path, monkeypatch):
    from config import read_config

    for bucket in ("airloop-landing", "airloop-other"):
        s3_server.create_bucket(bucket)
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP__STORAGE__S3_ENDPOINT_URL", s3_server.endpoint_url)
    for name in ("data", "landing", "curated", "quarantine", "archive", "reports", "features"):
        suffix = "" if name == "data" else f"/{name}"
        monkeypatch.setenv(f"AIRLOOP__STORAGE__{name.upper()}_URI", f"s3://airloop-landing{suffix}")
    settings = read_config("local")
    storage.configure(settings.storage.s3_endpoint_url)
    yield settings
    storage.configure(None)


@pytest.mark.slow
def test_on_s3_only_the_landing_prefix_of_the_landing_bucket_is_taken(s3_settings, caplog):
    settings = s3_settings
    secret = f"{SECRET},a\n1,2\n".encode()
    outside = {
        "s3://airloop-other/landing/x.csv": "bucket 'airloop-other' is not the landing zone's",
        "s3://airloop-landing/curated/x.csv": "not under the landing zone's prefix",
        "s3://airloop-landing/landing/../curated/y.csv": "'.' and '..' segments are not allowed",
        "s3://airloop-landing/landingx/z.csv": "not under the landing zone's prefix",
    }
    for uri in outside:
        storage.write_bytes(uri.replace("/landing/../", "/"), secret)
    for uri, why in outside.items():
        assert why in str(_refused(settings, uri, caplog)), uri
    for uri in outside:
        assert storage.read_bytes(uri.replace("/landing/../", "/")) == secret
    df = simulate.generate_batch(settings, "stable", index=0, rows=100)
    good = simulate.write_batch(df, settings.storage.landing_uri, "good.parquet")
    result = ingest_batch(good, settings)
    assert result.status == "ingested" and result.rows_added == 100
    assert result.location.startswith("s3://airloop-landing/archive/") and storage.exists(result.location)
    assert curated_row_count(settings) == 100

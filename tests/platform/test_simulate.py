"""The simulator plays upstream systems, so its batches must honour the contract, be
reproducible, carry a learnable fraud signal, drift when asked, and break in the named ways."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from config import Settings, read_config
from tasks.platform import cli, simulate
from tasks.platform.simulate import (
    BAD_KINDS,
    SCENARIOS,
    NotifyError,
    generate_batch,
    make_bad_batch,
    notify_airflow,
    write_bad_batch,
    write_batch,
)
from tasks.platform.simulate.bad_batches import DEFECTS
from tests.services import JsonHandler


@pytest.fixture(scope="module")
def cfg() -> Settings:
    # Hourly batches: the tests pick hours of the day by batch index (the profile's are 4 days)
    hourly = {"AIRLOOP__SIMULATE__BATCH_MINUTES": "60", "AIRLOOP__SIMULATE__BATCH_ROWS": "5000"}
    return read_config("local", environ=hourly)


@pytest.fixture
def landing(tmp_path: Path) -> str:
    return f"file://{tmp_path}/landing"


def _concat(cfg: Settings, scenario: str, indexes: range, **kw: Any) -> pd.DataFrame:
    frames = [generate_batch(cfg, scenario, i, **kw) for i in indexes]
    return pd.concat(frames, ignore_index=True)


def _path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


# -- contract and determinism ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_batch_matches_schema_exactly(cfg: Settings, scenario: str) -> None:
    df = generate_batch(cfg, scenario, index=3)
    schema = cfg.schema_
    assert list(df.columns) == schema.names
    assert {k: str(v) for k, v in df.dtypes.items()} == simulate.schema_dtypes(schema)
    assert len(df) == cfg.simulate.batch_rows
    assert df[schema.key].is_unique
    assert not df.isna().any().any()
    for col in schema.columns:
        if col.allowed:
            assert set(df[col.name]) <= set(col.allowed), col.name
        if col.min is not None:
            assert df[col.name].min() >= col.min, col.name
        if col.max is not None:
            assert df[col.name].max() <= col.max, col.name
    assert (df["amount"] > 0).all()
    assert set(df[schema.label].unique()) <= {0, 1}


def test_batch_covers_its_window_in_time_order(cfg: Settings) -> None:
    index, minutes = 5, cfg.simulate.batch_minutes
    ts = generate_batch(cfg, index=index, rows=500)[cfg.schema_.timestamp]
    begin = pd.Timestamp(cfg.simulate.start) + pd.Timedelta(minutes=index * minutes)
    assert str(ts.dt.tz) == "UTC"
    assert ts.is_monotonic_increasing
    assert ts.min() >= begin and ts.max() < begin + pd.Timedelta(minutes=minutes)
    moved = generate_batch(cfg, index=0, rows=10, start="2030-06-01T12:00:00Z")
    assert moved[cfg.schema_.timestamp].min() >= pd.Timestamp("2030-06-01T12:00:00Z")


def test_same_arguments_give_the_same_batch(cfg: Settings) -> None:
    a = generate_batch(cfg, "covariate_drift", index=7, rows=800)
    b = generate_batch(cfg, "covariate_drift", index=7, rows=800)
    pd.testing.assert_frame_equal(a, b)


def test_other_index_gives_other_rows_and_disjoint_ids(cfg: Settings) -> None:
    a = generate_batch(cfg, index=0, rows=800)
    b = generate_batch(cfg, index=1, rows=800)
    assert not np.array_equal(a["amount"].to_numpy(), b["amount"].to_numpy())
    assert not set(a["transaction_id"]) & set(b["transaction_id"])


def test_ids_are_unique_across_scenarios_and_bad_batches(cfg: Settings) -> None:
    ids: list[str] = []
    for scenario in SCENARIOS:
        for index in (0, 1):
            ids += generate_batch(cfg, scenario, index, rows=300)["transaction_id"].tolist()
    ids += generate_batch(cfg, "concept_drift", 0, rows=300, drift_strength=0.5)["transaction_id"].tolist()
    ids += make_bad_batch(cfg, "nulls", index=0, rows=300).frame["transaction_id"].tolist()
    assert len(ids) == len(set(ids))


def test_world_is_fixed_by_the_seed(cfg: Settings) -> None:
    world = simulate.world_for(cfg)
    assert world.n_customers == cfg.simulate.n_customers
    assert len(world.merchant_id) == cfg.simulate.n_merchants
    assert set(world.categories) == set(cfg.schema_.column("merchant_category").allowed)
    again = simulate.World.build(
        cfg.simulate.seed,
        cfg.simulate.n_customers,
        cfg.simulate.n_merchants,
        categories=world.categories,
        channels=world.channels,
        regions=world.regions,
    )
    np.testing.assert_array_equal(world.typical_amount, again.typical_amount)
    np.testing.assert_array_equal(world.merchant_category, again.merchant_category)


# -- the fraud signal -----------------------------------------------------------------------


def test_fraud_rate_is_realistic(cfg: Settings) -> None:
    day = _concat(cfg, "stable", range(24), rows=2000)
    rate = day["is_fraud"].mean()
    assert 0.5 * cfg.simulate.fraud_rate < rate < 1.6 * cfg.simulate.fraud_rate
    # Background fraud is likelier at night: the night hours carry a higher rate.
    hour = day["event_timestamp"].dt.hour
    assert day.loc[hour < 6, "is_fraud"].mean() > day.loc[hour >= 6, "is_fraud"].mean()


def _trailing(df: pd.DataFrame, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """Count and sum of amounts of the same customer in the trailing window, per row."""
    ts = df["event_timestamp"].astype("int64").to_numpy() // 10**9
    key = df["customer_id"].to_numpy().astype(np.int64) * 10**10 + ts
    pos = np.arange(len(df))
    lo = np.searchsorted(key, key - seconds, side="right")
    cum = np.concatenate([[0.0], np.cumsum(df["amount"].to_numpy())])
    return pos - lo + 1, cum[pos + 1] - cum[lo]


def test_fraud_comes_in_bursts_per_customer(cfg: Settings) -> None:
    df = _concat(cfg, "stable", range(8, 14))  # daytime: fewer lone night-time frauds

    def in_bursts(label: np.ndarray) -> float:
        """Share of fraud rows with 3+ other frauds of the same customer in the same hour."""
        hour = df["event_timestamp"].dt.floor("h")
        fraud = df[label == 1]
        size = fraud.groupby(["customer_id", hour[label == 1]])["amount"].transform("size")
        return float((size >= 4).mean())

    labels = df["is_fraud"].to_numpy()
    shuffled = np.random.default_rng(0).permutation(labels)
    assert in_bursts(labels) > 0.45  # compromised cards: several frauds within an hour
    assert in_bursts(shuffled) < 0.05  # far beyond what chance gives


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, normalised."""
    pos, neg = score[y == 1], score[y == 0]
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def test_time_windows_carry_signal_beyond_single_rows(cfg: Settings) -> None:
    df = _concat(cfg, "stable", range(28))
    df = df.sort_values(["customer_id", "event_timestamp"], kind="stable", ignore_index=True)
    cnt_1h, sum_1h = _trailing(df, 3600)
    cnt_24h, sum_24h = _trailing(df, 86400)
    ts = df["event_timestamp"]
    later = (ts >= ts.min() + pd.Timedelta(hours=24)).to_numpy()  # rows with a full day behind
    y = df["is_fraud"].to_numpy()[later]
    amount_auc = _auc(y, df["amount"].to_numpy()[later])
    # Spend in the last hour against the customer's own hourly spend over the last day.
    burst = (sum_1h / (sum_24h / 24))[later]
    assert _auc(y, burst) > max(0.8, amount_auc)
    assert cnt_1h[later][y == 1].mean() > 1.15 * cnt_1h[later][y == 0].mean()
    assert np.all(cnt_24h >= cnt_1h)


# -- drift ------------------------------------------------------------------------------------


def test_stable_does_not_drift_against_itself(cfg: Settings) -> None:
    a, b = _concat(cfg, "stable", range(0, 3)), _concat(cfg, "stable", range(3, 6))
    assert stats.ks_2samp(a["amount"], b["amount"]).pvalue > 1e-3
    assert abs((a["channel"] == "online").mean() - (b["channel"] == "online").mean()) < 0.03


def test_covariate_drift_moves_inputs_not_mechanism(cfg: Settings) -> None:
    base = _concat(cfg, "stable", range(3))
    drift = _concat(cfg, "covariate_drift", range(3))
    assert stats.ks_2samp(base["amount"], drift["amount"]).pvalue < 1e-6
    assert drift["amount"].median() > 1.5 * base["amount"].median()
    assert (drift["channel"] == "online").mean() > (base["channel"] == "online").mean() + 0.15
    table = pd.crosstab(
        np.r_[np.zeros(len(base)), np.ones(len(drift))],
        pd.concat([base["region"], drift["region"]]).to_numpy(),
    )
    assert stats.chi2_contingency(table).pvalue < 1e-6
    # Same mechanism: fraud is still concentrated in risky categories.
    risky = drift["merchant_category"].isin(["electronics", "cash_advance"])
    assert drift.loc[risky, "is_fraud"].mean() > 5 * drift.loc[~risky, "is_fraud"].mean()


def test_drift_strength_zero_is_stable(cfg: Settings) -> None:
    base = _concat(cfg, "stable", range(3))
    none = _concat(cfg, "covariate_drift", range(3), drift_strength=0.0)
    assert stats.ks_2samp(base["amount"], none["amount"]).pvalue > 1e-3


def test_concept_drift_keeps_inputs_but_moves_the_label(cfg: Settings) -> None:
    base = _concat(cfg, "stable", range(4))
    drift = _concat(cfg, "concept_drift", range(4))
    assert stats.ks_2samp(base["amount"], drift["amount"]).statistic < 0.05
    for col in ("channel", "merchant_category", "region"):
        shares = base[col].value_counts(normalize=True)
        moved = drift[col].value_counts(normalize=True).reindex(shares.index, fill_value=0)
        assert (moved - shares).abs().max() < 0.02, col
    assert abs(drift["is_fraud"].mean() - base["is_fraud"].mean()) < 0.01

    def rate(df: pd.DataFrame, mask: pd.Series) -> float:
        return float(df.loc[mask, "is_fraud"].mean())

    everyday = ["grocery", "fuel"]
    assert rate(drift, drift["merchant_category"].isin(everyday)) > 3 * rate(
        base, base["merchant_category"].isin(everyday)
    )
    assert rate(drift, drift["channel"] == "contactless") > 2 * rate(base, base["channel"] == "contactless")
    assert rate(drift, drift["channel"] == "online") < 0.5 * rate(base, base["channel"] == "online")


def test_unknown_scenario_is_refused(cfg: Settings) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_batch(cfg, "label_shift")


# -- writing ----------------------------------------------------------------------------------


def test_parquet_round_trip(cfg: Settings, landing: str) -> None:
    df = generate_batch(cfg, index=2, rows=300)
    uri = write_batch(df, landing, simulate.batch_name("stable", 2))
    assert uri.endswith("batch-stable-000002.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(_path(uri)), df)


def test_csv_has_iso_timestamps_with_offset(cfg: Settings, landing: str) -> None:
    df = generate_batch(cfg, index=2, rows=300)
    uri = write_batch(df, landing, "batch-stable-000002", fmt="csv")
    assert uri.endswith(".csv")
    back = pd.read_csv(_path(uri))
    assert back["event_timestamp"].str.endswith("+00:00").all()
    assert back["event_timestamp"].iloc[0].startswith("2026-01-01T02:")
    pd.testing.assert_series_equal(
        pd.to_datetime(back["event_timestamp"], utc=True).astype("datetime64[ns, UTC]"),
        df["event_timestamp"],
    )
    pd.testing.assert_series_equal(back["amount"], df["amount"])


# -- bad batches ------------------------------------------------------------------------------


def test_every_bad_kind_is_covered() -> None:
    assert set(BAD_KINDS) == {
        "wrong_schema",
        "missing_column",
        "nulls",
        "duplicate_ids",
        "out_of_range",
        "wrong_types",
        "empty",
        "corrupt",
    }
    assert list(DEFECTS) == list(BAD_KINDS), "every kind the CLI offers has a maker, in order"


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_batch_carries_its_defect(cfg: Settings, landing: str, kind: str) -> None:
    schema = cfg.schema_
    bad = make_bad_batch(cfg, kind, index=4, rows=400)
    uri = write_bad_batch(bad, landing)
    path = _path(uri)
    assert path.name == f"bad-{kind}-000004.{bad.fmt}"
    assert bad.kind == kind and bad.description
    if bad.good_rows is not None:
        assert 0.9 < bad.good_rows.mean() < 1.0  # mostly good, a small defect

    if kind == "empty":
        assert path.stat().st_size == 0 and bad.column is None
        return
    if kind == "corrupt":
        assert path.stat().st_size > 0 and bad.column is None
        with pytest.raises(pa.ArrowException):
            pq.read_table(path)
        return
    if kind == "wrong_types":
        back = pd.read_csv(path)
        assert back["amount"].dtype == object
        numeric = pd.to_numeric(back["amount"], errors="coerce")
        np.testing.assert_array_equal(numeric.notna().to_numpy(), bad.good_rows)
        assert bad.column == "amount"
        return

    back = pd.read_parquet(path)
    if kind == "wrong_schema":
        assert bad.column == "merchant_category" and "promo_code" in bad.columns
        assert "merchant_category" not in back.columns
        assert {"category", "promo_code"} <= set(back.columns)
    elif kind == "missing_column":
        assert bad.column == "amount"
        assert list(back.columns) == [c for c in schema.names if c != "amount"]
    elif kind == "nulls":
        assert bad.column == "amount"
        np.testing.assert_array_equal(back["amount"].notna().to_numpy(), bad.good_rows)
        assert back.drop(columns="amount").notna().all().all()
    elif kind == "duplicate_ids":
        assert bad.column == schema.key and len(back) == 400
        dup = back[schema.key].duplicated(keep="first").to_numpy()
        assert dup.any()
        np.testing.assert_array_equal(~dup, bad.good_rows)
    elif kind == "out_of_range":
        assert bad.column == "amount" and "merchant_category" in bad.columns
        amount = schema.column("amount")
        off = (back["amount"] < amount.min) | (back["amount"] > amount.max)
        allowed = schema.column("merchant_category").allowed
        off_category = ~back["merchant_category"].isin(allowed)
        assert off.any() and off_category.any()
        np.testing.assert_array_equal(~(off | off_category).to_numpy(), bad.good_rows)
    if kind != "wrong_schema":
        assert bad.column in schema.names


def test_unknown_bad_kind_is_refused(cfg: Settings) -> None:
    with pytest.raises(ValueError, match="unknown bad batch kind"):
        make_bad_batch(cfg, "huge_and_wrong")


# -- command line -----------------------------------------------------------------------------


def test_cli_writes_batches_and_summary(
    settings: Settings, landing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--batches", "3", "--rows", "200", "--start-index", "10", "--landing-uri", landing]
    assert cli.main(["simulate", *argv]) == 0
    files = sorted(p.name for p in _path(landing).iterdir())
    assert files == [f"batch-stable-{i:06d}.parquet" for i in (10, 11, 12)]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert "batch-stable-000010.parquet" in lines[0] and "rows=200" in lines[0]
    assert "fraud_rate=" in lines[0]
    assert lines[-1].startswith("wrote 3 stable batch(es), 600 rows")


def test_cli_writes_csv_and_bad_batches(
    settings: Settings, landing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--scenario", "concept_drift", "--rows", "100", "--format", "csv", "--landing-uri", landing]
    assert cli.main(["simulate", *argv]) == 0
    assert cli.main(["simulate", "--bad", "nulls", "--rows", "100", "--landing-uri", landing]) == 0
    files = sorted(p.name for p in _path(landing).iterdir())
    assert files == ["bad-nulls-000000.parquet", "batch-concept_drift-000000.csv"]
    out = capsys.readouterr().out.splitlines()
    assert "defect=nulls" in out[2]


def test_cli_refuses_a_negative_batch_count(settings: Settings, landing: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["simulate", "--batches", "-1", "--landing-uri", landing])
    assert exit_.value.code == 2
    assert not _path(landing).exists()


def test_land_writes_to_the_configured_landing_zone_by_default(settings: Settings) -> None:
    out: list[str] = []
    plan = simulate.BatchPlan(batches=2, rows=30, scenario="covariate_drift")
    assert simulate.land(settings, plan, out=out.append) == 0
    landed = sorted(p.name for p in _path(settings.storage.landing_uri).iterdir())
    assert landed == ["batch-covariate_drift-000000.parquet", "batch-covariate_drift-000001.parquet"]
    assert out[-1].endswith(f"to {settings.storage.landing_uri}")


# -- telling Airflow --------------------------------------------------------------------------


class _FakeAirflow(JsonHandler):
    """Just enough of Airflow's public API: token, asset lookup, asset events."""

    calls: list[tuple[str, str, Any, str | None]] = []
    token_status = 201

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body, self.headers.get("Authorization")))
        return body

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/auth/token":
            if self.token_status != 201 or body != {"username": "admin", "password": "airloop"}:
                self._reply(401, {"detail": "Invalid credentials"})
            else:
                self._reply(201, {"access_token": "tok-123", "token_type": "bearer"})
        elif self.path == "/api/v2/assets/events":
            if self.headers.get("Authorization") != "Bearer tok-123":
                self._reply(403, {"detail": "forbidden"})
            else:
                self._reply(200, {"id": 99, "asset_id": body["asset_id"], "extra": body["extra"]})
        else:
            self._reply(404, {"detail": "not found"})

    def do_GET(self) -> None:
        self._record()
        if self.path.startswith("/api/v2/assets?"):
            assets = [
                {"id": 6, "name": "landing/transactions_old", "uri": "x://old"},
                {"id": 7, "name": "landing/transactions", "uri": "file:///landing"},
            ]
            if "name_pattern=nothing" in self.path:
                assets = []
            self._reply(200, {"assets": assets, "total_entries": len(assets)})
        else:
            self._reply(404, {"detail": "not found"})


@pytest.fixture
def fake_airflow() -> Iterator[str]:
    _FakeAirflow.calls = []
    _FakeAirflow.token_status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_notify_posts_the_landing_asset_event(cfg: Settings, fake_airflow: str) -> None:
    event = notify_airflow("file:///data/landing/b.parquet", cfg, rows=12, base_url=fake_airflow)
    assert event["id"] == 99 and event["asset_id"] == 7
    token, lookup, post = _FakeAirflow.calls
    assert token[:2] == ("POST", "/auth/token")
    assert lookup[0] == "GET" and lookup[1].startswith("/api/v2/assets?")
    assert "name_pattern=landing%2Ftransactions" in lookup[1]
    assert lookup[3] == "Bearer tok-123"
    assert post[:2] == ("POST", "/api/v2/assets/events")
    assert post[2] == {
        "asset_id": 7,
        "extra": {"batch_uri": "file:///data/landing/b.parquet", "rows": 12, "source": "simulator"},
    }


def test_notify_names_url_and_status_on_failure(cfg: Settings, fake_airflow: str) -> None:
    _FakeAirflow.token_status = 401
    with pytest.raises(NotifyError, match=r"/auth/token.*HTTP 401"):
        notify_airflow("file:///x.parquet", cfg, base_url=fake_airflow)
    _FakeAirflow.token_status = 201
    nothing = cfg.model_copy(update={"assets": cfg.assets.model_copy(update={"landing": "nothing"})})
    with pytest.raises(NotifyError, match="no asset named 'nothing'"):
        notify_airflow("file:///x.parquet", nothing, base_url=fake_airflow)


def test_notify_names_url_when_unreachable(cfg: Settings) -> None:
    cfg = cfg.model_copy(update={"airflow": cfg.airflow.model_copy(update={"client_retry_seconds": 3.0})})
    with pytest.raises(NotifyError, match=r"http://127\.0\.0\.1:9/auth/token"):
        notify_airflow("file:///x.parquet", cfg, base_url="http://127.0.0.1:9", timeout=2)


def test_cli_notifies_airflow(
    settings: Settings,
    landing: str,
    fake_airflow: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRLOOP__AIRFLOW__PORT", fake_airflow.rsplit(":", 1)[1])
    argv = ["--batches", "2", "--rows", "50", "--notify", "--landing-uri", landing]
    assert cli.main(["simulate", *argv]) == 0
    events = [c for c in _FakeAirflow.calls if c[1] == "/api/v2/assets/events"]
    assert [e[2]["extra"]["rows"] for e in events] == [50, 50]
    assert events[0][2]["extra"]["batch_uri"].endswith("batch-stable-000000.parquet")
    assert "event=99" in capsys.readouterr().out.splitlines()[0]


def test_cli_reports_an_unreachable_airflow(
    settings: Settings, landing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRLOOP__AIRFLOW__PORT", "9")
    monkeypatch.setenv("AIRLOOP__AIRFLOW__CLIENT_RETRY_SECONDS", "3")  # the retries, not their 60 s
    argv = ["--rows", "20", "--notify", "--landing-uri", landing]
    assert cli.main(["simulate", *argv]) == 1
    err = capsys.readouterr().err
    assert "batch-stable-000000.parquet was written but Airflow was not told" in err
    assert "http://127.0.0.1:9/auth/token" in err

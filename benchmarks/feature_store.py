"""Feature store speed: materialization against a direct online write, and online lookup latency.

Baselines measured in the same run, on the same data and the same online store:
- materialize: ``FeatureStore.materialize`` (reads the Parquet feature tables through Feast's file
  offline store, keeps each entity's latest row, writes it online) against
  ``write_to_online_store`` of exactly those latest rows (the write alone).
- lookups: ``tasks.features.online.online_features`` (the serving path: feature service, request-time
  features, found flags) for 1 and 100 keys, p50/p99, SQLite and Redis; the ratio is per key
  against the 1-key call.

- training sets: ``tasks.features.offline.training_set`` (as-of join per view over the partitions in
  range, then the service's on-demand view) against Feast's ``get_historical_features`` through the
  dask file offline store for the same events and the same feature service.

Run: ``python -m benchmarks.feature_store [--hours 48 --customers 20000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tasks.common.net import free_port


@contextmanager
def _redis():
    import redis

    binary = shutil.which("redis-server")
    if not binary:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _settings(home: Path, online: dict[str, str], customers: int):
    from config import read_config

    env = {**os.environ, "AIRLOOP_HOME": str(home), "AIRLOOP__SIMULATE__N_CUSTOMERS": str(customers)}
    for key, value in online.items():
        env[f"AIRLOOP__FEAST__ONLINE_STORE__{key.upper()}"] = value
    return read_config("local", env)


def _land(settings, hours: int, rows: int) -> None:
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate

    for index in range(hours):
        df = simulate.generate_batch(settings, "stable", index=index, rows=rows)
        ingest_batch(
            simulate.write_batch(df, settings.storage.landing_uri, f"b{index:04d}.parquet"), settings
        )


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.99 * (len(ordered) - 1))] * 1e3


def _bench_store(label: str, settings, changed, repeats: int) -> dict:
    import pandas as pd

    from tasks.features import store, tables
    from tasks.features.materialization import materialize
    from tasks.features.online import online_features

    store.forget_stores()
    store.apply(settings)
    feast_store = store.get_store(settings)
    latest = {
        t.name: tables.read_table(settings, t.name).sort_values("event_timestamp").groupby(t.join_key).tail(1)
        for t in tables.TABLES
    }
    source_rows = sum(changed.rows.values())
    entity_rows = sum(len(f) for f in latest.values())

    started = time.perf_counter()
    materialize(settings, changed)
    materialize_s = time.perf_counter() - started

    started = time.perf_counter()
    for name, frame in latest.items():
        feast_store.write_to_online_store(name, frame.reset_index(drop=True))
    direct_s = time.perf_counter() - started

    customers = latest["customer_activity"]["customer_id"].to_numpy()
    merchants = latest["merchant_risk"]["merchant_id"].to_numpy()
    when = pd.Timestamp(changed.end) + pd.Timedelta("1min")
    timings: dict[int, list[float]] = {}
    for n in (1, 100):
        requests = pd.DataFrame(
            {
                "customer_id": customers[:n],
                "merchant_id": merchants[: len(customers[:n])] if n <= len(merchants) else merchants[0],
                "amount": 99.0,
                "event_timestamp": when,
            }
        )
        online_features(settings, requests)  # warm: registry and connections
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            online_features(settings, requests)
            samples.append(time.perf_counter() - t0)
        timings[n] = samples
    p50_1, p99_1 = _percentiles(timings[1])
    p50_100, p99_100 = _percentiles(timings[100])
    return {
        "store": label,
        "source_rows": source_rows,
        "entity_rows": entity_rows,
        "materialize_s": materialize_s,
        "direct_s": direct_s,
        "p50_1": p50_1,
        "p99_1": p99_1,
        "p50_100": p50_100,
        "p99_100": p99_100,
    }


def _bench_training_set(settings, n: int) -> dict:
    import pandas as pd

    from feature_repo.definitions import REQUEST_TIME
    from tasks.features import store, tables
    from tasks.features.offline import training_set
    from tasks.ingest.curated import read_curated

    store.forget_stores()
    store.apply(settings)
    events = read_curated(settings).sample(n, random_state=0).reset_index(drop=True)
    started = time.perf_counter()
    training_set(settings, events)
    ours = time.perf_counter() - started
    ts = tables.utc_us(events["event_timestamp"])
    entity_df = events[["customer_id", "merchant_id", "amount"]].copy()
    entity_df["as_of"] = ts - pd.Timedelta("1us")
    entity_df[REQUEST_TIME] = tables.unix_seconds(ts)
    feast_store = store.get_store(settings)
    service = feast_store.get_feature_service(settings.feast.service)
    started = time.perf_counter()
    feast_store.get_historical_features(entity_df=entity_df, features=service).to_df()
    feast = time.perf_counter() - started
    return {"events": n, "ours_s": ours, "feast_s": feast}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.feature_store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hours", type=int, default=48, help="simulated hours of transactions")
    parser.add_argument("--rows", type=int, default=5000, help="transactions per hour")
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=200, help="lookups per key count")
    parser.add_argument("--events", type=int, default=10000, help="labelled events for the training-set race")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.WARNING)
    from tasks.features import tables

    home = Path(tempfile.mkdtemp(prefix="airloop-bench-fs-"))
    try:
        base = _settings(home, {}, args.customers)
        print(f"==> landing {args.hours} h x {args.rows} transactions ({args.customers} customers)")
        _land(base, args.hours, args.rows)
        started = time.perf_counter()
        changed = tables.refresh(base)
        refresh_s = time.perf_counter() - started
        print(f"    feature tables: {changed.rows} rows computed in {refresh_s:.1f} s")
        results = [_bench_store("sqlite", base, changed, args.repeats)]
        training = _bench_training_set(base, args.events)
        with _redis() as redis_url:
            if redis_url is None:
                print("    redis-server not installed: Redis skipped")
            else:
                redis_settings = _settings(
                    home, {"type": "redis", "connection_string": redis_url}, args.customers
                )
                results.append(_bench_store("redis", redis_settings, changed, args.repeats))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    print()
    print("materialize (baseline: write_to_online_store of the same latest rows, same store)")
    print(
        f"{'store':<8}{'source rows':>12}{'entities':>10}{'materialize':>13}{'direct':>9}{'ratio':>8}"
        f"{'source rows/s':>15}{'entities/s':>12}{'direct/s':>11}"
    )
    for r in results:
        print(
            f"{r['store']:<8}{r['source_rows']:>12,}{r['entity_rows']:>10,}{r['materialize_s']:>12.2f}s"
            f"{r['direct_s']:>8.2f}s{r['materialize_s'] / r['direct_s']:>7.1f}x"
            f"{r['source_rows'] / r['materialize_s']:>15,.0f}{r['entity_rows'] / r['materialize_s']:>12,.0f}"
            f"{r['entity_rows'] / r['direct_s']:>11,.0f}"
        )
    print()
    print(
        "training set for the same events through fraud_features_v1 (baseline: Feast get_historical_features)"
    )
    print(f"{'events':>8}{'as-of join':>12}{'feast dask':>12}{'speed-up':>10}{'events/s':>11}")
    print(
        f"{training['events']:>8,}{training['ours_s']:>11.2f}s{training['feast_s']:>11.2f}s"
        f"{training['feast_s'] / training['ours_s']:>9.1f}x{training['events'] / training['ours_s']:>11,.0f}"
    )
    print()
    print("online lookup via the feature service (baseline: the 1-key call; ratio = per-key cost)")
    print(f"{'store':<8}{'1 key p50':>11}{'p99':>9}{'100 keys p50':>14}{'p99':>9}{'per-key ratio':>15}")
    for r in results:
        print(
            f"{r['store']:<8}{r['p50_1']:>9.2f}ms{r['p99_1']:>7.2f}ms{r['p50_100']:>12.2f}ms{r['p99_100']:>7.2f}ms"
            f"{r['p50_100'] / 100 / r['p50_1']:>15.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Drift report time and peak memory, against a raw scipy K-S / PSI computation of the same tests.

A window and a reference of ``--rows`` rows each, 30 features (26 numeric of several shapes, 4
categorical) plus the score, with drift planted in a few columns at decreasing strength (0.5,
0.1, 0.03 and 0.01 standard deviations; one category mix tilted). The monitor is configured with
the tests the baseline computes: K-S (p-value at 0.05) on numbers and the score, PSI (0.1) on
categories. Four ways to the same verdicts, each in a fresh interpreter per size (imports done
before the clock starts; Evidently's import time is printed once):

- ``raw``: ``scipy.stats.ks_2samp`` per numeric column and the score, PSI per categorical column
  (numpy, the same binning and zero-fill as Evidently's), on all rows: the baseline;
- ``airloop``: ``tasks.monitoring.drift.compute`` as the monitor runs it: both sides cut to a
  uniform sample of ``monitor.drift.max_rows`` (50 000) rows, one Evidently report of
  ``ValueDrift`` metrics, then the report's HTML: the whole drift report;
- ``evidently``: the same report on all rows (no sampling), up to ``--full-max-rows``;
- ``preset``: Evidently's ``DataDriftPreset`` with the same tests on all rows, up to
  ``--full-max-rows`` (it computes every test three times; see ``tasks.monitoring.drift``).

Time is wall-clock and CPU time of the computation only (the CPU ratio is the fairer one on a
shared machine); peak memory is tracemalloc's peak above what was allocated before the
computation started (numpy and pandas buffers included), in a second run of each worker so that
tracing does not slow the timed one. The sample's accuracy is checked against the full
computation: verdicts per column, and how far the K-S distance on the sample is from the K-S
distance on all rows, next to the bound the monitor records.

Last, a day of ``--log-rows`` predictions is written to an inference log and read back as one
window, by ``read_predictions`` at once and by the monitor's streaming ``load_window``: time and
peak RSS growth of each, in a fresh process.

    python -m benchmarks.drift [--rows 100000 1000000] [--full-max-rows 100000] [--log-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from typing import Any

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 26, 4
SHIFTS = {"n00": 0.5, "n03": 0.1, "n06": 0.03, "n09": 0.01}
"""Planted drift: mean shift in standard deviations (of normal columns)."""
TILTED = "c00"
KS_ALPHA, PSI_THRESHOLD = 0.05, 0.1


# --- data -----------------------------------------------------------------------------------------


def make_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, window): numeric columns of several shapes, categories, a score in [0, 1]."""
    rng = np.random.default_rng(seed)

    def one(side: str) -> pd.DataFrame:
        cols: dict[str, Any] = {}
        for i in range(N_NUMERIC):
            name = f"n{i:02d}"
            shift = SHIFTS.get(name, 0.0) if side == "cur" else 0.0
            kind = i % 3
            if kind == 0:
                cols[name] = rng.normal(shift, 1.0, rows)
            elif kind == 1:
                cols[name] = rng.lognormal(0.0, 0.8, rows)
            else:
                cols[name] = rng.poisson(4.0, rows).astype("float64")
        for i in range(N_CATEGORICAL):
            name = f"c{i:02d}"
            k = 3 + 2 * i
            p = np.linspace(1.0, 2.0, k)
            if side == "cur" and name == TILTED:
                p = p[::-1]
            cols[name] = rng.choice([f"v{j}" for j in range(k)], rows, p=p / p.sum())
        cols["score"] = rng.beta(1.0, 30.0, rows)
        return pd.DataFrame(cols)

    return one("ref"), one("cur")


def numeric_columns() -> list[str]:
    return [f"n{i:02d}" for i in range(N_NUMERIC)]


def categorical_columns() -> list[str]:
    return [f"c{i:02d}" for i in range(N_CATEGORICAL)]


# --- the three computations -------------------------------------------------------------------------


def psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI over the categories of both sides, with Evidently's zero-fill."""
    keys = sorted(set(reference.unique()) | set(current.unique()))
    r = reference.value_counts().reindex(keys, fill_value=0).to_numpy() / len(reference)
    c = current.value_counts().reindex(keys, fill_value=0).to_numpy() / len(current)
    for share in (r, c):
        low = share[share > 0].min()
        share[share == 0] = low / 1e6 if low <= 0.0001 else 0.0001
    return float(np.sum((r - c) * np.log(r / c)))


def raw(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, dict[str, Any]]:
    from scipy.stats import ks_2samp

    out = {}
    for col in [*numeric_columns(), "score"]:
        res = ks_2samp(ref[col].to_numpy(), cur[col].to_numpy())
        out[col] = {
            "score": float(res.pvalue),
            "distance": float(res.statistic),
            "drifted": bool(res.pvalue <= KS_ALPHA),
        }
    for col in categorical_columns():
        value = psi(ref[col], cur[col])
        out[col] = {"score": value, "drifted": bool(value >= PSI_THRESHOLD)}
    return out


def settings_for(home: str, max_rows: int) -> Any:
    from config import read_config

    env = {
        "AIRLOOP_HOME": home,
        "AIRLOOP__MONITOR__DRIFT__NUMERIC_METHOD": "ks",
        "AIRLOOP__MONITOR__DRIFT__NUMERIC_THRESHOLD": str(KS_ALPHA),
        "AIRLOOP__MONITOR__DRIFT__CATEGORICAL_METHOD": "psi",
        "AIRLOOP__MONITOR__DRIFT__CATEGORICAL_THRESHOLD": str(PSI_THRESHOLD),
        "AIRLOOP__MONITOR__DRIFT__PREDICTION_METHOD": "ks",
        "AIRLOOP__MONITOR__DRIFT__PREDICTION_THRESHOLD": str(KS_ALPHA),
        "AIRLOOP__MONITOR__DRIFT__MAX_ROWS": str(max_rows),
    }
    return read_config("local", env)


def monitor(ref: pd.DataFrame, cur: pd.DataFrame, settings: Any) -> tuple[dict[str, dict[str, Any]], dict]:
    """The monitor's drift report: sample both sides, Evidently, HTML. Returns per-column results
    and what is needed to check the sample (not timed by the caller beyond ``compute``)."""
    from tasks.monitoring import drift
    from tasks.monitoring.reference import Reference
    from tasks.monitoring.sampling import sample_frame

    cfg = settings.monitor.drift
    t0 = time.perf_counter()
    current = sample_frame(cur, cfg.max_rows, cfg.seed)
    reference = Reference(
        model_name="bench",
        model_version="1",
        training_set_uri="",
        data_sha256="",
        rows=len(ref),
        numeric=numeric_columns(),
        categorical=categorical_columns(),
        frame=sample_frame(ref, cfg.max_rows, cfg.seed),
        holdout=pd.DataFrame(),
        holdout_start="",
    )
    t1 = time.perf_counter()
    result, snapshot = drift.compute(settings, current, reference, rows=len(cur))
    t2 = time.perf_counter()
    html = snapshot.get_html_str(as_iframe=False)
    t3 = time.perf_counter()
    cols = [*result.columns, result.prediction]
    out = {c.column: {"score": c.score, "drifted": c.drifted} for c in cols}
    extra = {
        "error_bound": result.error_bound,
        "sample_rows": result.sample_rows,
        "html_bytes": len(html),
        "split": {"sample": t1 - t0, "evidently": t2 - t1, "html": t3 - t2},
    }
    return out, extra


def preset(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Evidently's ``DataDriftPreset`` with the same tests, on all rows, and its HTML: the
    straightforward way (what DESIGN.md measured at 9.4 s / 100k and 150 s / 1M rows)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = [*numeric_columns(), "score"], categorical_columns()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    metric = DataDriftPreset(
        num_method="ks", num_threshold=KS_ALPHA, cat_method="psi", cat_threshold=PSI_THRESHOLD
    )
    snapshot = Report([metric]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    snapshot.get_html_str(as_iframe=False)
    values = {
        m["config"].get("column"): m["value"] for m in snapshot.dict()["metrics"] if "column" in m["config"]
    }
    return {c: {"score": float(v), "drifted": None} for c, v in values.items()}


# --- one worker per (mode, size) ----------------------------------------------------------------------


def worker(mode: str, rows: int, trace: bool) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    import scipy.stats  # noqa: F401 - imported before the clock for every mode

    imported = time.perf_counter()
    settings = None
    if mode != "raw":
        import evidently  # noqa: F401

        from tasks.monitoring import drift  # noqa: F401

        home = tempfile.mkdtemp(prefix="airloop-bench-drift-")
        settings = settings_for(home, 50_000 if mode == "airloop" else rows)
    import_s = time.perf_counter() - imported
    ref, cur = make_frames(rows)
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    started, cpu = time.perf_counter(), time.process_time()
    extra: dict[str, Any] = {}
    if mode == "raw":
        columns = raw(ref, cur)
    elif mode == "preset":
        columns = preset(ref, cur)
    else:
        columns, extra = monitor(ref, cur, settings)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    out: dict[str, Any] = {"mode": mode, "rows": rows, "seconds": seconds, "cpu_s": cpu, "import_s": import_s}
    out.update(extra)
    if trace:
        out["peak_mb"] = (tracemalloc.get_traced_memory()[1] - before) / 2**20
        tracemalloc.stop()
        return out
    if mode == "airloop":  # the K-S distance on the sample the monitor used, for the accuracy check
        from scipy.stats import ks_2samp

        from tasks.monitoring.sampling import sample_frame

        cfg = settings.monitor.drift
        rs, cs = sample_frame(ref, cfg.max_rows, cfg.seed), sample_frame(cur, cfg.max_rows, cfg.seed)
        for col in [*numeric_columns(), "score"]:
            columns[col]["distance"] = float(ks_2samp(rs[col].to_numpy(), cs[col].to_numpy()).statistic)
    out["columns"] = columns
    return out


def run_worker(mode: str, rows: int, trace: bool) -> dict[str, Any]:
    return _call(["--worker", mode, "--rows", str(rows), *(["--trace"] if trace else [])])


# --- reading a large window from the inference log -------------------------------------------------------

LOG_START = pd.Timestamp("2026-02-01T00:00:00Z")


def log_settings(home: str) -> Any:
    from config import read_config

    return read_config(
        "local", {"AIRLOOP_HOME": home, "AIRLOOP__SERVING__INFERENCE_LOG__FLUSH_ROWS": "10000000"}
    )


def write_log(home: str, rows: int) -> None:
    """``rows`` predictions over 24 hours in the inference log (the serving module's writer), and a
    label for each, landed at the window's end."""
    from tasks.serving.inference_log import InferenceLogWriter, write_labels

    settings = log_settings(home)
    _, cur = make_frames(rows, seed=1)
    ids = pd.Series([f"r{i}" for i in range(rows)])
    cur.insert(0, "request_id", ids)
    cur.insert(1, "timestamp", LOG_START + pd.to_timedelta(np.linspace(0, 86_399, rows), unit="s"))
    cur["route"], cur["model_version"] = "champion", "1"
    writer = InferenceLogWriter(settings, writer_id="bench")
    for lo in range(0, rows, 100_000):  # as serving flushes: many files per hour partition
        if not writer.append(cur.iloc[lo : lo + 100_000]):
            raise RuntimeError("the inference log writer dropped rows")
        writer.flush()
    writer.close()
    if writer.rows_written != rows:
        raise RuntimeError(f"wrote {writer.rows_written} of {rows} rows")
    labels = pd.DataFrame({"request_id": ids, "label": (cur["score"] > 0.1).astype("int64")})
    write_labels(settings, labels, now=LOG_START + pd.Timedelta(hours=23, minutes=59))


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def read_log(home: str, how: str) -> dict[str, Any]:
    """Read the whole day as one window: ``stream`` as the monitor does (``load_window``: hour by
    hour, a 50 000-row sample, score and label only for performance), ``whole`` with one
    ``read_predictions`` call (every row and column, labels joined)."""
    from tasks.monitoring.reading import load_window
    from tasks.monitoring.reference import Reference
    from tasks.monitoring.results import Window
    from tasks.serving import inference_log

    settings = log_settings(home)
    ref, _ = make_frames(1000)
    reference = Reference("bench", "1", "", "", len(ref), numeric_columns(), categorical_columns(), ref,
                          pd.DataFrame({"label": [0, 1], "score": [0.1, 0.9]}), "")  # fmt: skip
    span = Window.of(LOG_START, LOG_START + pd.Timedelta(days=1))
    first = span.start + pd.Timedelta(seconds=1)  # lazy imports first, on one hour of predictions, no labels
    inference_log.read_predictions(settings, span.start, first, labels=False)
    inference_log.read_labels(settings, span.start, first)
    base, started = _rss_mb(), time.perf_counter()
    if how == "stream":
        data = load_window(settings, span, reference)
        rows, kept, labelled = data.rows, len(data.sample), len(data.labelled)
    else:
        frame = inference_log.read_predictions(settings, span.start, span.end)
        rows, kept, labelled = len(frame), len(frame), int(frame["label"].notna().sum())
    return {
        "how": how,
        "seconds": time.perf_counter() - started,
        "peak_mb": _rss_mb() - base,
        "rows": rows,
        "kept": kept,
        "labelled": labelled,
    }


def run_log_benchmark(rows: int) -> None:
    home = tempfile.mkdtemp(prefix="airloop-bench-log-")
    started = time.perf_counter()
    _call(["--write-log", home, "--rows", str(rows)])
    wrote = time.perf_counter() - started
    print(
        f"\nreading a {rows:,}-row window (24 h) from the inference log ({wrote:.0f} s to write it); "
        "peak RSS growth in a fresh process:"
    )
    for how, label in (("whole", "read_predictions, whole window"), ("stream", "load_window (the monitor)")):
        r = _call(["--read-log", home, how])
        print(
            f"  {label:<32} {r['seconds']:6.1f} s  peak +{r['peak_mb']:6.0f} MB  "
            f"({r['rows']:,} rows, {r['kept']:,} kept, {r['labelled']:,} labels joined)"
        )


def _call(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.drift", *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


# --- report ---------------------------------------------------------------------------------------------


def accuracy(raw_cols: dict, ours: dict, bound: float) -> list[str]:
    disagree = [c for c in raw_cols if bool(raw_cols[c]["drifted"]) != bool(ours[c]["drifted"])]
    planted = {*SHIFTS, TILTED}
    gaps = {
        c: abs(ours[c]["distance"] - raw_cols[c]["distance"]) for c in raw_cols if "distance" in raw_cols[c]
    }
    worst = max(gaps, key=gaps.get)
    psi_gap = max(abs(ours[c]["score"] - raw_cols[c]["score"]) for c in categorical_columns())
    lines = [
        f"    verdicts agree on {len(raw_cols) - len(disagree)}/{len(raw_cols)} columns"
        + (
            "; differ on "
            + ", ".join(
                f"{c} ({'shift ' + str(SHIFTS[c]) + ' sd' if c in SHIFTS else 'no drift planted'}: "
                f"all rows {raw_cols[c]['score']:.2g}, sample {ours[c]['score']:.2g})"
                for c in disagree
            )
            if disagree
            else ""
        ),
        f"    K-S distance, sample vs all rows: max |diff| {gaps[worst]:.4f} ({worst}) <= recorded bound "
        f"{bound:.4f}: {'yes' if gaps[worst] <= bound else 'NO'}; PSI max |diff| {psi_gap:.4f}",
    ]
    flagged_all = [c for c in raw_cols if raw_cols[c]["drifted"]]
    flagged_sample = [c for c in ours if ours[c]["drifted"]]
    lines.append(
        f"    drifted on all rows: {', '.join(flagged_all)}; on the sample: {', '.join(flagged_sample)}"
    )
    false_all = len([c for c in flagged_all if c not in planted])
    false_sample = len([c for c in flagged_sample if c not in planted])
    expected = KS_ALPHA * (len(raw_cols) - len(planted))
    missed_all = sorted(planted - set(flagged_all)) or "none"
    missed_sample = sorted(planted - set(flagged_sample)) or "none"
    lines.append(
        f"    false alarms (no drift planted; about {expected:.1f} expected at p<={KS_ALPHA}): "
        f"{false_all} on all rows, {false_sample} on the sample; planted drift missed: "
        f"{missed_all} on all rows, {missed_sample} on the sample"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--full-max-rows", type=int, default=100_000, help="largest size Evidently runs unsampled")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    p.add_argument("--worker", choices=["raw", "airloop", "evidently", "preset"], help=argparse.SUPPRESS)
    p.add_argument(
        "--log-rows", type=int, default=1_000_000, help="window read from the inference log; 0 skips"
    )
    p.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--write-log", help=argparse.SUPPRESS)
    p.add_argument("--read-log", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows[0], args.trace)))
        return 0
    if args.write_log:
        write_log(args.write_log, args.rows[0])
        return 0
    if args.read_log:
        print(json.dumps(read_log(*args.read_log)))
        return 0

    print(
        f"drift report: {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features and the score, "
        f"window and reference of N rows each; K-S p<={KS_ALPHA} (numbers, score), PSI>={PSI_THRESHOLD} "
        f"(categories); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    rows_out = []
    for rows in args.rows:
        modes = ["raw", "airloop"] + (["evidently", "preset"] if rows <= args.full_max_rows else [])
        results = {m: run_worker(m, rows, trace=False) for m in modes}
        if not args.no_memory:
            for m in modes:
                results[m]["peak_mb"] = run_worker(m, rows, trace=True)["peak_mb"]
        base = results["raw"]["seconds"]
        print(f"\n{rows:,} rows", flush=True)
        labels = {
            "raw": "raw scipy K-S/PSI, all rows (baseline)",
            "airloop": "airloop: 50k-row samples + Evidently + HTML",
            "evidently": "Evidently ValueDrift on all rows + HTML",
            "preset": "Evidently DataDriftPreset, all rows + HTML",
        }
        for m in modes:
            r = results[m]
            mem = f"{r['peak_mb']:8.0f} MB" if "peak_mb" in r else "       - MB"
            ratio, cpu_ratio = r["seconds"] / base, r["cpu_s"] / results["raw"]["cpu_s"]
            print(
                f"  {labels[m]:<44} {r['seconds']:7.2f} s {ratio:6.2f}x raw | cpu {r['cpu_s']:7.2f} s "
                f"{cpu_ratio:6.2f}x raw | peak {mem}"
            )
            rows_out.append((rows, m, r["seconds"], ratio, cpu_ratio))
        ours = results["airloop"]
        html_mb, split = ours["html_bytes"] / 1e6, ours["split"]
        print(
            f"    airloop: sampling {split['sample']:.2f} s, Evidently {split['evidently']:.2f} s, "
            f"HTML {split['html']:.2f} s ({html_mb:.1f} MB); import (not timed) {ours['import_s']:.1f} s"
        )
        for line in accuracy(results["raw"]["columns"], ours["columns"], ours["error_bound"]):
            print(line)
    if args.log_rows:
        run_log_benchmark(args.log_rows)
    print()
    big = [r for r in rows_out if r[1] == "airloop"]
    if big:
        for rows, _, seconds, ratio, cpu_ratio in big:
            print(
                f"goal at {rows:,} rows: <= 30 s ({seconds:.1f} s: {'met' if seconds <= 30 else 'MISSED'}), "
                f"<= 3x raw (wall {ratio:.2f}x, cpu {cpu_ratio:.2f}x: "
                f"{'met' if max(ratio, cpu_ratio) <= 3 else 'MISSED'})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

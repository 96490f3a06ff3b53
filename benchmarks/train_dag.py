"""Orchestration overhead of the train DAG against running ``python -m tasks.training`` directly.

Both run on the same training set, against the same MLflow server, in the same process tree:
- baseline: ``python -m tasks.training --training-set-uri ...`` as a child process (what the pod runs);
- DAG: ``dag.test()`` of ``dags/train.py`` (training-set task, which finds the content-addressed
  set already written; the training operator's local runner, which starts the same entrypoint;
  the publish task and the asset event), with Airflow's metadata DB in a temporary home.

The ratio is DAG / baseline wall time; what it adds is Airflow task start-up, XCom and the
training-set task. Run: ``python -m benchmarks.train_dag [--hours 8 --rows 2000 --repeats 2]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airloop-bench-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parent.parent / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "OMP_WAIT_POLICY": "PASSIVE",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
)

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from config import PROJECT_ROOT, read_config  # noqa: E402
from tasks.common.net import free_port  # noqa: E402
from tasks.common.secrets import use_mlflow_credentials  # noqa: E402

FAST = {
    "AIRLOOP__TRAIN__XGBOOST__GRID__MAX_DEPTH": "[4]",
    "AIRLOOP__TRAIN__XGBOOST__MAX_ROUNDS": "150",
    "AIRLOOP__TRAIN__MLP__MAX_EPOCHS": "8",
    "AIRLOOP__TRAIN__DEVICE": "cpu",
    "AIRLOOP__TRAIN__WARMUP_HOURS": "0",  # hours of history, not the 7 days a settled 7-day window needs
}


def _world(home: Path, hours: int, rows: int) -> tuple[dict[str, str], str]:
    from tasks.features import store, tables
    from tasks.ingest.batches import ingest_batch
    from tasks.platform import simulate
    from tasks.training import dataset

    env = {"AIRLOOP_HOME": str(home), "AIRLOOP__MLFLOW__PORT": str(free_port()), **FAST}
    os.environ.update(env)
    settings = read_config("local", env)
    for i in range(hours):
        frame = simulate.generate_batch(settings, "stable", index=i, rows=rows)
        ingest_batch(simulate.write_batch(frame, settings.storage.landing_uri, f"b{i:04d}.parquet"), settings)
    tables.refresh(settings)
    store.apply(settings)
    return env, dataset.build(settings).uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_dag", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hours", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from airflow.dag_processing.dagbag import DagBag

    from tasks.platform import stack

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    home = Path(tempfile.mkdtemp(prefix="airloop-bench-train-"))
    settings = None
    try:
        print(f"==> {args.hours} h x {args.rows} rows through ingest, features and Feast; MLflow server")
        env, uri = _world(home, args.hours, args.rows)
        settings = read_config("local", env)
        stack.start(settings, services=[stack.MLFLOW], timeout=180, quiet=True)
        use_mlflow_credentials(settings)
        dag = DagBag(str(PROJECT_ROOT / "dags" / "train.py")).get_dag("train")
        direct, chain, orchestrated = [], [], []
        child_env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow.url}
        for i in range(args.repeats):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tasks.training.dataset"],
                check=True,
                capture_output=True,
                env=child_env,
            )
            built = time.perf_counter() - started
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tasks.training", "--training-set-uri", uri, "--reason", "benchmark"],
                check=True,
                capture_output=True,
                env=child_env,
            )
            direct.append(time.perf_counter() - started)
            chain.append(built + direct[-1])
            started = time.perf_counter()
            run = dag.test(run_conf={"reason": "benchmark"})
            orchestrated.append(time.perf_counter() - started)
            assert run.state == "success", run.state
            print(
                f"  round {i + 1}: train {direct[-1]:.1f} s, set+train {chain[-1]:.1f} s,"
                f" DAG {orchestrated[-1]:.1f} s"
            )
    finally:
        if settings is not None:
            stack.stop(settings, services=[stack.MLFLOW], quiet=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)

    d, c, o = statistics.median(direct), statistics.median(chain), statistics.median(orchestrated)
    print()
    print("baseline: python -m tasks.training on the same training set and MLflow server (median)")
    print(f"{'path':<44}{'seconds':>9}{'ratio':>8}")
    print(f"{'python -m tasks.training':<44}{d:>9.1f}{1.0:>8.2f}")
    print(f"{'python -m tasks.training.dataset, then train':<44}{c:>9.1f}{c / d:>8.2f}")
    print(f"{'train DAG (dag.test: set, operator, publish)':<44}{o:>9.1f}{o / d:>8.2f}")
    print(f"orchestration alone (DAG minus the same two commands): {o - c:+.1f} s per run ({o / c:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

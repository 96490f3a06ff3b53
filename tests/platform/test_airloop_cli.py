"""``airloop``, the one command line: every subcommand answers ``--help`` with its options and
without loading the heavy libraries, ``validate`` judges a file without touching the data dirs,
and the stack commands say plainly when nothing runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import PROJECT_ROOT, Settings
from tasks.common.net import free_port
from tasks.platform import cli, simulate

OWN_OPTIONS = {
    "demo": [
        "--batches",
        "--rows",
        "--bad",
        "--scenario",
        "--timeout",
        "--until",
        "--rate",
        "--label-delay",
        "--steady-windows",
    ],
    "up": ["--serve", "--timeout"],
    "down": ["--timeout"],
    "status": [],
    "env": [],
    "simulate": [
        "--scenario",
        "--batches",
        "--rows",
        "--start-index",
        "--format",
        "--bad",
        "--drift-strength",
        "--notify",
        "--landing-uri",
    ],
    "traffic": [
        "--rate",
        "--seconds",
        "--requests",
        "--scenario",
        "--drift-strength",
        "--label-delay",
        "--workers",
    ],
    "validate": ["FILE", "--json"],
}
"""The options each of airloop's own subcommands offers (and its --help must name)."""

STAGE_HELP = {
    "features": ["refresh", "apply", "status", "lookup"],
    "train": ["--training-set-uri", "--reason"],
    "serve": ["run", "config"],
    "monitor": ["--start", "--end", "--decide"],
}
"""Words the stages' own command lines show in their help (``airloop STAGE --help`` is theirs)."""

HEAVY = [
    "pandas",
    "numpy",
    "pyarrow",
    "feast",
    "mlflow",
    "ray",
    "torch",
    "xgboost",
    "great_expectations",
    "evidently",
    "sklearn",
    "scipy",
    "airflow",
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0, argv
    return capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([], capsys)
    assert text.startswith("usage: airloop")
    for command in [*OWN_OPTIONS, *STAGE_HELP]:
        assert f"    {command} " in text, command
    assert "--profile" in text


@pytest.mark.parametrize("command", sorted(OWN_OPTIONS))
def test_each_command_help_says_what_it_does_and_names_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help([command], capsys)
    assert text.startswith(f"usage: airloop {command}")
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 8, f"airloop {command} --help says too little: {description!r}"
    for option in OWN_OPTIONS[command]:
        assert option in text, f"airloop {command} --help does not name {option}"


@pytest.mark.parametrize("stage", sorted(STAGE_HELP))
def test_stage_commands_hand_over_to_the_stage_command_line(
    stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help([stage], capsys)
    assert text.startswith("usage:")
    for word in STAGE_HELP[stage]:
        assert word in text, f"airloop {stage} --help does not show {word}"


def test_stage_commands_get_every_argument_after_their_name(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "config"]) == 0
    printed = capsys.readouterr().out
    assert "applications:" in printed and "import_path: tasks.serving.app:app_builder" in printed


_PROBE = """
import json, sys
from tasks.platform import cli
for argv in json.loads(sys.argv[1]):
    try:
        cli.main(argv)
    except SystemExit as done:
        assert done.code == 0, (argv, done.code)
print(json.dumps(sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)))
"""


def test_help_loads_no_heavy_library() -> None:
    """``airloop --help`` and every subcommand's ``--help``, in a fresh interpreter."""
    helps = [["--help"]] + [[command, "--help"] for command in [*OWN_OPTIONS, *STAGE_HELP]]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(helps), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"--help imported {loaded}"


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "airloop"
    assert script.exists(), "`make setup` installs the airloop command (pip install -e .)"
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    assert "validate" in done.stdout


def test_unknown_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["status", "--bogus"])
    assert done.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


# -- validate ------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def inbox(settings: Settings, tmp_path: Path) -> Path:
    """A folder of the user's beside the data dirs (both under ``AIRLOOP_HOME``, ``tmp_path``)."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_validate_passes_a_good_file_and_touches_nothing(
    settings: Settings, inbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = simulate.generate_batch(settings, "stable", index=1, rows=300)
    good = Path(simulate.write_batch(df, f"file://{inbox}", "mine.csv", fmt="csv").removeprefix("file://"))
    before = _tree(tmp_path)
    assert cli.main(["validate", str(good)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"PASS  file://{good}: 300 rows") and "every check passed" in out[0]
    assert _tree(tmp_path) == before, "validate wrote or moved something"


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("nulls", "expect_column_values_to_not_be_null [amount]"),
        ("wrong_types", "expect_column_values_to_be_in_type_list [amount]"),
        ("wrong_schema", "expect_table_columns_to_match_set"),
        ("empty", "empty_file"),
    ],
)
def test_validate_fails_a_bad_file_naming_the_check_and_touches_nothing(
    settings: Settings,
    inbox: Path,
    kind: str,
    check: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = simulate.make_bad_batch(settings, kind, rows=300)
    path = Path(simulate.write_bad_batch(bad, f"file://{inbox}").removeprefix("file://"))
    before = _tree(inbox.parent)
    relative = os.path.relpath(path)
    assert cli.main(["validate", relative]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"FAIL  file://{path}:") and "failed check" in out[0]
    failures = [line for line in out[1:] if line.startswith("  - ")]
    assert failures and len(failures) == len(out) - 1
    assert any(line.startswith(f"  - {check}") for line in failures), out
    assert _tree(inbox.parent) == before, "validate wrote or moved something"


def test_validate_as_json_and_a_missing_file(
    settings: Settings, inbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = simulate.make_bad_batch(settings, "out_of_range", rows=300)
    path = simulate.write_bad_batch(bad, f"file://{inbox}")
    assert cli.main(["validate", path, "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["success"] is False and summary["rows"] == 300
    assert {f["column"] for f in summary["failures"]} >= {"amount", "merchant_category"}
    assert cli.main(["validate", str(inbox / "nothing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- the stack, stopped --------------------------------------------------------------------------


@pytest.fixture
def stopped_stack(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home where nothing was ever started, on ports nothing listens on."""
    monkeypatch.setenv("AIRLOOP__AIRFLOW__PORT", str(free_port()))
    monkeypatch.setenv("AIRLOOP__MLFLOW__PORT", str(free_port()))
    return settings


def test_status_of_a_stopped_stack_says_so(
    stopped_stack: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status"]) == 3
    out = capsys.readouterr().out.splitlines()
    for service in ("api-server", "scheduler", "dag-processor", "triggerer", "mlflow"):
        [line] = [x for x in out if x.split()[:1] == [service]]
        assert "stopped" in line, line
    assert out[-1].startswith("stopped: no service is running")


def test_down_on_a_stopped_stack_is_fine(stopped_stack: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down"]) == 0
    assert "nothing running" in capsys.readouterr().out


def test_env_prints_the_stack_environment_as_exports(
    stopped_stack: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"export AIRFLOW_HOME={stopped_stack.airflow.home}" in lines
    assert all(line.startswith("export ") for line in lines)
    port = os.environ["AIRLOOP__AIRFLOW__PORT"]
    assert f"export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:{port}/execution/" in lines


def test_every_stack_process_gets_the_malloc_arena_limit(stopped_stack: Settings) -> None:
    from tasks.platform.stack import airflow_env, airflow_vars

    assert stopped_stack.airflow.malloc_arena_max == 2  # the local profile's
    assert airflow_env(stopped_stack)["MALLOC_ARENA_MAX"] == "2"
    glibc = stopped_stack.airflow.model_copy(update={"malloc_arena_max": None})
    assert "MALLOC_ARENA_MAX" not in airflow_vars(stopped_stack.model_copy(update={"airflow": glibc}))


def test_a_restarted_scheduler_takes_over_a_killed_ones_tasks_within_a_minute(
    stopped_stack: Settings,
) -> None:
    """Airflow checks for orphaned tasks every 5 minutes by default; a scheduler restarted right
    after a ``kill -9`` sees the dead one's heartbeat as recent and its tasks wait for that check
    (tests/e2e/test_upstream_faults.py measured 349 s)."""
    from tasks.platform.stack import airflow_env

    env = airflow_env(stopped_stack)
    assert env["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"] == "60"
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "60"


def test_status_names_a_partly_running_stack() -> None:
    from tasks.platform.stack import status_lines

    st = {
        "url": "http://127.0.0.1:8080",
        "mlflow_url": "http://127.0.0.1:5000",
        "home": "/h",
        "health": None,
        "services": {
            "api-server": {
                "running": True,
                "pid": 11,
                "port": 8080,
                "health": "healthy",
                "rss": 300 * 2**20,
                "processes": 2,
            },
            "scheduler": {"running": False, "pid": None, "port": None, "health": None},
        },
        "memory": {"rss": 300 * 2**20, "pss": 200 * 2**20, "processes": 2},
    }
    lines = status_lines(st)
    assert "running pid 11" in lines[1] and "300 MiB in 2 proc" in lines[1] and "stopped" in lines[2]
    assert "Airflow health: api-server not answering" in lines
    assert any(line.startswith("memory: 300 MiB resident in 2 processes (200 MiB") for line in lines)
    assert lines[-1].startswith("partly running: start the rest with `airloop up`")

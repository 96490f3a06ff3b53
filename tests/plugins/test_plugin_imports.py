"""What the plugins folder costs each process: Airflow imports every file of it into every
service and task process that loads plugins; only the UI plugin is one (``plugins/.airflowignore``),
and the Kubernetes provider (~80 MB) loads only where a training pod is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from config import PROJECT_ROOT

HEAVY = ("kubernetes", "kubernetes_asyncio", "airflow.providers.cncf.kubernetes.operators.pod")


def _modules_after(code: str, tmp_path: Path, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it sets ``out``, printed as JSON with the heavy
    modules it left in ``sys.modules``."""
    heavy = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"
    script = f"import json, sys\n{code}\nprint(json.dumps({{'out': out, 'heavy': {heavy}}}))"
    environ = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **env,
    }
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, check=False, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_airflow_loads_only_the_ui_plugin_and_no_kubernetes_provider(tmp_path):
    code = (
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "names = ('training', 'rollout', 'monitoring', 'airloop_ui')\n"
        "out = {'plugins': [p.name for p in plugins], 'errors': errors,\n"
        "       'modules': sorted(m for m in names if m in sys.modules)}"
    )
    seen = _modules_after(code, tmp_path)
    assert seen["out"] == {"plugins": ["airloop"], "errors": {}, "modules": ["airloop_ui"]}
    assert seen["heavy"] == []


def test_local_training_operator_leaves_the_kubernetes_provider_unloaded(tmp_path):
    code = (
        "from config import read_config\n"
        "from plugins.training import training_operator\n"
        "out = type(training_operator(read_config('local'), task_id='train', training_set_uri='x')).__name__"
    )
    seen = _modules_after(code, tmp_path, AIRLOOP_HOME=str(tmp_path))
    assert seen == {"out": "LocalTrainingOperator", "heavy": []}

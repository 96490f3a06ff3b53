"""Static checks of docker-compose.yaml, the production profile on one host (no Docker here).

The file is interpolated the way Compose does it (``${VAR:-default}``, ``${VAR:?error}``, ``$$``;
by default with the variables of ``.env.example``) and validated
against the Compose Specification JSON schema, vendored as ``compose-spec.json`` from
compose-spec/compose-spec (``schema/compose-spec.json``, commit 00655e2222608fa6eaecdf12ac5195889ca2244a).
Then the wiring is checked: images pinned or built from files that exist, dependencies, ports,
bind mounts, healthchecks, and that the production config loaded with the Airflow services'
environment points at services this file defines.
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from packaging.utils import canonicalize_name

from config import read_config, secret_variables
from tasks.serving import process as serve

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REQUIRED_SERVICES = {
    "postgres", "redis", "minio", "minio-init", "mlflow", "airflow-init", "ray-head", *AIRFLOW_SERVICES,
}  # fmt: skip
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}
NETWORK_SCHEMES = {"http", "https", "redis", "rediss", "postgres", "postgresql", "ray"}
"""URL schemes whose host must be a compose service (s3://bucket and file:// name no host)."""

VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://[^\s\"',]+")


# --------------------------------------------------------------------------------------------
# Compose interpolation and loading
# --------------------------------------------------------------------------------------------


class MissingVariable(KeyError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, strict: every variable needs a value or a default."""

    def replace(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        expr = m["braced"] if m["braced"] is not None else m["named"]
        name, op, arg = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?(.*)\Z", expr, re.S).groups()
        assert "${" not in arg, f"nested interpolation is not supported here: {expr}"
        value = env.get(name)
        if op in (":-", "-"):
            return arg if value is None or (op == ":-" and value == "") else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in (":+", "+"):
            return arg if value not in (None, "") or (op == "+" and value is not None) else ""
        if value is None:
            raise MissingVariable(f"{name} has no value and no default")
        return value

    return VAR.sub(replace, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def variables_used(text: str) -> set[str]:
    names = set()
    for m in VAR.finditer(text):
        if not m["escaped"]:
            names.add(re.match(r"[A-Za-z_][A-Za-z0-9_]*", m["braced"] or m["named"]).group(0))
    return names


def env_example() -> dict[str, str]:
    env = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


@cache
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@cache
def _compose(env_items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return interpolate_tree(raw_compose(), dict(env_items))


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as Compose sees it with ``env`` (default: the variables of ``.env.example``)."""
    return _compose(tuple(sorted((env_example() if env is None else env).items())))


def secret_names() -> set[str]:
    """The secrets: the variables whose ``.env.example`` value is an example (``change-me``)."""
    return {name for name, value in env_example().items() if "change-me" in value}


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: str, doc: dict[str, Any] | None = None) -> dict[str, str]:
    env = (doc or compose())["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def argv(command: Any) -> list[str]:
    return command if isinstance(command, list) else str(command or "").split()


def command_text(service: str) -> str:
    spec = services()[service]
    return " ".join(argv(spec.get("entrypoint")) + argv(spec.get("command")))


def depends_on(spec: dict[str, Any]) -> dict[str, str]:
    deps = spec.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: d.get("condition", "service_started") for name, d in deps.items()}


def one_shot(spec: dict[str, Any]) -> bool:
    return str(spec.get("restart", "no")) == "no"


def published_ports(doc: dict[str, Any]) -> list[tuple[str, str, int, int, str]]:
    """``(service, host_ip, published, target, protocol)`` of every published port."""
    out = []
    for name, spec in doc["services"].items():
        for port in spec.get("ports", []):
            if isinstance(port, dict):
                host_ip, published = port.get("host_ip", "0.0.0.0"), port.get("published")
                target, protocol = port["target"], port.get("protocol", "tcp")
            else:
                text, _, protocol = str(port).partition("/")
                parts = text.rsplit(":", 2)
                if len(parts) == 1:
                    continue  # container port only: not published at a fixed host port
                host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
                published, target = parts[-2], parts[-1]
            if published in (None, ""):
                continue
            assert "-" not in str(published), f"{name}: port ranges are not expected here"
            out.append((name, host_ip, int(published), int(target), protocol or "tcp"))
    return out


def hosts_in(text: str) -> set[str]:
    """Hosts of network URLs (http, redis, postgresql+driver, ...) in a string."""
    hosts = set()
    for m in URL.finditer(text):
        if m.group(1).split("+")[0] in NETWORK_SCHEMES and (host := urlsplit(m.group(0)).hostname):
            hosts.add(host)
    return hosts


POSTGRES_ROLES_SCRIPT = ROOT / "deploy" / "postgres" / "10-airloop-roles.sh"
MINIO_INIT_SCRIPT = ROOT / "deploy" / "minio" / "init.sh"


def database_roles() -> dict[str, tuple[str, str]]:
    """``{database: (owning role, its password variable)}`` from the postgres init script."""
    owners = {}
    for role, variable, databases in re.findall(
        r'^airloop_role (\w+) "\$(\w+)" ([\w ]+)$', POSTGRES_ROLES_SCRIPT.read_text(), re.M
    ):
        for database in databases.split():
            owners[database] = (role, variable)
    return owners


def create_databases() -> set[str]:
    return set(database_roles())


def minio_buckets() -> set[str]:
    return set(re.findall(r"mc mb (?:--[\w-]+ )*\w+/([a-z0-9.-]+)", MINIO_INIT_SCRIPT.read_text()))


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def assert_pinned(ref: str, where: str) -> None:
    if "@sha256:" in ref:
        return
    last = ref.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    assert tag and tag != "latest" and re.search(r"\d", tag), f"{where}: image {ref!r} is not pinned"


# --------------------------------------------------------------------------------------------
# Schema and structure
# --------------------------------------------------------------------------------------------


def test_vendored_schema_is_a_valid_draft7_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; Compose rejects the file."""

    def construct_mapping(self, node, deep=False):
        keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {duplicates}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def test_compose_file_has_no_duplicate_keys():
    assert yaml.load(COMPOSE_FILE.read_text(), Loader=_UniqueKeyLoader) == raw_compose()


@pytest.mark.parametrize("env_source", ["secrets only", ".env.example"])
def test_compose_file_matches_the_compose_specification(env_source):
    """Valid YAML, every variable resolvable, and valid against the Compose Specification."""
    env = env_example()
    if env_source == "secrets only":
        env = {name: value for name, value in env.items() if name in secret_names()}
    doc = compose(env)
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_every_secret_is_required_and_documented_and_every_other_variable_has_a_default():
    text = COMPOSE_FILE.read_text()
    used = variables_used(text) | set(secret_variables("production"))
    documented = set(env_example())
    assert used == documented, (
        f"missing from .env.example: {sorted(used - documented)}; unused there: {sorted(documented - used)}"
    )
    secrets = secret_names()
    assert secrets >= {name for name in secret_variables("production") if name != "MLFLOW_PUBLIC_URL"}
    for m in VAR.finditer(text):
        if m["escaped"] or m["braced"] is None:
            continue
        name, op = re.match(r"(\w+)(:?[-?+])?", m["braced"]).groups()
        if name in secrets:
            assert op == ":?", f"secret {name} must be required (${{{name}:?...}}), not {m.group(0)}"
        else:
            assert op == ":-", f"{name} is not a secret: give it a default (${{{name}:-...}})"
    with pytest.raises(MissingVariable):
        compose({})  # no secret, no start
    compose({name: "x" for name in secrets})  # every non-secret has a default


def test_the_production_services_are_defined():
    assert set(services()) >= REQUIRED_SERVICES


def test_images_are_pinned_and_builds_exist():
    for name, spec in services().items():
        build = spec.get("build")
        assert build or spec.get("image"), f"{name}: neither image nor build"
        if build is None:
            assert_pinned(spec["image"], name)
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        if "dockerfile_inline" in build:
            bases = re.findall(r"^FROM\s+(?:--\S+\s+)*(\S+)", build["dockerfile_inline"], re.M)
            assert bases, f"{name}: inline Dockerfile has no FROM"
            for base in bases:
                assert_pinned(base, f"{name} (inline Dockerfile)")
        else:
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


def test_depends_on_targets_exist_with_meaningful_conditions():
    all_services = services()
    for name, spec in all_services.items():
        for target, condition in depends_on(spec).items():
            assert target in all_services, f"{name} depends on unknown service {target}"
            assert target != name
            target_spec = all_services[target]
            if condition == "service_healthy":
                assert "healthcheck" in target_spec, f"{name} waits for {target}, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert one_shot(target_spec), f"{name} waits for {target} to complete, but it restarts"
            if condition == "service_started":
                pytest.fail(f"{name} -> {target}: wait for service_healthy or completion, not just start")


def test_dependency_graph_is_acyclic():
    graph = {name: set(depends_on(spec)) for name, spec in services().items()}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        if node not in done:
            for nxt in graph[node]:
                visit(nxt, (*path, node))
            done.add(node)

    for node in graph:
        visit(node, ())


def test_long_running_services_have_healthchecks():
    for name, spec in services().items():
        if one_shot(spec):
            continue
        check = spec.get("healthcheck")
        assert check and not check.get("disable"), f"{name} runs for good but has no healthcheck"
        test = argv(check["test"])
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: healthcheck test {test}"


def test_one_shot_services_are_awaited():
    """Init jobs (migrations, bucket creation) gate the services that need them."""
    conditions = [(t, c) for spec in services().values() for t, c in depends_on(spec).items()]
    awaited = {target for target, condition in conditions if condition == "service_completed_successfully"}
    for name in ("minio-init", "airflow-init"):
        assert name in awaited and one_shot(services()[name])


@pytest.mark.parametrize("env_source", ["defaults", ".env.example"])
def test_host_ports_are_unique(env_source):
    env = env_example()
    if env_source == "defaults":
        env = {name: value for name, value in env.items() if name in secret_names()}
    ports = published_ports(compose(env))
    seen: dict[tuple[int, str], str] = {}
    for name, _host_ip, published, _target, protocol in ports:
        key = (published, protocol)
        assert key not in seen, f"host port {published}/{protocol} of {name} is taken by {seen[key]}"
        seen[key] = name


def test_bind_mounts_exist_and_named_volumes_are_declared():
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, spec in doc["services"].items():
        for volume in spec.get("volumes", []):
            if isinstance(volume, dict):
                kind, source = volume["type"], volume.get("source", "")
            else:
                source = volume.split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                path = (ROOT / source).resolve()
                assert path.exists(), f"{name}: bind mount source {source} does not exist"
                assert path.is_relative_to(ROOT), f"{name}: bind mount {source} leaves the repository"
            elif kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared at the top level"
        for ref in spec.get("configs", []):
            source = ref if isinstance(ref, str) else ref["source"]
            assert source in (doc.get("configs") or {}), f"{name}: config {source} is not declared"


def test_service_urls_point_at_services():
    """Every network URL in any service's environment or command names a service of this file."""
    all_services = set(services())
    for name in services():
        texts = [*environment(name).values(), command_text(name)]
        for text in texts:
            for host in hosts_in(text) - LOCAL_HOSTS:
                assert host in all_services, f"{name}: {host} (in {text[:80]!r}) is not a service"


# --------------------------------------------------------------------------------------------
# Airflow
# --------------------------------------------------------------------------------------------


def test_airflow_services_share_one_image_and_setup():
    specs = {name: services()[name] for name in [*AIRFLOW_SERVICES, "airflow-init"]}
    builds = {json.dumps(s.get("build"), sort_keys=True) for s in specs.values()}
    images = {s.get("image") for s in specs.values()}
    assert len(builds) == 1 and len(images) == 1
    assert json.loads(builds.pop())["dockerfile"] == "containers/airflow.Dockerfile"
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        values = {environment(name).get(key) for name in specs}
        assert len(values) == 1 and None not in values, f"{key} differs between Airflow services"
    assert environment("airflow-scheduler")["AIRFLOW__API_AUTH__JWT_SECRET"], "empty JWT secret: tasks fail"


@pytest.mark.parametrize("service", sorted(AIRFLOW_SERVICES))
def test_airflow_service_command_and_executor(service):
    assert argv(services()[service]["command"]) == [AIRFLOW_SERVICES[service]]
    env = environment(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).scheme.startswith("postgresql")
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


@pytest.mark.parametrize("service", sorted([*AIRFLOW_SERVICES, "airflow-init"]))
def test_airflow_services_load_the_production_config(service):
    """config.read_config with the service's environment resolves to services of this file."""
    env = environment(service)
    assert env["AIRLOOP_PROFILE"] == "production"
    cfg = read_config(env["AIRLOOP_PROFILE"], env)
    assert cfg.profile == "production"
    all_services = services()

    endpoint = urlsplit(cfg.storage.s3_endpoint_url)
    assert endpoint.hostname in all_services, f"S3 endpoint {cfg.storage.s3_endpoint_url} is not a service"
    s3_targets = {p[3] for p in published_ports(compose()) if p[0] == endpoint.hostname}
    assert endpoint.port in s3_targets, f"{endpoint.hostname} does not listen on {endpoint.port}"
    assert cfg.airflow.host == "airflow-apiserver" and cfg.airflow.host in all_services
    api_targets = {p[3] for p in published_ports(compose()) if p[0] == cfg.airflow.host}
    assert cfg.airflow.port in api_targets
    assert env["AIRFLOW__API__PORT"] == str(cfg.airflow.port)
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (execution.hostname, execution.port) == (cfg.airflow.host, cfg.airflow.port)
    assert execution.path == "/execution/"

    assert cfg.airflow.password is None, "no admin password in config (tools pass AIRLOOP__AIRFLOW__PASSWORD)"
    assert ("AIRFLOW_ADMIN_PASSWORD" in env) == (service == "airflow-init"), "only airflow-init holds it"
    users = dict(u.split(":", 1) for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users.get(cfg.airflow.username) == "admin"

    bucket = urlsplit(cfg.storage.data_uri).netloc
    assert bucket in minio_buckets(), f"bucket {bucket} of storage.data_uri is not created by minio-init"
    for uri in (cfg.storage.landing_uri, cfg.storage.curated_uri, cfg.storage.reports_uri):
        assert urlsplit(uri).netloc == bucket

    # Any host a future config section names (MLflow, Feast, Ray) must be a service too.
    for host in hosts_in(json.dumps(cfg.model_dump(mode="json"))) - LOCAL_HOSTS:
        assert host in all_services, f"production config names host {host}, which is not a service"


def test_airflow_code_mounts_match_airflow_folders():
    spec = services()["airflow-scheduler"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in spec["volumes"] if v.startswith("./")}
    env = environment("airflow-scheduler")
    assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags"
    assert mounts[env["AIRFLOW__CORE__PLUGINS_FOLDER"]] == "./plugins"
    for package in ("config", "tasks", "feature_repo"):
        assert mounts[str(PurePosixPath(env["PYTHONPATH"]) / package)] == f"./{package}"
    assert env["AIRLOOP_HOME"] == env["PYTHONPATH"]


def test_airflow_init_migrates_and_sets_the_admin_password():
    text = command_text("airflow-init")
    assert "airflow db migrate" in text
    assert "load_config()" in text and "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in text
    pw_file = PurePosixPath(environment("airflow-init")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for name in AIRFLOW_SERVICES:
        volumes = services()[name]["volumes"]
        assert any(pw_file.is_relative_to(v.split(":")[1]) for v in volumes if not v.startswith("./"))
    assert services()["airflow-init"]["volumes"] == services()["airflow-apiserver"]["volumes"]


def test_airflow_connection_and_s3_credentials_match_minio():
    env, init = environment("airflow-scheduler"), environment("minio-init")
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["conn_type"] == "aws"
    assert urlsplit(conn["extra"]["endpoint_url"]).hostname == "minio"
    assert conn["login"] == env["AWS_ACCESS_KEY_ID"] == init["S3_ACCESS_KEY"]
    assert conn["password"] == env["AWS_SECRET_ACCESS_KEY"] == init["S3_SECRET_KEY"]
    assert len(init["S3_SECRET_KEY"]) >= 8 and len(environment("minio")["MINIO_ROOT_PASSWORD"]) >= 8


# --------------------------------------------------------------------------------------------
# Postgres, MLflow, Ray
# --------------------------------------------------------------------------------------------


def test_every_database_url_targets_a_created_database_with_its_own_role():
    pg = environment("postgres")
    airflow = environment("airflow-scheduler")
    feast = read_config("production", airflow).feast.registry
    urls = {
        "airflow": airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "mlflow": environment("mlflow")["MLFLOW_BACKEND_STORE_URI"],
        "mlflow_auth": environment("mlflow")["MLFLOW_AUTH_DATABASE_URI"],
        "feast": feast,
    }
    owners = database_roles()
    assert set(owners) == set(urls), "one database each: Airflow, MLflow (tracking, users), Feast registry"
    assert len({role for role, _ in owners.values()}) == 3, "a role per component, not one for all"
    superuser_password = pg["POSTGRES_PASSWORD"]
    for database, url in urls.items():
        parts = urlsplit(url)
        role, variable = owners[database]
        assert parts.hostname == "postgres" and (parts.port or 5432) == 5432, database
        assert parts.path.lstrip("/") == database
        assert (parts.username, parts.password) == (role, pg[variable]), f"{database}: not its own role"
        assert parts.password != superuser_password
    assert "POSTGRES_USER" not in pg, "the superuser is the image's `postgres`; the script makes the roles"


def test_mlflow_uses_postgres_and_s3_artifacts():
    env = environment("mlflow")
    assert urlsplit(env["MLFLOW_BACKEND_STORE_URI"]).scheme.startswith("postgresql")
    artifacts = urlsplit(env["MLFLOW_ARTIFACTS_DESTINATION"])
    assert artifacts.scheme == "s3" and artifacts.netloc in minio_buckets()
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    assert "--no-serve-artifacts" not in command_text("mlflow")
    # deploy/mlflow/server.py writes the basic-auth ini and becomes `mlflow server --app-name basic-auth`
    assert argv(services()["mlflow"]["command"])[:2] == ["python", "/opt/airloop/deploy/mlflow/server.py"]
    server = (ROOT / "deploy" / "mlflow" / "server.py").read_text()
    assert '["mlflow", "server", "--app-name", "basic-auth", *argv]' in server


def test_mlflow_is_reachable_as_configured_by_its_clients():
    """The clients' tracking URI names the MLflow service and port, and passes its Host check."""
    spec = services()["mlflow"]
    cmd = argv(spec["command"])
    port = int(cmd[cmd.index("--port") + 1])
    allowed = [h.strip() for h in environment("mlflow")["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    for client in ("airflow-scheduler", "airflow-triggerer", "ray-head"):
        uri = urlsplit(environment(client)["MLFLOW_TRACKING_URI"])
        assert (uri.hostname, uri.port) == ("mlflow", port), client
        host_header = uri.netloc
        assert any(fnmatch.fnmatch(host_header, a) if "*" in a else host_header == a for a in allowed)


def test_mlflow_image_matches_the_pinned_client():
    inline = services()["mlflow"]["build"]["dockerfile_inline"]
    base = re.search(r"^FROM\s+(\S+)", inline, re.M).group(1)
    assert base.startswith("ghcr.io/mlflow/mlflow:v")
    pins = lock_pins()
    assert base.rsplit(":v", 1)[1] == pins["mlflow"], "server and client MLflow versions differ"
    for name, version in re.findall(r"\"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\"]+)\"", inline):
        assert pins.get(canonicalize_name(name)) == version, f"mlflow image: {name}=={version} is not locked"
    assert re.search(r"^USER\s+(?!root\b|0\b)\S+", inline, re.M), "the MLflow server should not run as root"


def test_ray_head_serves_from_the_serve_image():
    spec = services()["ray-head"]
    assert spec["build"]["dockerfile"] == "containers/serve.Dockerfile"
    targets = {p[3] for p in published_ports(compose()) if p[0] == "ray-head"}
    assert targets == {8000}, "Serve HTTP only: the dashboard (Jobs, Serve REST API) stays on the network"
    env = environment("ray-head")
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == env_example()["RAY_AUTH_TOKEN"]
    assert "RAY_AUTH_TOKEN" in " ".join(argv(spec["healthcheck"]["test"])), "the healthcheck sends the token"
    text = command_text("ray-head")
    assert "ray start --head" in text and "--dashboard-host=0.0.0.0" in text
    assert "serve start --http-host 0.0.0.0 --http-port 8000" in text
    assert environment("ray-head")["AIRLOOP_PROFILE"] == "production"
    production = read_config("production", {"POSTGRES_PASSWORD": "x"})
    assert serve.serve_env(production).items() <= environment("ray-head").items(), (
        "the Ray head must run Serve in the mode config/production.yaml asks for"
    )
    assert "localhost:8000/-/healthz" in " ".join(argv(spec["healthcheck"]["test"]))


def test_gpu_training_service_is_opt_in():
    spec = services()["train"]
    assert spec["profiles"] == ["gpu"] and one_shot(spec)
    assert spec["build"]["dockerfile"] == "containers/train.Dockerfile"
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_the_scheduler_is_given_the_configured_time_to_finish_its_tasks_on_stop():
    """Docker's default (10 s, then SIGKILL) would cut a running materialization off."""
    production = read_config("production", {"POSTGRES_PASSWORD": "x"})
    grace = services()["airflow-scheduler"]["stop_grace_period"]
    assert grace == f"{production.airflow.scheduler_stop_seconds:.0f}s"


# --------------------------------------------------------------------------------------------
# Monitoring: Prometheus, the Pushgateway, statsd-exporter, Grafana
# --------------------------------------------------------------------------------------------

MONITORING = ("prometheus", "pushgateway", "statsd-exporter", "grafana")


def flag(service: str, name: str) -> str:
    """The value of ``--name=value`` in the service's command."""
    [value] = [a.split("=", 1)[1] for a in argv(services()[service]["command"]) if a.startswith(f"--{name}=")]
    return value


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts."""
    return {v.split(":")[1]: v.split(":")[0] for v in services()[service]["volumes"] if v.startswith("./")}


def listen_port(service: str, name: str = "web.listen-address") -> int:
    return int(flag(service, name).rsplit(":", 1)[1])


def test_monitoring_services_read_the_deploy_files():
    assert set(MONITORING) <= set(services())
    config = PurePosixPath(flag("prometheus", "config.file"))
    assert mounts("prometheus")[str(config.parent)] == "./deploy/prometheus"
    prometheus_yml = yaml.safe_load((ROOT / "deploy" / "prometheus" / config.name).read_text())
    for rules in prometheus_yml["rule_files"]:
        assert (ROOT / "deploy" / "prometheus" / rules).is_file(), rules
    mapping = flag("statsd-exporter", "statsd.mapping-config")
    assert mounts("statsd-exporter")[mapping] == "./deploy/prometheus/statsd-mapping.yml"
    assert mounts("grafana")["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/airloop.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert mounts("grafana")[dashboards] == "./deploy/grafana/dashboards"
    home = environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / PurePosixPath(home).relative_to(dashboards)).is_file()


def test_prometheus_scrapes_services_on_the_ports_they_listen_on():
    jobs = {
        j["job_name"]: j
        for j in yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    }
    [serving] = jobs["airloop-serving"]["dns_sd_configs"]
    assert serving["names"] == ["ray-head"] and serving["port"] == 8000
    assert 8000 in {p[3] for p in published_ports(compose()) if p[0] == "ray-head"}
    assert jobs["airflow"]["static_configs"][0]["targets"] == [
        f"statsd-exporter:{listen_port('statsd-exporter')}"
    ]
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == [
        f"pushgateway:{listen_port('pushgateway')}"
    ]
    assert jobs["pushgateway"]["honor_labels"] is True, "the monitor's job and group labels are kept"


@pytest.mark.parametrize("service", sorted(AIRFLOW_SERVICES))
def test_airflow_sends_its_metrics_to_statsd_exporter(service):
    env = environment(service)
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    assert int(env["AIRFLOW__METRICS__STATSD_PORT"]) == listen_port("statsd-exporter", "statsd.listen-udp")
    mapping = yaml.safe_load((ROOT / "deploy/prometheus/statsd-mapping.yml").read_text())
    prefix = env["AIRFLOW__METRICS__STATSD_PREFIX"]
    assert all(m["match"].startswith(f"{prefix}.") for m in mapping["mappings"])


def test_the_production_judge_and_monitor_reach_prometheus_and_the_pushgateway():
    cfg = read_config("production", environment("airflow-scheduler"))
    assert cfg.rollout.metrics_source == "prometheus"
    judge = urlsplit(cfg.rollout.prometheus_url)
    assert (judge.hostname, judge.port) == ("prometheus", listen_port("prometheus"))
    push = urlsplit(cfg.monitor.pushgateway_url)
    assert (push.hostname, push.port) == ("pushgateway", listen_port("pushgateway"))
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    grafana = urlsplit(source["datasources"][0]["url"])
    assert (grafana.hostname, grafana.port) == (judge.hostname, judge.port)


def test_only_grafana_is_published_of_the_monitoring_services_and_it_needs_a_password():
    published = {p[0] for p in published_ports(compose())}
    assert published & set(MONITORING) == {"grafana"}
    assert "GRAFANA_ADMIN_PASSWORD" in secret_names()
    env = environment("grafana")
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == env_example()["GRAFANA_ADMIN_PASSWORD"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    for host_ip in {p[1] for p in published_ports(compose()) if p[0] == "grafana"}:
        assert host_ip == env_example()["AIRLOOP_BIND_ADDRESS"]

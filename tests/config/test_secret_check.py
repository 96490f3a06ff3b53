"""No default secrets in production: ``load_config()`` refuses the production profile while any
``${VAR}`` it uses is unset, empty or still an example value, and names each one; ``read_config``
checks only when asked, so tests and tools can read the profile with a partial environment."""

from __future__ import annotations

import secrets

import pytest

from config import PROJECT_ROOT, InsecureConfig, load_config, read_config, secret_variables

PRODUCTION_VARIABLES = {
    "FEAST_DB_PASSWORD": "feast.registry",
    "REDIS_PASSWORD": "feast.online_store.connection_string",
    "MLFLOW_PUBLIC_URL": "mlflow.public_url",
    "MODEL_SIGNING_KEY": "mlflow.signing_key",
    "RAY_AUTH_TOKEN": "serving.ray_auth_token",
    "SERVING_ADMIN_TOKEN": "serving.admin_token",
}
"""Every variable config/production.yaml reads, and the key that reads it."""


def real_environment() -> dict[str, str]:
    env = {name: secrets.token_urlsafe(24) for name in PRODUCTION_VARIABLES}
    env["MLFLOW_PUBLIC_URL"] = "https://mlflow.example.org"
    return env


def refused(environ: dict[str, str]) -> dict[str, str]:
    with pytest.raises(InsecureConfig) as caught:
        read_config("production", environ, check_secrets=True)
    assert caught.value.profile == "production"
    return caught.value.problems


def test_the_table_above_is_every_variable_of_the_production_profile():
    assert set(secret_variables("production")) == set(PRODUCTION_VARIABLES)
    assert secret_variables("local") == (), "the local profile generates its secrets, it reads none"


def test_an_empty_environment_names_every_variable_and_the_key_that_uses_it():
    problems = refused({})
    assert set(problems) == set(PRODUCTION_VARIABLES)
    for name, key in PRODUCTION_VARIABLES.items():
        assert problems[name].startswith("unset") and key in problems[name], problems[name]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("change-me", "example value"),
        ("change-me-ray-token-0123456789", "example value"),
        ("CHANGEME-and-long-enough-to-pass", "example value"),
        ("minioadmin-secret", "example value"),
        ("airloop", "example value"),
        ("Xq7-zP", "too short"),
        ("a,password=other-and-long-enough", "break the URL"),
        ("with spaces but long enough", "break the URL"),
    ],
)
def test_empty_example_short_and_url_breaking_values_are_refused(value, why):
    env = {**real_environment(), "REDIS_PASSWORD": value}
    problems = refused(env)
    assert set(problems) == {"REDIS_PASSWORD"}
    assert why in problems["REDIS_PASSWORD"]
    if value.strip():
        assert value not in str(InsecureConfig("production", problems)), "the message never shows a value"


def test_a_whole_value_secret_is_not_held_to_url_characters():
    """The serving token is a whole value (Authorization header), not spliced into a URL."""
    env = {**real_environment(), "SERVING_ADMIN_TOKEN": "token with spaces, and more than 16"}
    cfg = read_config("production", env, check_secrets=True)
    assert cfg.serving.admin_token == env["SERVING_ADMIN_TOKEN"]


def test_real_values_load_and_land_where_the_profile_uses_them():
    env = real_environment()
    cfg = read_config("production", env, check_secrets=True)
    assert cfg.feast.registry == f"postgresql+psycopg://feast:{env['FEAST_DB_PASSWORD']}@postgres:5432/feast"
    assert cfg.feast.online_store.connection_string == f"redis:6379,password={env['REDIS_PASSWORD']}"
    assert cfg.mlflow.signing_key == env["MODEL_SIGNING_KEY"]
    assert cfg.serving.ray_auth_token == env["RAY_AUTH_TOKEN"]
    assert cfg.serving.admin_token == env["SERVING_ADMIN_TOKEN"]
    assert cfg.airflow.password is None
    assert read_config("local", {}, check_secrets=True).profile == "local"


def test_without_the_check_a_partial_environment_still_reads():
    cfg = read_config("production", {"REDIS_PASSWORD": "change-me"})
    assert cfg.serving.admin_token is None and cfg.mlflow.signing_key is None


def test_an_explicit_empty_override_says_this_component_does_not_hold_that_secret():
    env = {name: value for name, value in real_environment().items() if name != "SERVING_ADMIN_TOKEN"}
    assert set(refused(env)) == {"SERVING_ADMIN_TOKEN"}
    cfg = read_config("production", {**env, "AIRLOOP__SERVING__ADMIN_TOKEN": ""}, check_secrets=True)
    assert cfg.serving.admin_token is None
    # a non-empty override of a secret key is held to the same rules as the variable
    problems = refused({**env, "AIRLOOP__SERVING__ADMIN_TOKEN": "change-me-admin-token"})
    assert set(problems) == {"AIRLOOP__SERVING__ADMIN_TOKEN"}
    assert "SERVING_ADMIN_TOKEN" in problems["AIRLOOP__SERVING__ADMIN_TOKEN"]


def test_the_env_example_file_copied_unchanged_does_not_start_production():
    example = {}
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert set(PRODUCTION_VARIABLES) <= set(example), "every variable is documented in .env.example"
    problems = refused(example)
    secret = {name for name in PRODUCTION_VARIABLES if name != "MLFLOW_PUBLIC_URL"}
    assert set(problems) == secret, "every secret of .env.example is an example value"


def test_load_config_checks_production_and_follows_the_variables(monkeypatch, tmp_path):
    env = real_environment()
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("AIRLOOP_PROFILE", "production")
    for name in PRODUCTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InsecureConfig) as caught:
        load_config()
    assert set(caught.value.problems) == set(PRODUCTION_VARIABLES)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    first = load_config()
    assert first.serving.admin_token == env["SERVING_ADMIN_TOKEN"] and load_config() is first
    monkeypatch.setenv("REDIS_PASSWORD", "change-me-redis")
    with pytest.raises(InsecureConfig, match="REDIS_PASSWORD"):
        load_config()  # the cache is keyed on the variables the profile reads, not only AIRLOOP__*
    monkeypatch.setenv("AIRLOOP_PROFILE", "local")
    assert load_config().profile == "local"

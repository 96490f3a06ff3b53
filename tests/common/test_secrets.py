"""The local profile's generated secrets: one value per home, private, shared by every reader."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from config import read_config
from tasks.common import secrets


def test_a_local_secret_is_created_once_private_and_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    settings = read_config("local", dict(os.environ))
    token = secrets.serving_token(settings)
    path = secrets.secrets_dir(settings) / secrets.SERVING_TOKEN
    assert len(token) >= 32 and path.read_text() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert secrets.serving_token(settings) == token  # the same for every later reader
    assert secrets.model_signing_key(settings) != token.encode()  # one secret per purpose


def test_racing_first_readers_all_get_the_same_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    settings = read_config("local", dict(os.environ))
    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: secrets.local_secret(settings, "raced"), range(32)))
    assert len(values) == 1
    assert [p.name for p in secrets.secrets_dir(settings).iterdir()] == ["raced"]  # no partial files


def test_the_secret_lives_in_the_home_the_settings_were_read_for(tmp_path, monkeypatch):
    """A serving replica or a task that got its settings from elsewhere finds the same file."""
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "somewhere-else"))
    settings = read_config("local", {"AIRLOOP_HOME": str(tmp_path / "home")})
    secrets.serving_token(settings)
    assert (tmp_path / "home" / ".airloop" / "secrets" / secrets.SERVING_TOKEN).exists()
    assert not (tmp_path / "somewhere-else").exists()


def test_a_configured_secret_wins_and_production_never_generates_one(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path))
    env = {**os.environ, "AIRLOOP__SERVING__ADMIN_TOKEN": "from-config"}
    assert secrets.serving_token(read_config("local", env)) == "from-config"
    production = read_config("production", {**os.environ, "POSTGRES_PASSWORD": "x"}).model_copy(
        update={"serving": read_config("local", env).serving.model_copy(update={"admin_token": None})}
    )
    with pytest.raises(RuntimeError, match="production profile needs"):
        secrets.serving_token(production)
    assert not secrets.secrets_dir(production).exists()

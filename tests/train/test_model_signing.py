"""Model authenticity at every load site: the registered hash is signed, and a version whose files
and hash tag were rewritten by someone without the signing key is refused before it is unpickled.

The attacker here can write to MLflow (no auth there), as issue 18 found: they replace the files
of the champion and rewrite its ``model_sha256`` tag to match. Serving's slots, the next training
run's champion check and the monitor's reference must all refuse it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common import registry
from tasks.common.secrets import model_signing_key
from tasks.training.run import run


@pytest.fixture(scope="module")
def signed(world):
    """One model trained and registered (champion and challenger) in its own registered model."""
    settings = world.settings(train__families="[xgboost]")
    result = run(settings, world.training_set_uri, tracking_uri=world.tracking_uri, reason="signing-tests")
    assert result.status == "registered", result.reasons
    return settings, result


def _version(world, settings):
    mc = registry.client(world.tracking_uri)
    return mc.get_model_version(settings.mlflow.registered_model, "1")


def _artifact_dir(settings, version) -> Path:
    mc = registry.client(settings.mlflow.url)
    model_id = version.model_id or version.source.removeprefix("models:/")
    location = mc.get_logged_model(model_id).artifact_location
    root = settings.mlflow.artifacts_destination.removeprefix("file://")
    return Path(root) / location.split(":", 1)[1].lstrip("/")


def test_a_registered_version_carries_a_signature_that_only_the_key_reproduces(signed, world, tmp_path):
    settings, result = signed
    version = _version(world, settings)
    key = model_signing_key(settings)
    assert version.tags[registry.TAG_MODEL_SIGNATURE] == registry.signature(
        key, version.name, str(version.version), result.model_sha256
    )
    local, sha = registry.download_verified(world.tracking_uri, version, tmp_path / "ok", key=key)
    assert sha == result.model_sha256 and (local / "MLmodel").exists()
    with pytest.raises(registry.IntegrityError, match="signed with another key"):
        registry.download_verified(world.tracking_uri, version, tmp_path / "other", key=b"not-the-key")


@pytest.fixture(scope="module")
def tampered(signed, world):
    """The champion's files replaced and its hash tag rewritten to match them, without the key."""
    settings, _ = signed
    version = _version(world, settings)
    folder = _artifact_dir(settings, version)
    mlmodel = folder / "MLmodel"
    mlmodel.write_text(mlmodel.read_text() + "\n# the attacker's files\n")
    forged = registry.artifact_sha256(folder)
    mc = registry.client(world.tracking_uri)
    mc.set_model_version_tag(version.name, version.version, registry.TAG_MODEL_SHA256, forged)
    return settings, forged


def test_the_registry_refuses_a_rewritten_hash_before_unpickling(tampered, world, tmp_path):
    settings, forged = tampered
    version = _version(world, settings)
    assert version.tags[registry.TAG_MODEL_SHA256] == forged  # the plain hash check alone would pass
    with pytest.raises(registry.IntegrityError, match="signed with another key"):
        registry.download_verified(world.tracking_uri, version, tmp_path, key=model_signing_key(settings))
    with pytest.raises(registry.IntegrityError):
        registry.load_verified(
            world.tracking_uri, version.name, "champion", tmp_path / "b", key=model_signing_key(settings)
        )


def test_serving_refuses_it_into_a_slot(tampered, world, tmp_path):
    from tasks.serving import models

    settings, _ = tampered
    settings = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": world.tracking_uri})}
    )
    with pytest.raises(models.ModelRefused) as refused:
        models.load(settings, alias="champion", cache_dir=tmp_path)
    assert refused.value.kind == "integrity" and "signed" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # nothing of it left on disk


def test_the_next_training_run_does_not_compare_against_it(tampered, world):
    from tasks.training import dataset
    from tasks.training.champion import score_champion

    settings, _ = tampered
    frame, _ = dataset.read(settings, world.training_set_uri)
    scored = score_champion(settings, world.tracking_uri, frame.tail(500))
    assert scored.metrics is None and "not comparable" in scored.note and "signed" in scored.note


def test_the_monitor_does_not_build_its_reference_from_it(tampered, world):
    from tasks.monitoring.reference import champion_reference

    settings, _ = tampered
    with pytest.raises(registry.IntegrityError):
        champion_reference(settings, world.tracking_uri)

"""The user manifest: where it is (--manifest, CSA_MANIFEST, the config folder), and register_entry writing into it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from csa_cli.errors import CsaError
from csa_cli.manifest import (
    _read_toml,
    builtin_manifest_path,
    default_user_manifest,
    load_manifest,
    manifest_toml,
    register_entry,
    user_manifest_path,
)

ENTRY = {
    "family": "csa",
    "description": "csa-nano trained on digits",
    "license": "apache-2.0",
    "num_classes": 10,
    "architecture": {"builder": "csa", "name": "csa_nano", "config": {"layer_scale": 1e-6}},
    "source": {"repo": "my-org/csa-nano-digits", "revision": "0" * 40, "files": ["model.safetensors"], "format": "csa"},
    "preprocessing": {"input_size": [96, 96], "crop_pct": 1.0, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "reported": [{"metric": "top-1 (csa train validation on digits)", "value": 98.5, "source": "my-org/csa-nano-digits@000000000000"}],
}


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No CSA_MANIFEST; the user's config folder is a fresh one."""
    monkeypatch.delenv("CSA_MANIFEST", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def test_the_default_user_manifest_lives_in_the_config_folder_and_is_read_once_it_exists(config_home: Path) -> None:
    assert default_user_manifest() == config_home / "csa" / "manifest.toml"
    assert user_manifest_path() is None  # not there yet: the packaged zoo alone
    assert "csa-nano-digits" not in load_manifest().models
    written = register_entry("csa-nano-digits", ENTRY)
    assert written == config_home / "csa" / "manifest.toml" and user_manifest_path() == written
    entry = load_manifest().get("csa-nano-digits")
    assert entry.num_classes == 10 and entry.source is not None and entry.source.revision == "0" * 40
    assert entry.architecture.config == {"layer_scale": 1e-6} and entry.preprocessing.input_size == (96, 96)
    assert "csa-tiny" in load_manifest().models  # merged over the packaged zoo, which stays as it was
    assert "csa-nano-digits" not in tomllib.loads(builtin_manifest_path().read_text())["models"]


def test_manifest_flag_then_env_then_default(config_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_entry("from-default", ENTRY)
    env_file, flag_file = tmp_path / "env.toml", tmp_path / "flag.toml"
    monkeypatch.setenv("CSA_MANIFEST", str(env_file))
    register_entry("from-env", ENTRY)
    register_entry("from-flag", ENTRY, flag_file)
    assert set(_read_toml(env_file)["models"]) == {"from-env"} and set(_read_toml(flag_file)["models"]) == {"from-flag"}
    assert "from-env" in load_manifest().models and "from-default" not in load_manifest().models  # one user manifest at a time
    assert "from-flag" in load_manifest(flag_file).models and "from-env" not in load_manifest(flag_file).models


def test_registering_again_replaces_and_keeps_the_other_entries(config_home: Path) -> None:
    register_entry("a", ENTRY)
    register_entry("b", ENTRY)
    register_entry("a", {**ENTRY, "num_classes": 3})
    zoo = load_manifest()
    assert (zoo.get("a").num_classes, zoo.get("b").num_classes) == (3, 10)


def test_a_registered_name_of_the_packaged_zoo_gives_it_weights(config_home: Path) -> None:
    packaged = load_manifest().get("csa-tiny")
    assert packaged.source is None
    register_entry("csa-tiny", {"source": ENTRY["source"], "notes": ["weights pushed by csa push"]})
    entry = load_manifest().get("csa-tiny")
    assert entry.source is not None and entry.source.repo == "my-org/csa-nano-digits"
    assert (entry.params_m, entry.preprocessing, entry.architecture) == (packaged.params_m, packaged.preprocessing, packaged.architecture)


def test_an_invalid_entry_leaves_the_manifest_as_it_was(config_home: Path) -> None:
    path = register_entry("good", ENTRY)
    before = path.read_bytes()
    with pytest.raises(CsaError, match=r"invalid manifest .*models\.bad\.family"):
        register_entry("bad", {**ENTRY, "family": "neither"})
    assert path.read_bytes() == before


def test_the_packaged_zoo_is_never_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSA_MANIFEST", str(builtin_manifest_path()))
    before = builtin_manifest_path().read_bytes()
    with pytest.raises(CsaError, match="packaged zoo"):
        register_entry("x", ENTRY)
    assert builtin_manifest_path().read_bytes() == before


@pytest.mark.parametrize("data", [_read_toml(builtin_manifest_path()), {"schema": 1, "models": {"x": {**ENTRY, "notes": ['a "quoted" \\ line']}}}])
def test_manifest_toml_reads_back_as_the_same_data(data: dict[str, Any]) -> None:
    assert tomllib.loads(manifest_toml(data)) == data


def test_csa_info_names_a_registered_model(config_home: Path, csa: Any) -> None:
    register_entry("csa-nano-digits", ENTRY)
    result = csa("info", "csa-nano-digits", "--json")
    assert result.exit_code == 0, result.stderr
    assert "my-org/csa-nano-digits" in result.stdout

"""The model registry: names, hub ids and folders resolve without network; `vmeta models list` works offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.models.local_weights import hf_cache_snapshot, is_available_locally
from vmeta.models.registry import MODELS, ModelSpec, default_spec, register
from vmeta.models.resolution import resolve

EXPECTED = {
    "qwen2-vl-2b-instruct": ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", False),
    "qwen2.5-vl-3b-instruct": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", False),
    "internvl2.5-2b": ("OpenGVLab/InternVL2_5-2B-MPO-hf", "internvl", False),
    "videollama3-2b": ("DAMO-NLP-SG/VideoLLaMA3-2B", "videollama3", True),
    "tiny": (None, "tiny", False),
}


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """Point huggingface_hub at an empty cache so the developer's real cache cannot change the results."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def settings(tmp_path, empty_hf_cache) -> Settings:
    return Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models")


def _fake_checkpoint(folder: Path, model_type: str, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, **extra}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def test_table_has_the_registered_models():
    assert set(EXPECTED) <= set(MODELS)
    for name, (hub_id, family, remote) in EXPECTED.items():
        spec = MODELS[name]
        assert (spec.hub_id, spec.family, spec.trust_remote_code) == (hub_id, family, remote)
        assert spec.model_class and spec.quirks
    assert default_spec().name == "qwen2-vl-2b-instruct"
    assert MODELS["qwen2-vl-2b-instruct"].quirks.fps == 2.0
    assert MODELS["qwen2-vl-2b-instruct"].quirks.min_frames == 4


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register(ModelSpec(name="Qwen2-VL-2B-Instruct", hub_id="x/y", family="qwen2_vl", model_class="X"))


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "tiny"])
def test_resolve_registered_names_and_hub_ids(name, settings):
    hub_id, family, remote = EXPECTED[name]
    for query in (name, name.upper(), hub_id, hub_id.lower()):
        r = resolve(query, settings)
        assert r.registered and r.name == name and r.family == family and r.trust_remote_code is remote
        assert r.source == "hub" and r.path is None and r.pretrained_id == hub_id
        assert "would download" in r.where
    assert is_available_locally(MODELS[name], settings) is False


def test_resolve_alias():
    assert resolve("tiny-qwen2-vl", build_tiny=False).name == "tiny"
    assert resolve("qwen2-vl-2b", build_tiny=False).name == "qwen2-vl-2b-instruct"


def test_unknown_hub_id_is_allowed_and_not_downloaded(settings):
    r = resolve("some-org/some-model", settings)
    assert not r.registered and r.source == "hub" and r.family == "other" and r.pretrained_id == "some-org/some-model"


def test_unknown_name_lists_the_registered_ones(settings):
    with pytest.raises(UserError) as exc:
        resolve("gpt-7-vision", settings)
    msg = str(exc.value)
    assert "gpt-7-vision" in msg
    for name in EXPECTED:
        assert name in msg


def test_missing_folder_and_adapter_folder(tmp_path, settings):
    with pytest.raises(UserError, match="does not exist"):
        resolve(str(tmp_path / "nope"), settings)
    with pytest.raises(UserError, match="does not exist"):
        resolve("./nope/", settings)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="adapter"):
        resolve(str(adapter), settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"config\.json"):
        resolve(empty, settings)


@pytest.mark.parametrize(
    ("model_type", "family", "remote"),
    [
        ("qwen2_vl", "qwen2_vl", False),
        ("qwen2_5_vl", "qwen2_5_vl", False),
        ("internvl", "internvl", False),
        ("internvl_chat", "internvl", True),
        ("videollama3_qwen2", "videollama3", True),
        ("llava", "other", False),
    ],
)
def test_local_folder_family_from_config(tmp_path, settings, model_type, family, remote):
    folder = _fake_checkpoint(tmp_path / "ckpt", model_type, architectures=["SomethingForConditionalGeneration"])
    r = resolve(str(folder), settings)
    assert (r.source, r.family, r.trust_remote_code, r.registered) == ("local", family, remote, False)
    assert r.pretrained_id == str(folder.resolve())


def test_tiny_folder_is_recognised(tiny_model_dir, settings):
    r = resolve(tiny_model_dir, settings)
    assert r.family == "tiny" and r.spec.model_class == "Qwen2VLForConditionalGeneration"
    assert r.spec.parameters and r.source == "local"


def test_models_dir_makes_a_registered_model_local(settings):
    _fake_checkpoint(settings.models_dir / "Qwen2-VL-2B-Instruct", "qwen2_vl")
    r = resolve("qwen2-vl-2b-instruct", settings)
    assert r.source == "local" and r.path == settings.models_dir / "Qwen2-VL-2B-Instruct"
    assert r.pretrained_id == str(r.path)
    assert is_available_locally(MODELS["qwen2-vl-2b-instruct"], settings)


def test_incomplete_folder_is_not_available(settings):
    folder = settings.models_dir / "qwen2-vl-2b-instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    assert not is_available_locally(MODELS["qwen2-vl-2b-instruct"], settings)


def _fake_hf_cache_entry(cache: Path, hub_id: str, *, with_ref: bool = True, weights: bool = True) -> Path:
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    if weights:
        (snap / "model-00001-of-00001.safetensors").write_bytes(b"\0")
        (snap / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}})
        )
    if with_ref:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    return snap


def test_hf_cache_is_found_without_network(settings, empty_hf_cache):
    snap = _fake_hf_cache_entry(empty_hf_cache, "Qwen/Qwen2.5-VL-3B-Instruct")
    r = resolve("qwen2.5-vl-3b-instruct", settings)
    assert r.source == "hf-cache" and r.path == snap and r.pretrained_id == str(snap)
    assert is_available_locally(MODELS["qwen2.5-vl-3b-instruct"], settings)
    # An unregistered hub id in the cache gets its family from the cached config.
    other = _fake_hf_cache_entry(empty_hf_cache, "someone/finetuned-qwen", with_ref=False)
    r = resolve("someone/finetuned-qwen", settings)
    assert r.source == "hf-cache" and r.path == other and r.family == "qwen2_5_vl"
    # config without weights is not "available".
    _fake_hf_cache_entry(empty_hf_cache, "Qwen/Qwen2-VL-2B-Instruct", weights=False)
    assert hf_cache_snapshot("Qwen/Qwen2-VL-2B-Instruct") is None


def test_tiny_is_built_on_first_use(settings):
    r = resolve("tiny", settings, build_tiny=False)
    assert r.source == "build" and not (settings.data_dir / "models" / "tiny").exists()
    r = resolve("tiny", settings)
    assert r.source == "local" and r.path == settings.data_dir / "models" / "tiny"
    assert (r.path / "model.safetensors").is_file() and r.spec.parameters
    mtime = (r.path / "model.safetensors").stat().st_mtime_ns
    assert resolve("tiny", settings).path == r.path
    assert (r.path / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt


def _models_list(data_dir: Path, hf_cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hf_cache),
        "VMETA_DATA_DIR": str(data_dir),
        "VMETA_MODELS_DIR": str(data_dir / "elsewhere"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "vmeta", "models", "list", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_models_list_offline(tiny_data_dir, tmp_path):
    cache = tmp_path / "hf"
    _fake_hf_cache_entry(cache, "Qwen/Qwen2.5-VL-3B-Instruct")
    res = _models_list(tiny_data_dir, cache, "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(EXPECTED) <= set(rows)
    assert rows["tiny"]["source"] == "local" and rows["tiny"]["path"] == str(tiny_data_dir / "models" / "tiny")
    assert rows["qwen2.5-vl-3b-instruct"]["source"] == "hf-cache"
    assert rows["qwen2-vl-2b-instruct"]["source"] == "hub" and rows["qwen2-vl-2b-instruct"]["default"]
    # the frames the chat server reads with each model: the family's defaults on a GPU, the CPU budget on a CPU
    qwen = rows["qwen2-vl-2b-instruct"]
    assert qwen["frames_gpu"]["max_pixels"] == 768 * 28 * 28 and qwen["frames_gpu"]["source"] == "model defaults"
    assert qwen["frames_cpu"]["max_pixels"] == 256 * 256 and qwen["frames_cpu"]["source"].startswith("CPU budget")
    internvl = rows["internvl2.5-2b"]  # fixed 448x448 frames everywhere
    assert internvl["frames_cpu"] == internvl["frames_gpu"] and internvl["frames_cpu"]["height"] == 448

    res = _models_list(tiny_data_dir, cache)
    assert res.returncode == 0, res.stderr
    for name in EXPECTED:
        assert name in res.stdout
    assert "would download" in res.stdout and "OpenGVLab/InternVL2_5-2B-MPO-hf" in res.stdout


def test_models_list_cpu_budget_follows_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("VMETA_CPU_VIDEO_MAX_PIXELS", str(128 * 128))
    res = _models_list(tmp_path / "fresh", tmp_path / "hf", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["qwen2-vl-2b-instruct"]["frames_cpu"]["max_pixels"] == 128 * 128


def test_models_list_reports_tiny_not_built(tmp_path):
    res = _models_list(tmp_path / "fresh", tmp_path / "hf", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["tiny"]["source"] == "build"
    assert not (tmp_path / "fresh" / "models" / "tiny").exists()  # listing never builds

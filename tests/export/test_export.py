"""`vmeta export`: merged logits equal base+adapter logits, shards respect the limit, the folder describes itself
and loads back with its processor; refuses to overwrite; clear errors for unusable runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from exporthelpers import make_run

from vmeta.errors import UserError
from vmeta.export import ExportConfig, export_run, verify_shards
from vmeta.export.shard import parse_size

pytestmark = pytest.mark.slow


def _inputs(processor, with_video: bool = True):  # type: ignore[no-untyped-def]
    import numpy as np

    content = [{"type": "text", "text": "请解释这个视频中的隐喻。The metaphor of this clip?"}]
    kwargs = {}
    if with_video:
        content.insert(0, {"type": "video"})
        video = np.random.RandomState(0).randint(0, 256, size=(4, 56, 56, 3), dtype=np.uint8)
        kwargs["videos"] = [video]
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], return_tensors="pt", **kwargs)


def _logits(model, inputs):  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return model(**inputs).logits.float()


def _reference_logits(base: Path, adapter: Path, inputs):  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    plain = _logits(model.eval(), inputs)
    peft_model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return plain, _logits(peft_model, inputs)


def _load_export(out: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(out), dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(str(out))


@pytest.mark.parametrize("kind", ["lora", "dora", "rslora", "pissa", "lora_merger"])
def test_merged_logits_equal_unmerged(tmp_path, base_dir, kind):
    import torch

    method = "lora" if kind == "lora_merger" else kind
    run = make_run(tmp_path / "runs", base_dir, method=method, kind=kind, seed=3)
    out = tmp_path / "exports" / kind
    summary = export_run(ExportConfig(run=run, out=out, dtype="fp32"))
    assert summary.merged_from == "adapter" and summary.dtype == "float32"

    model, processor = _load_export(out)
    inputs = _inputs(processor)
    plain, unmerged = _reference_logits(base_dir, run / "adapter", inputs)
    merged = _logits(model, inputs)
    assert (unmerged - plain).abs().max() > 1e-3, "the adapter must change the logits for this test to mean anything"
    diff = (merged - unmerged).abs().max().item()
    assert diff < 1e-4, f"{kind}: merged logits differ from base+adapter by {diff}"
    # No adapter modules left in the exported model.
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert torch.isfinite(merged).all()


def test_shards_respect_the_limit_and_load_back(tmp_path, small_vocab_base_dir):
    import torch

    base = small_vocab_base_dir
    run = make_run(tmp_path / "runs", base, method="lora", seed=5)
    single = tmp_path / "exports" / "single"
    export_run(ExportConfig(run=run, out=single, dtype="fp32"))  # 2GB: one file
    assert (single / "model.safetensors").is_file() and not (single / "model.safetensors.index.json").exists()

    limit_text = "300KB"
    limit = parse_size(limit_text)
    out = tmp_path / "exports" / "sharded"
    summary = export_run(ExportConfig(run=run, out=out, shard_size=limit_text, dtype="fp32"))
    files = sorted(out.glob("*.safetensors"))
    assert len(files) >= 3, [f.name for f in files]
    assert all(f.stat().st_size <= limit for f in files), [(f.name, f.stat().st_size) for f in files]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [f.name for f in files]
    report = verify_shards(out, limit)
    assert report.ok, report.problems
    assert summary.shards.largest <= limit and len(summary.shards.files) == len(files)
    manifest = json.loads((out / "vmeta_export.json").read_text())
    assert manifest["shards"]["files"] == [{"name": n, "bytes": s} for n, s in report.files]

    # The sharded and the single-file export hold the same weights: identical logits.
    m1, processor = _load_export(single)
    m2, _ = _load_export(out)
    inputs = _inputs(processor)
    assert torch.equal(_logits(m1, inputs), _logits(m2, inputs))


def test_a_tensor_bigger_than_the_limit_is_a_clear_error(tmp_path, base_dir):
    run = make_run(tmp_path / "runs", base_dir, method="lora")
    out = tmp_path / "exports" / "x"
    with pytest.raises(UserError, match=r"embed_tokens.*alone is 38\.\d+ MB.*--shard-size 39MB"):
        export_run(ExportConfig(run=run, out=out, shard_size="5MB", dtype="fp32"))
    assert not out.exists()
    assert not out.parent.exists() or not [p for p in out.parent.iterdir() if ".exporting." in p.name]


def test_folder_describes_itself_and_generates(tmp_path, base_dir):
    import torch

    results = {
        "split": "test",
        "metrics": {
            "bertscore": {"mean": 71.234, "ci95": [70.1, 72.3], "n": 100},
            "bleu4": {"mean": 20.5, "ci95": [19.0, 22.0], "n": 100},
            "rougeL": {"mean": 33.3, "ci95": None, "n": 100},
        },
    }
    run = make_run(tmp_path / "runs", base_dir, method="dora", results=results)
    out = tmp_path / "exports" / "dora-best"
    summary = export_run(ExportConfig(run=run, out=out))  # dtype auto -> the base's (float32 for the tiny model)
    assert summary.dtype == "float32"
    for name in ("config.json", "generation_config.json", "README.md", "vmeta_export.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja"):  # fmt: skip
        assert (out / name).is_file(), name
    assert any((out / n).is_file() for n in ("preprocessor_config.json", "processor_config.json"))
    card = (out / "README.md").read_text(encoding="utf-8")
    for text in ("dora", "tiny", "sha256:0123abcd", "71.23 [70.10, 72.30]", "20.50", "33.30", "LoRA rank",
                 f"vmeta serve --model {out}", "vllm serve", "from_pretrained", "Random-weight test model"):  # fmt: skip
        assert text in card, text
    manifest = json.loads((out / "vmeta_export.json").read_text())
    assert manifest["method"] == "dora" and manifest["dataset_hash"] == "sha256:0123abcd"
    assert manifest["base_model"] == "tiny" and manifest["merged_from"] == "adapter"
    # The registry still knows it is the tiny model (frame settings), and vmeta's loader loads it.
    from vmeta.models.load import load_model
    from vmeta.models.resolution import resolve

    assert resolve(out).family == "tiny"
    loaded = load_model(str(out), device="cpu", cache=False)
    inputs = _inputs(loaded.processor)
    with torch.no_grad():
        gen = loaded.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == inputs["input_ids"].shape[1] + 5 or gen.shape[1] > inputs["input_ids"].shape[1]
    text = loaded.processor.batch_decode(gen[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    assert isinstance(text, str)


def test_refuses_to_overwrite_and_replaces_with_overwrite(tmp_path, base_dir):
    run = make_run(tmp_path / "runs", base_dir, method="rslora")
    out = tmp_path / "exports" / "e"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=r"already exists.*--overwrite"):
        export_run(ExportConfig(run=run, out=out))
    assert (out / "keep.txt").read_text() == "mine"
    export_run(ExportConfig(run=run, out=out, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["e"]  # no staging / replaced folders left


def test_bf16_export_and_full_weight_run(tmp_path, base_dir):
    import torch

    run = make_run(tmp_path / "runs", base_dir, method="freeze", full=True, seed=2)
    out = tmp_path / "exports" / "freeze"
    summary = export_run(ExportConfig(run=run, out=out, dtype="bf16"))
    assert summary.merged_from == "model" and summary.dtype == "bfloat16"
    assert json.loads((out / "config.json").read_text()).get("dtype") == "bfloat16"
    from transformers import Qwen2VLForConditionalGeneration

    exported = Qwen2VLForConditionalGeneration.from_pretrained(str(out), dtype="auto")
    assert exported.dtype == torch.bfloat16
    trained = Qwen2VLForConditionalGeneration.from_pretrained(str(run / "model"), dtype=torch.float32)
    for (n1, p1), (_, p2) in zip(trained.named_parameters(), exported.named_parameters(), strict=True):
        assert torch.equal(p1.to(torch.bfloat16), p2), n1


def test_clear_errors_for_unusable_runs(tmp_path, base_dir):
    with pytest.raises(UserError, match="does not exist"):
        export_run(ExportConfig(run=tmp_path / "nope", out=tmp_path / "o"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"no run\.json"):
        export_run(ExportConfig(run=empty, out=tmp_path / "o"))

    run = make_run(tmp_path / "runs", base_dir, method="lora", status="running", name="unfinished")
    with pytest.raises(UserError, match=r"not finished \(run.json status: 'running'\).*--resume"):
        export_run(ExportConfig(run=run, out=tmp_path / "o"))

    # A base that is neither where training loaded it nor known locally: name it and say how to point at it.
    run = make_run(tmp_path / "runs", base_dir, method="lora", name="moved-base")
    info = json.loads((run / "run.json").read_text())
    info["base_model"] = "qwen2-vl-2b-instruct"
    info["model"] = {"name": "qwen2-vl-2b-instruct", "resolved": "/nowhere/Qwen2-VL-2B-Instruct", "source": "local"}
    (run / "run.json").write_text(json.dumps(info))
    from vmeta.config import Settings

    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", hf_offline=True)
    with pytest.raises(UserError, match=r"'qwen2-vl-2b-instruct'.*not available locally.*--base DIR"):
        export_run(ExportConfig(run=run, out=tmp_path / "o"), settings=settings)
    # ... and --base fixes it.
    export_run(ExportConfig(run=run, out=tmp_path / "o", base=str(base_dir)), settings=settings)
    assert (tmp_path / "o" / "config.json").is_file()

    for bad in ("2 parsecs", "", "12"):
        with pytest.raises(UserError, match="--shard-size"):
            ExportConfig(run=run, out=tmp_path / "o2", shard_size=bad)
    with pytest.raises(UserError, match="--dtype"):
        ExportConfig(run=run, out=tmp_path / "o2", dtype="int4")


def test_cli_export_and_refusal(tmp_path, base_dir):
    from typer.testing import CliRunner

    from vmeta.cli import app

    run = make_run(tmp_path / "runs", base_dir, method="pissa")
    out = tmp_path / "exports" / "cli"
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(run), "--out", str(out), "--shard-size", "2GB", "--dtype", "fp32"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "model.safetensors" in res.output and (out / "README.md").is_file()
    res = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert isinstance(res.exception, UserError) and "--overwrite" in str(res.exception)


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("5MB") == 5_000_000
    assert parse_size("5MiB") == 5 * 2**20
    assert parse_size("1.5gb") == 1_500_000_000
    assert parse_size(4096) == 4096

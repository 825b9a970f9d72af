"""Conversion of the original's checkpoints: formats, key checks, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from valle_hf.conversion import CheckpointError, convert_checkpoint, load_original_checkpoint, main


def original_tensors(fixtures):
    return load_original_checkpoint(fixtures.checkpoint)


def write_sft(path, tensors, config):
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    return path


def test_embedded_config_is_honoured(fixtures, fixture_model):
    _, original = original_tensors(fixtures)
    config = fixture_model.config
    size = original["size"]
    if isinstance(size, dict):
        assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (
            size["dim"], size["heads"], size["layers"])
    assert config.num_rvq_levels == original["resp_levels"]
    assert config.unified_position_ids == original["experimental"]["unified_position_ids"]


def test_every_tensor_is_used_or_known_unused(fixtures, fixture_model):
    """The converted weights are exactly the stored (float16) values, in float32."""
    tensors, _ = original_tensors(fixtures)
    state = fixture_model.state_dict()
    assert torch.equal(state["model.separator"], tensors["sep"].float())
    assert torch.equal(state["classifiers.8.weight"], tensors["classifiers.proj.8.weight"].float())
    layers = fixture_model.config.num_hidden_layers
    key = f"model.layers.{layers - 1}.mlp.down_proj.weight"
    assert torch.equal(state[f"model.backbone.layers.{layers - 1}.mlp.down_proj.weight"], tensors[key].float())
    assert all(value.dtype == torch.float32 for key, value in state.items() if value.is_floating_point())


def test_pth_checkpoint_loads_with_weights_only(tmp_path, fixtures, fixture_model):
    tensors, original = original_tensors(fixtures)
    path = tmp_path / "fp32.pth"
    torch.save({"module": tensors, "config": original, "stats": {"global_step": 0}}, path)
    model = convert_checkpoint(path, codec="tiny-random")
    for key, value in model.state_dict().items():
        if not key.startswith("codec_model.") and "embed_tokens" not in key:  # the backbone's unused table
            assert torch.equal(value, fixture_model.state_dict()[key]), key


def test_yaml_config_overrides_metadata(tmp_path, fixtures):
    tensors, _ = original_tensors(fixtures)
    yaml_file = fixtures.root / "config.yaml"
    if not yaml_file.is_file():
        pytest.skip("fixture set has no config.yaml")
    path = tmp_path / "bare.safetensors"
    save_file(tensors, str(path))  # no metadata at all
    with pytest.raises(CheckpointError, match="no embedded config"):
        convert_checkpoint(path, codec="tiny-random")
    model = convert_checkpoint(path, config_yaml=yaml_file, codec="tiny-random")
    assert model.config.num_rvq_levels == 8


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape", "lora"])
def test_wrong_checkpoints_name_the_key(tmp_path, fixtures, problem):
    tensors, original = original_tensors(fixtures)
    tensors = dict(tensors)
    if problem == "missing":
        del tensors["classifiers.proj.3.bias"]
        match = "classifiers.proj.3.bias"
    elif problem == "unexpected":
        tensors["extra.weight"] = torch.zeros(2)
        match = "extra.weight"
    elif problem == "shape":
        tensors["text_emb.weight"] = tensors["text_emb.weight"][:10]
        match = "text_emb.weight"
    else:
        tensors["model.layers.0.self_attn.q_proj.lora_A"] = torch.zeros(2, 2)
        match = "LoRA"
    with pytest.raises(CheckpointError, match=match):
        convert_checkpoint(write_sft(tmp_path / "bad.sft", tensors, original), codec="tiny-random")


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_original_checkpoint(tmp_path / "nope.sft")
    other = tmp_path / "model.bin"
    other.write_bytes(b"xx")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_original_checkpoint(other)


def test_unsupported_architecture(tmp_path, fixtures):
    tensors, original = original_tensors(fixtures)
    original = dict(original, arch_type="retnet")
    with pytest.raises(CheckpointError, match="architecture"):
        convert_checkpoint(write_sft(tmp_path / "r.sft", tensors, original), codec="tiny-random")


def test_command_line_writes_a_loadable_directory(tmp_path, fixtures, fixture_model, tokenizer_file, capsys):
    from transformers import AutoModelForTextToWaveform

    import valle_hf  # noqa: F401

    out = tmp_path / "converted"
    assert main(["--checkpoint", str(fixtures.checkpoint), "--output-dir", str(out), "--codec", "tiny-random",
                 "--tokenizer", str(tokenizer_file)]) == 0
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 12 * fixture_model.config.frame_rate and generation["top_k"] == 0
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert "model.separator" in handle.keys()
    model = AutoModelForTextToWaveform.from_pretrained(out)
    assert torch.equal(model.state_dict()["model.separator"], fixture_model.state_dict()["model.separator"])


def test_command_line_reports_errors_in_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.sft"), "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.sft" in err and "\n" not in err

"""Vocos decoder (valle_hf.vocos): parity with the vocos package, batching, the bandwidth rule, errors, save/load.

Parity uses a fixture set (checkpoint in the Hub layout + cases computed by vocos 0.1.0) found through the
VALLE_VOCOS_FIXTURES environment variable; every case in its cases.json is checked, whatever its sizes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import missing_fixtures, vocos_fixture_dir

from valle_hf.errors import CheckpointError
from valle_hf.vocos import VocosConfig, VocosModel, VocosOutput, load_original_vocos, tiny_random_vocos

TOLERANCE = 1e-4


class VocosFixtures:
    """A Vocos fixture set: `config.yaml` + `pytorch_model.bin` and the cases (json metadata + tensors)."""

    def __init__(self, root: Path):
        from safetensors.torch import load_file

        self.root = root
        self.cases = json.loads((root / "cases.json").read_text())["cases"]
        self.tensors = load_file(str(root / "cases.safetensors"))

    def codes(self, case: dict) -> torch.Tensor:
        """The case's codes, `[K, T]` or `[K, B, T]` in the original layout, as our `[B, T, K]`."""
        codes = self.tensors[f"{case['name']}/codes"]
        if codes.dim() == 2:
            codes = codes[:, None]
        return codes.permute(1, 2, 0)


@pytest.fixture(scope="module")
def vocos_fixtures() -> VocosFixtures:
    root = vocos_fixture_dir()
    if not (root / "cases.json").is_file():
        missing_fixtures(f"Vocos fixture set not found at {root} (set VALLE_VOCOS_FIXTURES to a fixture directory)")
    return VocosFixtures(root)


@pytest.fixture(scope="module")
def original_model(vocos_fixtures) -> VocosModel:
    return load_original_vocos(vocos_fixtures.root)


def random_model(**overrides) -> VocosModel:
    """A small VocosModel with all weights random and large enough that every part shapes the output."""
    values = dict(input_channels=8, hidden_size=16, intermediate_size=24, num_layers=2)
    values.update(overrides)
    model = VocosModel(VocosConfig(**values)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * (1.0 if "codebooks" in name else 0.3))
    return model


@pytest.fixture(scope="module")
def tiny_model() -> VocosModel:
    """Random weights, the released STFT (n_fft 1280, hop 320) and bandwidths."""
    return random_model()


@pytest.fixture(scope="module")
def small_stft_model() -> VocosModel:
    """Random weights and another STFT geometry (window of 3 hops), to keep sizes out of the code."""
    return random_model(n_fft=24, hop_length=8, bandwidths=[6.0, 12.0], num_codebooks=4)


def random_codes(model: VocosModel, batch: int, frames: int, levels: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.codebook_size, (batch, frames, levels), generator=generator)


def max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    return (actual - expected).abs().max().item()


# --- parity with the vocos package -------------------------------------------------------------------------------


def test_parity_with_vocos_every_case(vocos_fixtures, original_model):
    assert vocos_fixtures.cases, "the fixture set has no cases"
    failures = []
    with torch.no_grad():
        for case in vocos_fixtures.cases:
            name, codes = case["name"], vocos_fixtures.codes(case)
            features = original_model.codes_to_features(codes)
            audio = original_model(codes, bandwidth_id=case["bandwidth_id"]).audio_values
            assert list(audio.shape) == case["audio_shape"], name
            for what, actual in (("features", features), ("audio", audio)):
                diff = max_diff(actual, vocos_fixtures.tensors[f"{name}/{what}"])
                if not diff <= TOLERANCE:
                    failures.append(f"{name} {what}: max abs diff {diff:.3g}")
    assert not failures, "; ".join(failures)


def test_decode_matches_vocos_per_row(vocos_fixtures, original_model):
    """`decode` on `[T, K]` gives the 1-D waveform of each row of every case."""
    for case in vocos_fixtures.cases:
        expected = vocos_fixtures.tensors[f"{case['name']}/audio"]
        for row, codes in enumerate(vocos_fixtures.codes(case)):
            audio = original_model.decode(codes, bandwidth_id=case["bandwidth_id"])
            assert max_diff(audio, expected[row]) <= TOLERANCE, (case["name"], row)


def test_constants_the_fixture_cannot_see(tiny_model):
    """LayerNorm eps 1e-6, exact (erf) GELU and the magnitude clip at 1e2 (vocos/modules.py, vocos/heads.py).

    On random fixture weights these change the audio by less than the parity tolerance (eps 1e-5: ~5e-6, tanh GELU:
    ~1.5e-5, and the clip never engages), so they are checked here on inputs where they matter.
    """
    generator = torch.Generator().manual_seed(1)
    dim = tiny_model.config.hidden_size
    # Variance ~1e-6: the same order as eps, so a different eps changes the result by tens of percent.
    hidden = torch.randn(2, 5, dim, generator=generator) * 1e-3
    centred = hidden - hidden.mean(-1, keepdim=True)
    normed = centred / torch.sqrt(centred.square().mean(-1, keepdim=True) + 1e-6)
    bandwidth_id = torch.tensor([0, len(tiny_model.config.bandwidths) - 1])
    with torch.no_grad():
        for norm in [tiny_model.backbone.norm] + [layer.norm for layer in tiny_model.backbone.layers]:
            expected = normed * norm.scale[bandwidth_id][:, None] + norm.shift[bandwidth_id][:, None]
            assert torch.allclose(norm(hidden, bandwidth_id), expected, atol=1e-5)
        final = tiny_model.backbone.final_layer_norm
        assert torch.allclose(final(hidden), normed * final.weight + final.bias, atol=1e-5)

        points = torch.linspace(-3, 3, 61)
        exact_gelu = points * 0.5 * (1 + torch.erf(points / 2**0.5))
        for layer in tiny_model.backbone.layers:
            assert torch.allclose(layer.act(points), exact_gelu, atol=1e-6)

        # Log-magnitudes all far above log(1e2): with the clip, raising them further changes nothing.
        head = tiny_model.head
        hidden = torch.randn(1, 6, dim, generator=generator)
        bins, mask = head.n_fft // 2 + 1, torch.ones(1, 6)
        original_bias = head.out.bias.clone()
        try:
            head.out.bias[:bins] = 20.0
            assert head.out(hidden)[..., :bins].min() > math.log(1e2) + 1
            clipped = head(hidden, mask)
            head.out.bias[:bins] += 1
            raised = head(hidden, mask)
        finally:
            head.out.bias.copy_(original_bias)
    assert clipped.abs().max() > 0
    assert torch.allclose(raised, clipped, atol=1e-6)


# --- batching --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["tiny_model", "small_stft_model", "original_model"])
def test_batch_of_different_lengths_equals_rows_alone(request, model_name):
    model = request.getfixturevalue(model_name)
    hop, num_bandwidths = model.config.hop_length, len(model.config.bandwidths)
    lengths = [23, 2, 11, 1]
    codes = random_codes(model, len(lengths), max(lengths), levels=min(4, model.config.num_codebooks))
    mask = torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]
    codes[~mask] = model.config.codebook_size  # padded frames may hold anything, e.g. a stop token
    bandwidth_id = torch.arange(len(lengths)) % num_bandwidths  # one per row

    batched = model.decode(codes, bandwidth_id=bandwidth_id, lengths=lengths)
    with torch.no_grad():
        padded = model(codes, bandwidth_id=bandwidth_id, attention_mask=mask).audio_values
    for row, length in enumerate(lengths):
        alone = model.decode(codes[row, :length], bandwidth_id=int(bandwidth_id[row]))
        assert alone.shape == (length * hop,)
        assert max_diff(batched[row], alone) <= TOLERANCE, f"row {row} (length {length})"
        assert max_diff(padded[row, : length * hop], alone) <= TOLERANCE, f"row {row} (length {length})"
        assert not padded[row, length * hop :].any(), f"row {row}: samples after its end are not zero"


def test_rows_of_no_frames_decode_to_empty_audio_beside_the_others(tiny_model):
    """A batch whose rows stopped at their first step (0 frames) beside longer ones: the others decode as alone."""
    model, lengths = tiny_model, [5, 0, 3, 0]
    codes = random_codes(model, len(lengths), max(lengths), levels=min(4, model.config.num_codebooks))
    bandwidth_id = torch.arange(len(lengths)) % len(model.config.bandwidths)
    batched = model.decode(codes, bandwidth_id=bandwidth_id, lengths=lengths)
    for row, length in enumerate(lengths):
        if not length:
            assert batched[row].shape == (0,)
            continue
        alone = model.decode(codes[row, :length], bandwidth_id=int(bandwidth_id[row]))
        assert batched[row].shape == alone.shape and max_diff(batched[row], alone) <= TOLERANCE, f"row {row}"


def test_full_rows_need_no_mask(tiny_model):
    codes = random_codes(tiny_model, 2, 9, 3)
    with torch.no_grad():
        plain = tiny_model(codes, bandwidth_id=1).audio_values
        masked = tiny_model(codes, bandwidth_id=1, attention_mask=torch.ones(2, 9, dtype=torch.long)).audio_values
    assert torch.equal(plain, masked)
    assert tiny_model(codes, bandwidth_id=1, return_dict=False)[0].shape == plain.shape


def test_tiny_random_vocos_reacts_to_every_level_and_its_seed():
    """The tiny-random model's decoder: every level of the codes shapes its audio, and the seed its weights."""
    model = tiny_random_vocos()
    levels = model.config.num_codebooks
    codes, other = random_codes(model, 1, 7, levels, seed=0)[0], random_codes(model, 1, 7, levels, seed=1)[0]
    audio = model.decode(codes)
    for level in range(levels):
        changed = codes.clone()
        changed[:, level] = other[:, level]
        assert not torch.allclose(model.decode(changed), audio), level
    assert torch.equal(tiny_random_vocos().decode(codes), audio)
    assert not torch.allclose(tiny_random_vocos(seed=1).decode(codes), audio)


# --- bandwidth rule ----------------------------------------------------------------------------------------------


def test_bandwidth_id_for_levels():
    config = VocosConfig()  # the released bandwidths: 1.5, 3, 6, 12 kbps; 0.75 kbps per level
    expected = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 2, 9: 3, 16: 3}
    assert {levels: config.bandwidth_id_for_levels(levels) for levels in expected} == expected
    with pytest.raises(ValueError, match=r"17 RVQ levels need 12.75 kbps.*12 kbps"):
        config.bandwidth_id_for_levels(17)
    with pytest.raises(ValueError, match="num_levels"):
        config.bandwidth_id_for_levels(0)
    with pytest.raises(ValueError, match=r"5 RVQ levels need 3.75 kbps.*3 kbps"):
        VocosConfig(bandwidths=[1.5, 3.0]).bandwidth_id_for_levels(5)
    # the smallest fitting bandwidth, wherever the list has it
    assert VocosConfig(bandwidths=[12.0, 1.5, 6.0, 3.0]).bandwidth_id_for_levels(3) == 3
    # 0.3 kbps carries three levels of 0.1 kbps, though 0.3 / 0.1 is 2.9999999999999996 in floats
    exact = VocosConfig(bandwidths=[0.3], codebook_size=2, sampling_rate=1000, hop_length=10, n_fft=40)
    assert exact.kbps_per_level == 0.1 and exact.bandwidth_id_for_levels(3) == 0


def test_default_bandwidth_id_follows_levels(tiny_model):
    for levels, expected in ((2, 0), (4, 1), (8, 2)):
        codes = random_codes(tiny_model, 1, 5, levels)
        assert tiny_model.bandwidth_id_for_levels(levels) == expected
        with torch.no_grad():
            default = tiny_model(codes).audio_values
            explicit = tiny_model(codes, bandwidth_id=expected).audio_values
            other = tiny_model(codes, bandwidth_id=(expected + 1) % len(tiny_model.config.bandwidths)).audio_values
        assert torch.equal(default, explicit)
        assert not torch.allclose(default, other)


# --- input errors --------------------------------------------------------------------------------------------------


def test_input_errors(tiny_model):
    model, codes = tiny_model, random_codes(tiny_model, 2, 6, 4)
    size, levels = model.config.codebook_size, model.config.num_codebooks
    too_high, too_low = codes[0].clone(), codes[0].clone()
    too_high[3, 1], too_low[0, 2] = size, -1
    cases = [
        (lambda: model.decode(codes[0, :, 0]), r"codes must be .* got \(6,\)"),
        (lambda: model.decode(codes[None]), r"codes must be .* got \(1, 2, 6, 4\)"),
        (lambda: model.decode(codes.float()), "audio_codes must hold integer codes, got dtype torch.float32"),
        (lambda: model.decode(codes[0, :, :0]), rf"0 levels .* expected 1..{levels}"),
        (lambda: model.decode(torch.zeros(6, levels + 1, dtype=torch.long)), rf"{levels + 1} levels"),
        (lambda: model.decode(too_high), rf"audio_codes range \d+\.\.{size} on real frames, expected 0..{size - 1}"),
        (lambda: model.decode(too_low), rf"audio_codes range -1\.\.\d+ on real frames, expected 0..{size - 1}"),
        (lambda: model.decode(codes[0], bandwidth_id=len(model.config.bandwidths)), "bandwidth_id .* out of range"),
        (lambda: model.decode(codes[0], bandwidth_id=-1), "bandwidth_id .* out of range"),
        (lambda: model.decode(codes, bandwidth_id=torch.tensor([0, 1, 2])), "bandwidth_id must be .* shape \\(3,\\)"),
        (lambda: model.decode(codes[0], bandwidth_id=1.0), "bandwidth_id must be"),
        (lambda: model.decode(codes, lengths=[6]), r"lengths must be 2 whole numbers in 0..6"),
        (lambda: model.decode(codes, lengths=[6, -1]), r"lengths must be 2 whole numbers in 0..6"),
        (lambda: model.decode(codes, lengths=[6, 7]), r"lengths must be 2 whole numbers in 0..6"),
        # a fractional length was cut to whole frames, and a string read digit by digit, in silence
        (lambda: model.decode(codes, lengths=[6, 2.5]), r"lengths must be 2 whole numbers in 0..6"),
        (lambda: model.decode(codes, lengths="62"), r"lengths must be 2 whole numbers in 0..6"),
        (lambda: model.decode(codes[0], lengths=[6]), "lengths is only for batched codes"),
        (lambda: model(codes[0]), r"audio_codes must be \[batch, frames, levels\], got shape \(6, 4\)"),
        (lambda: model(codes, attention_mask=torch.ones(2, 5)), r"attention_mask has shape \(2, 5\)"),
        (lambda: model(codes, attention_mask=torch.tensor([[0, 1, 1, 1, 1, 1]] * 2)), "right padding"),
        (lambda: model(codes, attention_mask=torch.tensor([[1] * 6, [0] * 6])), "right padding"),
        (lambda: model(codes, attention_mask=torch.full((2, 6), 2)), "only 0 and 1"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as error:
            call()
        assert "\n" not in str(error.value), pattern


# --- configuration, init, save/load -----------------------------------------------------------------------------


def test_config_from_original_yaml(vocos_fixtures, original_model):
    original = yaml.safe_load((vocos_fixtures.root / "config.yaml").read_text())
    backbone, head = original["backbone"]["init_args"], original["head"]["init_args"]
    bandwidths = original["feature_extractor"]["init_args"]["bandwidths"]
    config = VocosConfig.from_original_yaml(vocos_fixtures.root / "config.yaml")
    assert (config.input_channels, config.hidden_size, config.intermediate_size, config.num_layers) == (
        backbone["input_channels"],
        backbone["dim"],
        backbone["intermediate_dim"],
        backbone["num_layers"],
    )
    assert (config.n_fft, config.hop_length, config.padding) == (head["n_fft"], head["hop_length"], head["padding"])
    assert config.bandwidths == bandwidths
    assert config.num_codebooks == int(max(bandwidths) / config.kbps_per_level)
    state_dict = torch.load(vocos_fixtures.root / "pytorch_model.bin", weights_only=True)
    rows = state_dict["feature_extractor.codebook_weights"].shape[0]
    assert original_model.config.num_codebooks * original_model.config.codebook_size == rows
    assert not original_model.training


def test_config_refuses_other_padding():
    with pytest.raises(ValueError, match="padding='center' is not supported: only \"same\""):
        VocosConfig(padding="center")


def test_config_refuses_an_stft_that_cannot_give_hop_samples_per_frame_and_no_bandwidths():
    """A window no longer than the hop, or one that exceeds it by an odd number, cannot be trimmed to `hop_length`
    samples a frame; without bandwidths AdaLayerNorm has no table to look up."""
    hop = VocosConfig().hop_length
    for n_fft in (hop, hop - 2, 3 * hop + 1):
        with pytest.raises(ValueError, match=f"n_fft={n_fft}, hop_length={hop}: n_fft must be even and exceed"):
            VocosConfig(n_fft=n_fft, hop_length=hop)
    with pytest.raises(ValueError, match=f"n_fft={4 * hop}, hop_length={hop + 1}: n_fft must be even"):
        VocosConfig(n_fft=4 * hop, hop_length=hop + 1)
    with pytest.raises(ValueError, match="bandwidths is empty"):
        VocosConfig(bandwidths=[])


def test_init_weights():
    config = VocosConfig(input_channels=8, hidden_size=16, intermediate_size=24, num_layers=3, num_codebooks=2)
    model = VocosModel(config)
    norms = [model.backbone.norm] + [layer.norm for layer in model.backbone.layers]
    for norm in norms:
        assert torch.equal(norm.scale, torch.ones_like(norm.scale))
        assert torch.equal(norm.shift, torch.zeros_like(norm.shift))
    for layer in model.backbone.layers:
        assert torch.allclose(layer.layer_scale, torch.full_like(layer.layer_scale, 1 / config.num_layers))
    assert torch.equal(model.head.window, torch.hann_window(config.n_fft))
    assert model.backbone.embed.weight.std() < 0.05 and not model.backbone.embed.bias.any()
    assert model.codebooks.weight.std() > 0.5


def test_save_pretrained_round_trip(tmp_path, small_stft_model):
    small_stft_model.save_pretrained(tmp_path)
    loaded = VocosModel.from_pretrained(tmp_path).eval()
    saved, expected_config = loaded.config.to_dict(), small_stft_model.config.to_dict()
    saved.pop("_name_or_path"), expected_config.pop("_name_or_path")
    assert saved == expected_config
    expected = small_stft_model.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    codes = random_codes(small_stft_model, 2, 7, 3)
    with torch.no_grad():
        output = loaded(codes, bandwidth_id=1)
        assert isinstance(output, VocosOutput)
        assert torch.equal(output.audio_values, small_stft_model(codes, bandwidth_id=1).audio_values)


# --- loading the original checkpoint -------------------------------------------------------------------------------


@pytest.fixture
def checkpoint_copy(vocos_fixtures, tmp_path):
    """A writable copy of the fixture checkpoint and a function to rewrite its state dict."""
    for name in ("config.yaml", "pytorch_model.bin"):
        shutil.copy(vocos_fixtures.root / name, tmp_path / name)

    def rewrite(change):
        state_dict = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
        change(state_dict)
        torch.save(state_dict, tmp_path / "pytorch_model.bin")

    return tmp_path, rewrite


def test_encodec_keys_are_ignored(checkpoint_copy, original_model):
    path, rewrite = checkpoint_copy
    rewrite(lambda sd: sd.update({"feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed": torch.ones(3, 2)}))
    model = load_original_vocos(path)
    codes = random_codes(model, 1, 4, 2)
    with torch.no_grad():
        assert torch.equal(model(codes).audio_values, original_model(codes).audio_values)


def test_loading_errors(checkpoint_copy, tmp_path_factory):
    path, rewrite = checkpoint_copy
    empty = tmp_path_factory.mktemp("empty")
    shutil.copy(path / "config.yaml", empty / "config.yaml")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin not found"):
        load_original_vocos(empty)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_original_vocos(empty / "missing")

    def broken(change, error, pattern):
        shutil.copy(path / "pytorch_model.bin", path / "good.bin")
        rewrite(change)
        with pytest.raises(error, match=pattern):
            load_original_vocos(path)
        shutil.copy(path / "good.bin", path / "pytorch_model.bin")

    broken(lambda sd: sd.update({"backbone.extra": torch.zeros(1)}), ValueError, "unexpected key 'backbone.extra'")
    broken(lambda sd: sd.pop("backbone.convnext.0.gamma"), ValueError, "missing key 'backbone.convnext.0.gamma'")
    broken(lambda sd: sd.pop("head.istft.window"), ValueError, "missing key 'head.istft.window'")
    broken(lambda sd: sd.pop("backbone.norm.shift.weight"), ValueError, "missing key 'backbone.norm.shift.weight'")
    broken(lambda sd: sd.pop("feature_extractor.codebook_weights"), ValueError, "missing key 'feature_extractor.cod")
    broken(
        lambda sd: sd.update({"head.out.bias": sd["head.out.bias"][:-1]}),
        ValueError,
        r"'head.out.bias' has shape \(\d+,\), the config expects",
    )
    broken(
        lambda sd: sd.update({"feature_extractor.codebook_weights": sd["feature_extractor.codebook_weights"][:-1]}),
        ValueError,
        "codebook_weights has shape",
    )
    broken(lambda sd: sd.clear() or sd.update({"x": torch.zeros(1)}), ValueError, "missing key 'feature_extractor")

    config = yaml.safe_load((path / "config.yaml").read_text())
    num_layers = config["backbone"]["init_args"]["num_layers"]
    config["backbone"]["init_args"]["num_layers"] += 1  # sizes come from the yaml: the extra block's keys are missing
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=rf"missing key 'backbone.convnext.{num_layers}\."):
        load_original_vocos(path)
    config["backbone"]["init_args"]["num_layers"] -= 1
    config["head"]["class_path"] = "vocos.heads.IMDCTCosHead"
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="section 'head' must have class_path 'vocos.heads.ISTFTHead'"):
        load_original_vocos(path)


def test_corrupt_checkpoint(checkpoint_copy):
    path, _ = checkpoint_copy
    (path / "pytorch_model.bin").write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{path / 'pytorch_model.bin'} is not a readable PyTorch checkpoint"):
        load_original_vocos(path)
    torch.save([torch.zeros(1)], path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="holds a list, not a Vocos state dict"):
        load_original_vocos(path)


# --- mutation-run survivors (tests/MUTATION.md) ----------------------------------------------------------------


def test_empty_codes_are_refused_naming_their_shape(tiny_model):
    levels = tiny_model.config.num_codebooks
    for codes in (torch.zeros(0, 3, levels, dtype=torch.long), torch.zeros(2, 0, levels, dtype=torch.long)):
        with pytest.raises(ValueError, match=re.escape(f"audio_codes is empty (shape {tuple(codes.shape)})")):
            tiny_model(codes)


def _yaml_with(vocos_fixtures, tmp_path, edit) -> Path:
    config = yaml.safe_load((vocos_fixtures.root / "config.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_yaml_without_padding_reads_same(vocos_fixtures, tmp_path):
    path = _yaml_with(vocos_fixtures, tmp_path, lambda config: config["head"]["init_args"].pop("padding", None))
    assert VocosConfig.from_original_yaml(path).padding == "same"


def test_config_yaml_with_another_encodec_is_refused(vocos_fixtures, tmp_path):
    def edit(config):
        config["feature_extractor"]["init_args"]["encodec_model"] = "encodec_48khz"

    with pytest.raises(ValueError, match="encodec_model 'encodec_48khz' is not supported"):
        VocosConfig.from_original_yaml(_yaml_with(vocos_fixtures, tmp_path, edit))


def test_checkpoint_with_a_non_tensor_value_is_refused(checkpoint_copy):
    path, _ = checkpoint_copy
    torch.save({"backbone.norm.weight": [1.0, 2.0]}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds a dict, not a Vocos state dict"):
        load_original_vocos(path)


def test_checkpoint_error_without_a_message_still_names_the_file(checkpoint_copy, monkeypatch):
    path, _ = checkpoint_copy

    def unreadable(*args, **kwargs):
        raise EOFError()

    monkeypatch.setattr(torch, "load", unreadable)
    with pytest.raises(CheckpointError, match=r"is not a readable PyTorch checkpoint \(EOFError: \)"):
        load_original_vocos(path)


def test_unreachable_hub_names_every_vocoder_choice(hub_unreachable):
    from valle_hf.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError) as error:
        load_original_vocos("nobody/no-vocos")
    assert str(error.value).startswith("could not download the Vocos decoder (nobody/no-vocos/config.yaml")
    assert str(error.value).endswith(
        "give a local copy of charactr/vocos-encodec-24khz, tiny-random (a test decoder that makes noise) or none "
        "(decode with EnCodec; None in Python), as --vocoder on the command line or vocoder= in Python")


def test_config_from_original_yaml_has_exactly_the_config_attributes(vocos_fixtures):
    """Every value read from the yaml lands on a VocosConfig attribute: nothing is saved under another name."""
    config = VocosConfig.from_original_yaml(vocos_fixtures.root / "config.yaml")
    assert set(config.to_dict()) == set(VocosConfig().to_dict())


def test_config_yaml_whose_head_and_backbone_widths_or_bandwidth_tables_disagree_is_refused(vocos_fixtures, tmp_path):
    """A checkpoint built from such a yaml cannot load; said in the yaml's words rather than as a shape mismatch."""
    def wider_head(config):
        config["head"]["init_args"]["dim"] += 1

    def one_more_table(config):
        config["backbone"]["init_args"]["adanorm_num_embeddings"] += 1

    dim = yaml.safe_load((vocos_fixtures.root / "config.yaml").read_text())["backbone"]["init_args"]["dim"]
    with pytest.raises(CheckpointError, match=f"head dim {dim + 1} differs from backbone dim {dim}"):
        VocosConfig.from_original_yaml(_yaml_with(vocos_fixtures, tmp_path, wider_head))
    with pytest.raises(CheckpointError, match="adanorm_num_embeddings is .*, expected one per bandwidth"):
        VocosConfig.from_original_yaml(_yaml_with(vocos_fixtures, tmp_path, one_more_table))


def test_features_of_padded_frames_are_zero_and_real_ones_as_unpadded(tiny_model):
    """`codes_to_features` returns zero on padded frames, as documented (they may hold any code)."""
    lengths = [5, 2]
    codes = random_codes(tiny_model, len(lengths), max(lengths), levels=3)
    mask = torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        features = tiny_model.codes_to_features(codes, attention_mask=mask)
        plain = tiny_model.codes_to_features(codes)
    for row, length in enumerate(lengths):
        assert torch.equal(features[row, :, :length], plain[row, :, :length])
        assert not features[row, :, length:].any()


def test_bandwidth_ids_of_more_than_one_dimension_are_refused(tiny_model):
    """One id per row is a 1-D tensor; a `[batch, 1]` one was flattened in silence."""
    codes = random_codes(tiny_model, 2, 3, 2)
    with pytest.raises(ValueError, match=r"bandwidth_id must be .* shape \(2, 1\)"):
        tiny_model(codes, bandwidth_id=torch.zeros(2, 1, dtype=torch.long))


def test_a_missing_relative_directory_is_not_looked_up_on_the_hub(tmp_path, monkeypatch, hub_unreachable):
    """`./vocos` names a folder, never a Hub repo: a missing one is said to be missing, not a download that failed."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="./vocos is not a directory holding config.yaml"):
        load_original_vocos("./vocos")


def test_tiny_random_vocos_leaves_the_global_random_state_alone():
    """A test or a seeded run that makes the test decoder would otherwise draw other random numbers after it."""
    state = torch.random.get_rng_state()
    tiny_random_vocos(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)

"""Shared test fixtures: the parity fixture set (found through VALLE_FIXTURES) and small models built from it."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The test models are tiny: one thread avoids intra-op overhead and contention on small shared machines.
torch.set_num_threads(1)
SHARED = REPO.parent / "shared"


def load_script(path: Path):
    """Import a script (scripts/, examples/) as a module, to call its main(argv) in-process."""
    name = f"_valle_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    return module


def fixture_dir() -> Path:
    return Path(os.environ.get("VALLE_FIXTURES", SHARED / "fixtures" / "tiny"))


def vocos_fixture_dir() -> Path:
    """The Vocos fixture set (a checkpoint in the Hub repo's layout, and cases the vocos package computed)."""
    return Path(os.environ.get("VALLE_VOCOS_FIXTURES", SHARED / "fixtures" / "vocos-tiny"))


@pytest.fixture(scope="session")
def vocos_checkpoint_dir() -> Path:
    root = vocos_fixture_dir()
    if not (root / "config.yaml").is_file():
        pytest.skip(f"Vocos fixture set not found at {root} (set VALLE_VOCOS_FIXTURES to a fixture directory)")
    return root


class FixtureSet:
    """One fixture set: the original's checkpoint, its cases (json metadata + tensors) and loss cases."""

    def __init__(self, root: Path):
        from safetensors.torch import load_file

        self.root = root
        self.checkpoint = root / "fp32.sft"
        self.meta = json.loads((root / "cases.json").read_text())
        self.tensors = load_file(str(root / "cases.safetensors"))
        self.cases = {case["name"]: case for case in self.meta["cases"]}

    def tensor(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def case_tensor(self, case: dict, key: str) -> torch.Tensor | None:
        name = case["tensors"].get(key)
        return None if name is None else self.tensors[name]

    def cases_of_kind(self, kind: str) -> list[dict]:
        return [case for case in self.meta["cases"] if case["kind"] == kind]

    def loss_cases(self):
        from safetensors.torch import load_file

        meta = json.loads((self.root / "loss_cases.json").read_text())
        return meta, load_file(str(self.root / "loss_cases.safetensors"))


# `generate` settings with every sampler off and the prompt kept whole, as before the shipped generation config held
# the original CLI's tuned defaults: tests that exercise one setting start from these, so the defaults never leak in.
PLAIN_SETTINGS = dict(temperature=1.0, repetition_penalty=1.0, input_prompt_length=0)


def original_generate_kwargs(case: dict) -> dict:
    """The settings the original ran an end-to-end fixture case with, as `generate` keyword arguments.

    Every sampler setting is passed, so the model's own (tuned) generation defaults never leak into a parity run. The
    case's prompt is stored as the codes the original used, so it is kept whole (`input_prompt_length=0`).
    """
    ar = case.get("ar_kwargs") or case["kwargs"]
    kwargs = dict(
        max_new_tokens=ar["max_steps"],
        temperature=ar["sampling_temperature"],
        min_temperature=ar["sampling_min_temperature"],
        top_p=ar["sampling_top_p"],
        top_k=ar["sampling_top_k"],
        min_p=ar["sampling_min_p"],
        repetition_penalty=ar["sampling_repetition_penalty"],
        repetition_penalty_decay=ar["sampling_repetition_penalty_decay"],
        stop_length_penalty=ar["sampling_length_penalty"],
        mirostat_tau=ar["sampling_mirostat_tau"],
        mirostat_eta=ar["sampling_mirostat_eta"],
        dry_multiplier=ar["sampling_dry_multiplier"],
        dry_base=ar["sampling_dry_base"],
        dry_allowed_length=ar["sampling_dry_allowed_length"],
    )
    for flag in ("layer_skip", "refine_on_stop"):  # off in the shipped config too; passed when a case turns one on
        if ar[f"sampling_{flag}"]:
            kwargs[flag] = True
    if ar["sampling_beam_width"] > 1:
        kwargs["num_beams"] = ar["sampling_beam_width"]
    if "nar_kwargs" in case:
        kwargs.update(
            prefix_silence=ar["prefix_silence"],
            input_prompt_prefix=ar["input_prompt_prefix"],
            input_prompt_length=0,
            max_levels=case["nar_kwargs"]["max_levels"],
            nar_temperature=case["nar_kwargs"]["sampling_temperature"],
        )
    return kwargs


@pytest.fixture(scope="session")
def fixtures() -> FixtureSet:
    root = fixture_dir()
    if not (root / "cases.json").is_file():
        pytest.skip(f"fixture set not found at {root} (set VALLE_FIXTURES to a fixture directory)")
    return FixtureSet(root)


@pytest.fixture(scope="session")
def converted(fixtures):
    """The fixture set's original checkpoint converted to our layout (float32, tiny random codec and Vocos), with
    the processor of the released tokenizer shipped in the package."""
    from valle_hf.conversion import convert_checkpoint

    return convert_checkpoint(fixtures.checkpoint, codec="tiny-random", vocoder="tiny-random")


@pytest.fixture(scope="session")
def fixture_model(converted):
    """The converted fixture model, in eval mode."""
    return converted[0]


# The released tokenizer's ids for an IPA text, as the original's tokenizer.json gives them.
HELLO_IPA = "həlˈoʊ wˈɜːld."
HELLO_IDS = [1, 22, 111, 100, 4, 37, 115, 169, 11, 2]


@pytest.fixture(scope="session")
def processor():
    """The processor of the released phoneme tokenizer shipped with the package."""
    from valle_hf.processing import VallEProcessor

    return VallEProcessor.from_tokenizer_file()


@pytest.fixture(scope="session")
def tokenizer_file() -> Path:
    """The released model's phoneme tokenizer, as the package ships it."""
    from valle_hf.tokenization import packaged_tokenizer_file

    return packaged_tokenizer_file()


def tiny_config(**overrides):
    """A tiny random VallEConfig (with a tiny codec) for tests that need no reference numbers."""
    from valle_hf.codec import tiny_random_codec
    from valle_hf.configuration import VallEConfig

    values = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=2,
                  codec_config=tiny_random_codec().config.to_dict())
    values.update(overrides)
    return VallEConfig(**values)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random model whose codec encodes (its codebooks are filled, see `tiny_random_codec`)."""
    from valle_hf.codec import tiny_random_codec
    from valle_hf.modeling import VallEForConditionalGeneration

    torch.manual_seed(0)
    model = VallEForConditionalGeneration(tiny_config()).eval()
    model.codec_model.load_state_dict(tiny_random_codec().state_dict())
    return model


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory, converted) -> Path:
    """The converted fixture model saved with its processor: a directory `from_pretrained` loads."""
    from valle_hf.conversion import save_converted

    return save_converted(*converted, tmp_path_factory.mktemp("converted"), overwrite=True)


@pytest.fixture(scope="session")
def prompt_wav() -> Path:
    return REPO / "examples" / "prompt.wav"

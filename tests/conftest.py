"""Shared test fixtures: the parity fixture set (found through VALLE_FIXTURES) and small models built from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The test models are tiny: one thread avoids intra-op overhead and contention on small shared machines.
torch.set_num_threads(1)
SHARED = REPO.parent / "shared"


def fixture_dir() -> Path:
    return Path(os.environ.get("VALLE_FIXTURES", SHARED / "fixtures" / "tiny"))


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


@pytest.fixture(scope="session")
def fixtures() -> FixtureSet:
    root = fixture_dir()
    if not (root / "cases.json").is_file():
        pytest.skip(f"fixture set not found at {root} (set VALLE_FIXTURES to a fixture directory)")
    return FixtureSet(root)


@pytest.fixture(scope="session")
def fixture_model(fixtures):
    """The fixture set's original checkpoint converted to our layout (float32, tiny random codec), in eval mode."""
    from valle_hf.conversion import convert_checkpoint

    return convert_checkpoint(fixtures.checkpoint, codec="tiny-random")


@pytest.fixture(scope="session")
def tokenizer_file() -> Path:
    path = SHARED / "reference" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"reference tokenizer not found at {path}")
    return path


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
    from valle_hf.modeling import VallEForConditionalGeneration

    torch.manual_seed(0)
    return VallEForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory, fixture_model, tokenizer_file) -> Path:
    """The fixture model saved with the reference phoneme tokenizer: a directory `from_pretrained` loads."""
    from valle_hf.conversion import save_converted

    return save_converted(fixture_model, tmp_path_factory.mktemp("converted"), tokenizer_file)


@pytest.fixture(scope="session")
def prompt_wav() -> Path:
    return REPO / "examples" / "prompt.wav"

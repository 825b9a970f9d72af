"""Opt-in oneDNN linears: the same outputs as F.linear, repacked when a weight changes, untouched for training."""

from __future__ import annotations

import pytest
import torch
from conftest import reactive_model

from valle_hf.onednn import disable_onednn_linears, enable_onednn_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.fixture
def model():
    return reactive_model(seed=3)


def _inputs(config):
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, config.text_vocab_size, (2, 6), generator=generator)
    prompt = torch.randint(0, config.audio_vocab_size, (2, 9, config.num_rvq_levels), generator=generator)
    return dict(input_ids=text, prompt_codes=prompt, temperature=0.0, max_new_tokens=8, min_new_tokens=8,
                output_audio=False, return_dict_in_generate=True, output_logits=True)


def _logits(model):
    out = model.generate(**_inputs(model.config))
    return out.codes, torch.stack(out.logits, dim=1)


def test_same_generation_as_f_linear_and_undone_by_disable(model):
    codes, logits = _logits(model)
    enable_onednn_linears(model)
    packed_codes, packed_logits = _logits(model)
    assert torch.equal(codes, packed_codes)
    torch.testing.assert_close(packed_logits, logits, rtol=1e-5, atol=1e-5)
    assert model.classifiers[0].forward.packed is not None  # the oneDNN path ran
    disable_onednn_linears(model)
    assert all("forward" not in module.__dict__ for module in model.modules())
    assert torch.equal(_logits(model)[1], logits)


def test_a_changed_weight_is_repacked(model):
    enable_onednn_linears(model)
    _logits(model)  # packs every weight
    with torch.no_grad():
        for head in model.classifiers:
            head.weight.mul_(-1.5)  # in place: the packed copies are now stale
    changed = _logits(model)[1]
    disable_onednn_linears(model)
    torch.testing.assert_close(changed, _logits(model)[1], rtol=1e-5, atol=1e-5)


def test_training_still_gets_gradients(model):
    enable_onednn_linears(model)
    model.train()
    hidden = torch.randn(3, model.config.hidden_size)
    model.classifiers[0](hidden).sum().backward()
    assert model.classifiers[0].weight.grad is not None


def test_refuses_what_it_cannot_pack(model):
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        enable_onednn_linears(model.to(torch.bfloat16))

"""oneDNN linears: by default in generate (float32 CPU), prepacked as an opt-in; the same outputs as F.linear,
repacked when a weight changes, untouched for training."""

from __future__ import annotations

import pytest
import torch
from conftest import reactive_model

from valle_hf import onednn
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
                output_audio=False, return_dict_in_generate=True, output_logits=True, nar_dtype="float32")


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


def test_generate_runs_the_linears_through_onednn_by_default_and_keeps_them_in_place(model, monkeypatch):
    applied = []
    applies = onednn._applies
    monkeypatch.setattr(onednn, "_applies", lambda x, weight: applied.append(applies(x, weight)) or applied[-1])
    codes, logits = _logits(model)
    assert applied and all(applied)  # every decoder linear of every step, float32 on the CPU
    forwards = [module.__dict__.get("forward") for module in onednn._decoder_linears(model)]
    assert all(isinstance(forward, onednn.OneDNNLinearForward) and not forward.prepack for forward in forwards)
    _logits(model)  # the same forward objects from one call to the next (a compiled model is not traced again)
    assert [module.__dict__["forward"] for module in onednn._decoder_linears(model)] == forwards
    disable_onednn_linears(model)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # F.linear only
    applied.clear()
    plain_codes, plain_logits = _logits(model)
    assert not applied and torch.equal(codes, plain_codes)
    torch.testing.assert_close(logits, plain_logits, rtol=1e-5, atol=1e-5)


def test_the_default_stands_aside_for_gradients_autocast_and_other_dtypes(model):
    head, hidden = model.classifiers[0], torch.randn(2, model.config.hidden_size)
    onednn.use_onednn_linears(model)
    assert onednn._applies(hidden, head.weight) is False  # eval, but gradients are enabled by default here
    with torch.no_grad():
        assert onednn._applies(hidden, head.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn._applies(hidden, head.weight)
        assert not onednn._applies(hidden.bfloat16(), head.weight.bfloat16())
        torch.testing.assert_close(head(hidden), torch.nn.functional.linear(hidden, head.weight, head.bias))

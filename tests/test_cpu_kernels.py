"""The CPU kernels of the decoder: oneDNN by default in generate (float32), prepacked as an opt-in; ATen's int8 kernel
for the decoding steps of int8 weights; the same outputs as the module's own product, re-derived when a weight
changes, untouched for training; float32 attention in the decoding steps of a 16-bit model."""

from __future__ import annotations

import pytest
import torch
from conftest import PLAIN_SETTINGS, reactive_model, tiny_config
from torch import nn

from valle_hf import cpu_kernels
from valle_hf.cpu_kernels import disable_onednn_linears, enable_onednn_linears
from valle_hf.streaming import AudioStreamer

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
    assert model.classifiers[0].forward.derived is not None  # the oneDNN path ran
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
    applies = cpu_kernels._applies
    monkeypatch.setattr(cpu_kernels, "_applies", lambda *args: applied.append(applies(*args)) or applied[-1])
    codes, logits = _logits(model)
    assert applied and all(applied)  # every decoder linear of every step, float32 on the CPU
    forwards = [module.__dict__.get("forward") for module in cpu_kernels._decoder_linears(model)]
    assert all(isinstance(forward, cpu_kernels.CPULinearForward) and not forward.prepack for forward in forwards)
    _logits(model)  # the same forward objects from one call to the next (a compiled model is not traced again)
    assert [module.__dict__["forward"] for module in cpu_kernels._decoder_linears(model)] == forwards
    disable_onednn_linears(model)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # F.linear only
    applied.clear()
    plain_codes, plain_logits = _logits(model)
    assert not applied and torch.equal(codes, plain_codes)
    torch.testing.assert_close(logits, plain_logits, rtol=1e-5, atol=1e-5)


def test_the_default_stands_aside_for_gradients_autocast_and_other_dtypes(model):
    head, hidden = model.classifiers[0], torch.randn(2, model.config.hidden_size)
    cpu_kernels.use_cpu_kernels(model)
    assert cpu_kernels._applies(hidden, head.weight) is False  # eval, but gradients are enabled by default here
    with torch.no_grad():
        assert cpu_kernels._applies(hidden, head.weight)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not cpu_kernels._applies(hidden, head.weight)
        assert not cpu_kernels._applies(hidden.bfloat16(), head.weight.bfloat16())
        torch.testing.assert_close(head(hidden), torch.nn.functional.linear(hidden, head.weight, head.bias))


# ---------------------------------------------------------------------------------------------------- int8 weights
def _int8_linear(in_features: int, out_features: int = 48, dtype: torch.dtype = torch.bfloat16,
                 config=None) -> nn.Linear:
    """A linear with torchao's int8 weights (`config`; default weight-only, one scale per row), as transformers'
    `TorchAoConfig` applies them."""
    pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    linear = nn.Sequential(nn.Linear(in_features, out_features)).to(dtype)
    quantize_(linear, config or Int8WeightOnlyConfig())
    return linear[0].requires_grad_(False)


def _exact(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The product the int8 weights stand for, in float32: x @ (int8 rows x their scales)^T + bias."""
    weight = linear.weight.qdata.float() * linear.weight.scale.float().reshape(-1, 1)
    return x.float() @ weight.T + linear.bias.float()


@pytest.fixture
def int8_calls(monkeypatch):
    """The input shapes of every `torch._weight_int8pack_mm` call."""
    calls, kernel = [], torch._weight_int8pack_mm
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda x, *args: calls.append(tuple(x.shape)) or kernel(x, *args))
    return calls


def test_int8_weights_take_the_int8_kernel_in_decoding_steps_only(int8_calls):
    linear = _int8_linear(128)
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(20, 1, 128, dtype=torch.bfloat16)  # 20 rows: more than the kernel is fastest at, taken anyway
    with torch.no_grad():
        torchao = forward(x)  # not a decoding step: torchao's own product
        assert not int8_calls
        with cpu_kernels.decoding_step():
            out = forward(x)
            assert int8_calls == [(20, 128)]
            forward(x.half())  # float16 and float32 activations: torchao's product (the kernel is slow with them)
            forward(x.float())
        assert len(int8_calls) == 1
    assert out.shape == (20, 1, 48) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), _exact(linear, x), rtol=1e-2, atol=2e-2)  # bfloat16 output
    torch.testing.assert_close(out, torchao, rtol=2e-2, atol=3e-2)
    with cpu_kernels.decoding_step():
        forward(x.requires_grad_())  # an input that wants gradients: torchao's product, which has them
    assert len(int8_calls) == 1


def test_int8_weights_of_a_float32_model_take_torchaos_product(int8_calls):
    """torchao's int8 weight of a float32 model reports float32: it is no weight for oneDNN's float32 product (which
    raised NotImplementedError), and float32 activations are none for the int8 kernel."""
    linear = _int8_linear(128, dtype=torch.float32)
    assert linear.weight.dtype == torch.float32
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(3, 128)
    with torch.no_grad():
        for step in (False, True):
            with cpu_kernels.decoding_step(step):
                torch.testing.assert_close(forward(x), _exact(linear, x), rtol=1e-4, atol=1e-4)
    assert not int8_calls


def test_the_int8_kernel_follows_changed_scales_and_skips_widths_it_cannot_read(int8_calls):
    linear = _int8_linear(128)
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(1, 128, dtype=torch.bfloat16)
    with torch.no_grad(), cpu_kernels.decoding_step():
        forward(x)
        linear.weight.scale.mul_(2)  # in place: the scales the kernel was handed are stale
        torch.testing.assert_close(forward(x).float(), _exact(linear, x), rtol=1e-2, atol=2e-2)
        narrow, rows = _int8_linear(96), x[:, :96]  # not a multiple of the kernel's safe width
        out = cpu_kernels.CPULinearForward(narrow)(rows)
        torch.testing.assert_close(out.float(), _exact(narrow, rows), rtol=1e-2, atol=2e-2)
        assert len(int8_calls) == 2
        linear.weight = narrow.weight  # the same forward, another weight: checked afresh
        torch.testing.assert_close(forward(rows).float(), _exact(narrow, rows) - narrow.bias + linear.bias,
                                   rtol=1e-2, atol=2e-2)
    assert len(int8_calls) == 2


@pytest.mark.parametrize("scheme", ["scales per group", "activations quantized too"])
def test_int8_weights_the_kernel_cannot_multiply_take_torchaos_product(int8_calls, scheme):
    """The kernel applies one scale per output row to unquantized activations: int8 weights with a scale per group
    of inputs, or whose activations torchao quantizes as well, keep torchao's product in a decoding step."""
    pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    config = {"scales per group": lambda: Int8WeightOnlyConfig(granularity=PerGroup(32)),
              "activations quantized too": Int8DynamicActivationInt8WeightConfig}[scheme]()
    linear = _int8_linear(128, config=config)
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(3, 1, 128, dtype=torch.bfloat16)
    with torch.no_grad(), cpu_kernels.decoding_step():
        assert torch.equal(forward(x), torch.nn.functional.linear(x, linear.weight, linear.bias))
    assert not int8_calls


# ------------------------------------------------------------------------- float32 products of 16-bit and int8 weights
@pytest.fixture
def float32_products(monkeypatch):
    """Pretend the CPU multiplies 16-bit matrices slowly (but those of the dtypes put in `.fast`), and record in
    `.calls`, for each float32 product oneDNN runs, its rows, whether it ran in a cached decoding step, and its input's
    dtype."""
    from types import SimpleNamespace

    from valle_hf import hardware

    record, product = SimpleNamespace(calls=[], fast=set()), torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: dtype == torch.float32 or dtype in record.fast)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda x, *args: record.calls.append(
        (x.shape[0], cpu_kernels._DECODING_STEP.get(), x.dtype)) or product(x, *args))
    return record


@pytest.mark.parametrize("kind", ["bfloat16", "float16", "int8", "int8 scales per group"])
def test_16bit_and_int8_weights_multiply_in_float32_outside_decoding_steps_on_a_cpu_slow_at_16bit(float32_products,
                                                                                                  kind):
    """Where the CPU has no fast 16-bit matrix products (an AVX2-only CPU), a pass that is not a cached decoding step
    (the prefill, the NAR) multiplies in float32 and rounds back; decoding steps, gradients and CPUs with fast 16-bit
    products keep the product they had."""
    if kind.startswith("int8"):
        pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
        from torchao.quantization import Int8WeightOnlyConfig
        from torchao.quantization.granularity import PerGroup

        linear = _int8_linear(128, config=Int8WeightOnlyConfig(granularity=PerGroup(32)) if "group" in kind else None)
    else:
        linear = nn.Linear(128, 48).to(getattr(torch, kind))
    linear.requires_grad_(False)
    weight = linear.weight.dequantize() if kind.startswith("int8") else linear.weight  # what torchao multiplies by
    x = torch.randn(20, 1, 128).to(weight.dtype)
    exact = torch.nn.functional.linear(x.float(), weight.float(), linear.bias.float())
    forward = cpu_kernels.CPULinearForward(linear)
    with torch.no_grad():
        out = forward(x)
        assert float32_products.calls == [(20, False, torch.float32)]
        assert out.shape == (20, 1, 48) and out.dtype == x.dtype
        torch.testing.assert_close(out, exact.to(x.dtype), rtol=1e-2, atol=1e-2)  # rounded once, from float32
        with cpu_kernels.decoding_step():
            forward(x)
        float32_products.fast = {torch.bfloat16}  # fast bfloat16 products only: float16 ones are still widened
        forward(x)
        float32_products.fast = {torch.bfloat16, torch.float16}
        forward(x)
    forward(x.requires_grad_())
    assert len(float32_products.calls) == (2 if kind == "float16" else 1)


def test_a_widened_int8_weight_is_its_exact_float32_value(float32_products):
    """The float32 product of int8 weights multiplies int8 rows times their float32 scales, exactly: scaling them in
    bfloat16 (as torchao's dequantize does) rounds every weight, which the output's tolerance alone would not see."""
    linear = _int8_linear(128)
    exact = nn.Linear(128, 48).requires_grad_(False)
    with torch.no_grad():
        exact.weight.copy_(linear.weight.qdata.float() * linear.weight.scale.float().reshape(-1, 1))
        exact.bias.copy_(linear.bias.float())
        x = torch.randn(20, 128, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
        widened = cpu_kernels.CPULinearForward(linear)(x)
        assert float32_products.calls == [(20, False, torch.float32)]
        assert torch.equal(widened, cpu_kernels.CPULinearForward(exact)(x.float()).to(torch.bfloat16))


def test_int8_weights_with_an_activation_pre_scale_keep_torchaos_product(int8_calls, float32_products):
    """torchao multiplies the activations by a weight's `act_pre_scale` (AWQ, SmoothQuant) before its int8 product:
    neither the int8 kernel nor the widened product applies it, so such a weight keeps torchao's product."""
    linear = _int8_linear(128)
    linear.weight.act_pre_scale = torch.full((128,), 2.0, dtype=torch.bfloat16)
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(3, 1, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        for step in (False, True):
            with cpu_kernels.decoding_step(step):
                assert torch.equal(forward(x), torch.nn.functional.linear(x, linear.weight, linear.bias))
    assert not int8_calls and not float32_products.calls


def test_widened_products_leave_no_gradient_out_and_follow_a_changed_weight(float32_products):
    """oneDNN's product has no gradient: a trainable weight or bias behind a frozen input (a layer trained after
    frozen ones) keeps the module's own product. A weight cast in place, or replaced, is checked again."""
    x = torch.randn(5, 64, dtype=torch.bfloat16)  # wants no gradient
    linear = nn.Linear(64, 32).to(torch.bfloat16)
    forward = cpu_kernels.CPULinearForward(linear)
    forward(x).float().sum().backward()
    linear.weight.requires_grad_(False)
    forward(x).float().sum().backward()  # the bias alone trains
    assert linear.weight.grad is not None and linear.bias.grad is not None and not float32_products.calls
    head = nn.Linear(64, 32)  # float32, the bias alone trainable: oneDNN's product would leave it without a gradient
    head.weight.requires_grad_(False)
    cpu_kernels.CPULinearForward(head)(x.float()).sum().backward()
    assert head.bias.grad is not None and not float32_products.calls
    plain = nn.Linear(64, 32)
    forward = cpu_kernels.CPULinearForward(plain)
    forward(x.float())  # gradients wanted: the module's own product, the float32 weight checked (not widened)
    plain.to(torch.bfloat16)  # in place: the same weight object in another dtype
    with torch.no_grad():
        forward(x)
        assert len(float32_products.calls) == 1
        pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        # another object of the same dtype that must not be widened: torchao quantizes its activations too
        plain.weight = _int8_linear(64, 32, config=Int8DynamicActivationInt8WeightConfig()).weight
        forward(x)
    assert len(float32_products.calls) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_row_alone_gets_the_product_it_gets_among_others(float32_products, dtype):
    """oneDNN takes another kernel for a single row, whose float32 sums differ in their last bits at the released
    model's widths: outside decoding steps (a stream's chunk of one frame, a batch-1 head) a row gets what a batch or
    the whole NAR gives it."""
    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(1024, 4096).requires_grad_(False).to(dtype)
    forward = cpu_kernels.CPULinearForward(linear)
    x = torch.randn(64, 1024, generator=generator).to(dtype)
    with torch.no_grad():
        assert torch.equal(forward(x[:1]), forward(x)[:1])
    assert len(float32_products.calls) == 2  # through oneDNN (widened, in bfloat16)


def test_generate_multiplies_a_16bit_models_prefill_and_nar_in_float32_on_a_cpu_slow_at_16bit(model,
                                                                                             float32_products):
    model = model.to(torch.bfloat16)
    inputs = dict(_inputs(model.config), nar_dtype="auto")
    slow = model.generate(**inputs).codes
    assert float32_products.calls and not any(step for _, step, _ in float32_products.calls)  # never a decoding step
    per_pass = 7 * model.config.num_hidden_layers + 1  # the decoder's linears and a head
    assert len(float32_products.calls) == model.config.num_rvq_levels * per_pass  # the prefill, each NAR level
    float32_products.calls.clear()
    float32_products.fast = {torch.bfloat16}
    fast = model.generate(**inputs).codes
    assert not float32_products.calls
    assert (slow == fast).float().mean() > 0.5  # the same products up to bfloat16 rounding


@pytest.fixture(scope="module")
def int8_model():
    """A tiny reactive model with int8 decoder weights (through transformers' `TorchAoConfig`) and bfloat16
    activations, at widths the int8 kernel takes."""
    pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
    from valle_hf.loading import _quantized

    config = tiny_config(hidden_size=64, intermediate_size=128)
    return _quantized(reactive_model(config, seed=3), torch.bfloat16, "int8")


def test_generate_runs_int8_steps_through_the_int8_kernel(int8_model, int8_calls):
    model = int8_model
    assert type(model.model.backbone.layers[0].mlp.down_proj.weight).__name__ == "Int8Tensor"
    inputs = _inputs(model.config)
    codes = model.generate(**inputs).codes
    batch, steps = inputs["input_ids"].shape[0], inputs["max_new_tokens"]
    per_step = 7 * model.config.num_hidden_layers  # every decoder linear; the heads keep their weights
    cached_steps = steps - 1  # the first token comes from the prefill, which torchao multiplies
    assert int8_calls.count((batch, 64)) + int8_calls.count((batch, 128)) == cached_steps * per_step
    assert len(int8_calls) == cached_steps * per_step  # neither the prefill nor the NAR
    int8_calls.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_kernels, "_int8_inputs_suit", lambda x: False)
        plain = model.generate(**inputs).codes
    assert not int8_calls
    assert (codes == plain).float().mean() > 0.5  # the same products up to bfloat16 rounding


def test_int8_decoding_gives_a_seeded_row_alone_what_it_gives_in_a_batch_and_streams_exactly(int8_model, int8_calls):
    class Chunks(AudioStreamer):
        def put(self, chunk):
            pass

    config, rows, steps = int8_model.config, 18, 6  # more rows per step than the int8 kernel is fastest at
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(3, config.text_vocab_size, (rows, 6), generator=generator)
    prompt = torch.randint(0, config.audio_vocab_size, (rows, 9, config.num_rvq_levels), generator=generator)
    settings = dict(PLAIN_SETTINGS, nar_dtype="auto", max_new_tokens=steps, min_new_tokens=steps, output_audio=False,
                    return_dict_in_generate=True)
    batch = int8_model.generate(input_ids=text, prompt_codes=prompt, seeds=list(range(rows)), **settings).codes
    assert (rows, 64) in int8_calls
    for row in (0, rows - 1):
        alone = int8_model.generate(input_ids=text[row:row + 1], prompt_codes=prompt[row:row + 1], seeds=[row],
                                    **settings).codes
        assert torch.equal(alone[0], batch[row])
    greedy = dict(settings, temperature=0.0, output_audio=True, audio_backend="encodec")
    expected = int8_model.generate(input_ids=text[:2], prompt_codes=prompt[:2], **greedy).codes
    streamer = Chunks(chunk_seconds=1 / config.frame_rate)  # chunks of one frame: one position per row
    streamed = int8_model.generate(input_ids=text[:2], prompt_codes=prompt[:2], audio_streamer=streamer, **greedy)
    assert torch.equal(streamed.codes, expected)


# ---------------------------------------------------------------------------------------------------- attention
def _attention_inputs(dtype):
    """One query per row over 37 cached positions, 4 heads; the second row is left-padded (masked) for 11."""
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 1, 16, generator=generator).to(dtype)
    key, value = (torch.randn(2, 4, 37, 16, generator=generator).to(dtype) for _ in range(2))
    mask = torch.ones(2, 1, 1, 37, dtype=torch.bool)
    mask[1, ..., :11] = False
    return query, key, value, mask


@pytest.mark.parametrize("additive", [False, True], ids=["bool mask", "additive mask"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_decoding_steps_attend_in_float32_and_other_passes_as_transformers_sdpa(dtype, additive):
    """A boolean mask, or an additive one in the model's dtype (as a caller's 4-D mask may come)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = nn.Module()
    query, key, value, mask = _attention_inputs(dtype)
    if additive:
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    with torch.no_grad():
        stock = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)[0]
        in_float32 = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                            mask.float() if additive else mask, scaling=0.25)[0]
        assert torch.equal(cpu_kernels.sdpa_attention(module, query, key, value, mask, scaling=0.25)[0], stock)
        with cpu_kernels.decoding_step():
            stepped = cpu_kernels.sdpa_attention(module, query, key, value, mask, scaling=0.25)[0]
    assert stepped.dtype == dtype and torch.equal(stepped, in_float32.to(dtype))
    torch.testing.assert_close(stepped, stock, rtol=0, atol=1e-2)  # the same attention, up to 16-bit rounding


def test_generate_attends_over_the_cache_in_float32_in_every_16bit_decoding_step(model, monkeypatch):
    """The backbone's "sdpa" is `sdpa_attention`, from construction and after switching implementations; the
    prefill and the NAR keep the model's dtype."""
    import torch.nn.functional as F

    calls, sdpa = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda query, *args, **kwargs: calls.append((query.shape[2], query.dtype)) or sdpa(
                            query, *args, **kwargs))
    model = model.to(torch.bfloat16)
    inputs = _inputs(model.config)
    cached_steps = (inputs["max_new_tokens"] - 1) * model.config.num_hidden_layers
    for switch in (None, "eager", "sdpa"):
        if switch:
            model.set_attn_implementation(switch)
        calls.clear()
        model.generate(**inputs)
        if switch == "eager":
            assert not calls
            continue
        assert [dtype for length, dtype in calls if length == 1] == [torch.float32] * cached_steps
        assert {dtype for length, dtype in calls if length > 1} == {torch.bfloat16}  # the prefill and the NAR

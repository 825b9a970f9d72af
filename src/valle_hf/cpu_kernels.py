"""The CPU kernels of the decoder at inference: oneDNN for float32 linears, ATen's int8 matrix-vector kernel for int8
weights, float32 products for the many-row passes of 16-bit and int8 weights on CPUs without fast 16-bit products, and
float32 attention for the cached decoding steps of a 16-bit model.

A cached decoding step streams every weight once, so its speed is the speed at which the matrix-vector products read
memory, and the default kernels read it slowly on the CPU:

* float32: `F.linear` (MKL's sgemm) reaches well below the memory's bandwidth; oneDNN's inner product on the same
  weights, in their own layout, gets much closer (about 1.6x faster per step on the benchmark machine, no extra
  memory).
* int8 weight-only (torchao's `Int8WeightOnlyConfig`, through transformers' `TorchAoConfig`): torchao's eager linear
  converts the whole int8 weight to the activations' dtype at every call, then multiplies, so it reads more bytes than
  float32 does. ATen's `_weight_int8pack_mm` multiplies the int8 weight directly and applies the per-row scales, the
  same product up to bfloat16 rounding (in about half of float32's time per step here). Over many rows (the prefill,
  the NAR's thousand) torchao's own product is faster. The two round differently, so the choice is made per pass, never
  per row count: the kernel takes every cached decoding step (`decoding_step`, one new position per row, whatever the
  batch size), torchao everything else. A row then gets the same products alone or in any batch, and a streamed NAR
  chunk the same as the whole NAR.

The passes over many rows (the prefill, the NAR's thousand) are bound by compute instead, and a CPU without bfloat16
matrix hardware (no AMX, no AVX512-BF16: an AVX2-only AMD Zen 3, say) multiplies 16-bit matrices several times slower
than float32 ones; torchao's int8 product, which converts its weights to bfloat16 first, as slowly. There every pass
that is not a cached decoding step multiplies in float32: each weight converted (int8 ones dequantized) at the call,
the result rounded back to the activations' dtype (`valle_hf.hardware.cpu_multiplies_fast`). Again a choice per pass.

So `generate` installs `CPULinearForward` on the decoder's linears (`use_cpu_kernels`), and each call takes the kernel
that applies: without gradients on the CPU, outside autocast and torch.compile; everywhere else the linears run as
they would without it.

Attention over the KV cache: PyTorch's CPU SDPA kernel is several times slower for one bfloat16 or float16 query than
for float32, so much that converting the cached keys and values to float32 and attending in float32 takes about a
third of its time (at 280 and at 1,000 cached positions, on the benchmark machine without AMX). So the backbone's
"sdpa" is transformers' SDPA with one change (`sdpa_attention`): in a cached decoding step on the CPU, 16-bit queries,
keys and values are multiplied in float32 (the conversion is exact; the output is rounded back), which is both faster
and more precise. Everything else runs transformers' SDPA unchanged.

The opt-in `enable_onednn_linears(model)` (CLI `--onednn`) also prepacks each float32 weight once into oneDNN's
blocked layout, which is faster again for batches of a few rows (about 1.6x at 8 rows), at the price of a second copy
of those weights (0.8 GB for the released model in float32):

    from valle_hf.cpu_kernels import enable_onednn_linears
    enable_onednn_linears(model)   # disable_onednn_linears(model) undoes it

A weight that changes (loading, LoRA merging, training) is repacked or rescaled on its next use, so no kernel ever
serves stale weights.
"""

from __future__ import annotations

import contextlib
import weakref
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from . import hardware
from .entropix import record_attention
from .errors import MissingDependencyError, VallEValueError

__all__ = [
    "SDPA",
    "CPULinearForward",
    "backbone_attention",
    "decoding_step",
    "disable_onednn_linears",
    "enable_onednn_linears",
    "sdpa_attention",
    "use_cpu_kernels",
]

# The batch size oneDNN is told to pack for; that layout serves batch 1 at least as well as one packed for 1 row.
_PACKED_FOR_ROWS = 8
# Whether the passes running now are cached decoding steps (`decoding_step`).
_DECODING_STEP: ContextVar[bool] = ContextVar("valle_hf_decoding_step", default=False)
# The int8 kernel reads its rows in vector-wide blocks: with an input width that is not a multiple of the block it
# reads past the end of the row (torch 2.13 crashed on such widths now and then). The released model's are 1024 and
# 4096; 64 is a multiple of every vector width.
_INT8_WIDTH_MULTIPLE = 64


def decoding_step(active: bool = True):
    """A context manager that marks the passes inside as cached decoding steps (if `active`): one new position per row
    through every weight, which int8 weights then multiply with ATen's int8 matrix-vector kernel (2.4x faster than
    torchao's product at one row on the benchmark machine, about even at 16 rows, slower from 64 on), and whose
    attention runs in float32 on the CPU (`sdpa_attention`).
    `VallEForConditionalGeneration.forward` marks its level-0 single-position passes. Under torch.compile it marks
    nothing (inductor chooses its own kernels), so that a compiled forward stays one graph."""
    if not active or torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return _marked_decoding_step()


@contextlib.contextmanager
def _marked_decoding_step():
    token = _DECODING_STEP.set(True)
    try:
        yield
    finally:
        _DECODING_STEP.reset(token)


def _inference_on_cpu(x: torch.Tensor, *parameters: torch.Tensor | None) -> bool:
    """Whether `x` is multiplied on the CPU with no gradient to compute for it or for `parameters` (the oneDNN
    product has none: a trainable weight or bias would be left without one), outside autocast and torch.compile."""
    return (
        x.is_cpu
        and not (torch.is_grad_enabled()  # generate runs without: the tensors are looked at only in training
                 and any(tensor is not None and tensor.requires_grad for tensor in (x, *parameters)))
        and not torch.is_autocast_enabled("cpu")  # autocast casts the weights itself (the NAR)
        and not torch.compiler.is_compiling()  # inductor chooses its own kernels
    )


def _plain(weight: torch.Tensor) -> bool:
    """Whether `weight` holds its values as they are: not a quantized tensor subclass (torchao's reports the dtype of
    its activations)."""
    return type(weight) in (torch.Tensor, nn.Parameter)


def _applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether oneDNN's float32 inner product can stand in for `F.linear(x, weight, bias)` here."""
    return (
        x.dtype == torch.float32 and weight.dtype == torch.float32 and _plain(weight)
        and _inference_on_cpu(x, weight, bias)
    )


def _int8_weight_only(weight: torch.Tensor) -> bool:
    """Whether `weight` is torchao's weight-only int8 (nothing applied to the activations): its product is the
    activations times its dequantized rows."""
    return (
        type(weight).__name__ == "Int8Tensor"  # torchao's, by name: torchao is an optional dependency
        and getattr(weight, "act_quant_kwargs", True) is None
        and getattr(weight, "act_pre_scale", True) is None
    )


def _int8_weight_suits(weight: torch.Tensor) -> bool:
    """Whether `_weight_int8pack_mm` can multiply a weight-only int8 `weight` (torchao's, symmetric: no zero point):
    one scale per output row, contiguous int8 data, and an input width the kernel reads safely."""
    qdata = getattr(weight, "qdata", None)
    return (
        _int8_weight_only(weight)
        and qdata is not None and qdata.is_contiguous() and hasattr(weight, "scale")
        and tuple(getattr(weight, "block_size", ())) == (1, weight.shape[-1])
        and weight.shape[-1] % _INT8_WIDTH_MULTIPLE == 0
    )


def _widenable(weight: torch.Tensor) -> bool:
    """Whether `weight` has a float32 form with the same product: a plain 16-bit weight, or weight-only int8."""
    if _plain(weight):
        return weight.dtype in (torch.bfloat16, torch.float16)
    return _int8_weight_only(weight)


def _widened_inputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether 16-bit activations `x` are multiplied in float32 here: in a pass that is not a cached decoding step,
    on a CPU without fast products of their dtype (`hardware.widened_to_float32`)."""
    return (
        not _DECODING_STEP.get()  # first: the cheapest test, and every 16-bit decoding step's answer
        and hardware.widened_to_float32(x.dtype, x.device) and _inference_on_cpu(x, weight, bias)
    )


def _int8_inputs_suit(x: torch.Tensor) -> bool:
    """Whether the int8 kernel takes `x`: inference on the CPU in a decoding step, with bfloat16 activations (with
    float16 or float32 inputs it is several times slower than torchao's product)."""
    return x.dtype == torch.bfloat16 and _DECODING_STEP.get() and _inference_on_cpu(x)


def _onednn_product(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's float32 inner product of `rows` [M, in_features]. oneDNN takes another kernel for a single row, whose
    sums differ in their last bits from the same row's among others: outside decoding steps one row is multiplied as
    two, so that a stream's chunk of one frame gets what the whole NAR gives it. A decoding step keeps the one-row
    kernel, which reads the weights nearly twice as fast (a row's step alone and in a batch then differ in the last
    bits of its logits)."""
    if rows.shape[0] == 1 and not _DECODING_STEP.get():
        return torch.ops.mkldnn._linear_pointwise(rows.expand(2, -1), weight, bias, "none", [], "")[:1]
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")


class CPULinearForward:
    """Replaces one `nn.Linear`'s forward (like accelerate's hooks), keeping the module and its state dict as is: the
    fast CPU kernel where one applies (see the module's docstring), the module's own product elsewhere.

    A decoding step calls every linear once, so what can be is decided once per weight rather than per call: the
    packed float32 weight or the int8 weight's scales (`derived`, re-derived when their source changes in place),
    and whether a weight object suits the int8 kernel or a float32 product (checked again when the module holds
    another weight).
    """

    def __init__(self, module: nn.Linear, prepack: bool = False):
        self.module, self.prepack = module, prepack
        self.derived, self.derived_from = None, None  # the packed float32 weight, or the int8 weight's scales
        # the weight (and its dtype, which `.to` changes in place) last checked for the int8 kernel and for widening
        self._checked: tuple[weakref.ref, torch.dtype] | None = None
        self._int8_suits = self._widenable = False

    def _derive(self, source: torch.Tensor, key, make) -> torch.Tensor:
        """`make(source)`, kept until `source` (or `key`) changes."""
        key = (source.data_ptr(), source._version, source.device, key)
        if key != self.derived_from:
            self.derived, self.derived_from = make(source), key
        return self.derived

    def _check(self, weight: torch.Tensor) -> None:
        if self._checked is None or self._checked[0]() is not weight or self._checked[1] != weight.dtype:
            self._checked = weakref.ref(weight), weight.dtype
            self._int8_suits, self._widenable = _int8_weight_suits(weight), _widenable(weight)

    def _int8_applies(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether `_weight_int8pack_mm` stands in for torchao's linear on `weight` here."""
        self._check(weight)
        return self._int8_suits and _int8_inputs_suit(x)

    def _widens(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
        """Whether the product with `weight` runs in float32 here."""
        self._check(weight)
        return self._widenable and _widened_inputs(x, weight, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module
        weight, bias = module.weight, module.bias
        if torch.compiler.is_compiling():  # inductor chooses its own kernels; the checks below break its graph
            return F.linear(x, weight, bias)
        if _applies(x, weight, bias):
            if self.prepack:
                weight = self._derive(weight, weight.dtype, self._pack)
            flat = _onednn_product(x.reshape(-1, x.shape[-1]), weight, bias)
        elif self._int8_applies(x, weight):
            scales = self._derive(weight.scale, x.dtype, lambda scale: scale.reshape(-1).to(x.dtype))
            flat = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).contiguous(), weight.qdata, scales)
            if bias is not None:
                flat += bias  # in place, as torchao adds it: the output keeps the activations' dtype
        elif self._widens(x, weight, bias):
            flat = _onednn_product(x.reshape(-1, x.shape[-1]).float(), self._float32(weight),
                                   None if bias is None else bias.float()).to(x.dtype)
        else:
            return F.linear(x, weight, bias)
        return flat.view(*x.shape[:-1], flat.shape[-1])

    def _float32(self, weight: torch.Tensor) -> torch.Tensor:
        """A float32 copy of a 16-bit or int8 `weight`: int8 rows converted, then scaled in place, where the int8 kernel
        could take them (torchao's `dequantize` makes a bfloat16 copy first, then a second one; and int8 times float32
        in one product runs 2.5x slower than these two passes), else dequantized."""
        if _plain(weight):
            return weight.float()
        if self._int8_suits:
            return weight.qdata.float().mul_(weight.scale.reshape(-1, 1).float())
        return weight.dequantize().float()

    @staticmethod
    def _pack(weight: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(weight, _PACKED_FOR_ROWS)


# The backbone's name for `sdpa_attention` in transformers' registries of attention and mask functions.
SDPA = "valle_sdpa"


def sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, **kwargs):
    """transformers' SDPA attention (`sdpa_attention_forward`: the same arguments, shapes and return), except in a
    cached decoding step on the CPU with bfloat16 or float16 activations: there the query, keys and values are
    multiplied in float32 and the output `[B, L, heads, head_dim]` is rounded back to the query's dtype. While
    entropix samples, it also hands the last position's scores to `valle_hf.entropix.record_attention`."""
    record_attention(module, query, key, attention_mask, kwargs.get("scaling"))
    # the context variable last: torch.compile cannot read one (`_inference_on_cpu` is False while it compiles)
    if query.dtype in (torch.bfloat16, torch.float16) and _inference_on_cpu(query) and _DECODING_STEP.get():
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        output, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                                 **kwargs)
        return output.to(query.dtype), weights
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def backbone_attention(implementation: str | None) -> str | None:
    """The attention implementation the backbone runs for a requested one: `SDPA` (`sdpa_attention`) for "sdpa",
    any other as it is."""
    return SDPA if implementation == "sdpa" else implementation


AttentionInterface.register(SDPA, sdpa_attention)
AttentionMaskInterface.register(SDPA, sdpa_mask)  # the masks transformers builds for "sdpa"


def _decoder_linears(model) -> list[nn.Linear]:
    """The linears a decoding step runs: every one of the backbone and the classifier heads."""
    modules = list(model.model.backbone.modules()) + list(model.classifiers)
    return [module for module in modules if type(module) is nn.Linear]  # not adapter-wrapped layers


def _install(linears: list[nn.Linear], prepack: bool) -> list[nn.Linear]:
    """Give each linear without a replaced forward a `CPULinearForward`; returns the ones it changed."""
    changed = [module for module in linears if "forward" not in module.__dict__]
    for module in changed:
        module.forward = CPULinearForward(module, prepack)
    return changed


def enable_onednn_linears(model):
    """Run the model's decoder linears through oneDNN on prepacked weights (CPU, float32; a second copy of those
    weights); returns the model. Raises `VallEValueError` for another device or dtype."""
    linears = _decoder_linears(model)
    weight = linears[0].weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise VallEValueError(f"oneDNN linears need an fp32 model on the CPU, got {weight.dtype} on {weight.device}")
    if not torch.backends.mkldnn.is_available():
        raise MissingDependencyError("this torch build has no oneDNN (mkldnn) support: drop --onednn, or install a "
                                     "torch build with it (the CPU wheels have it)")
    disable_onednn_linears(model)
    _install(linears, prepack=True)
    return model


def disable_onednn_linears(model):
    """Back to each decoder linear's own forward (until the next `generate`), freeing any packed copies; returns the
    model."""
    for module in _decoder_linears(model):
        if isinstance(module.__dict__.get("forward"), CPULinearForward):
            del module.forward
    return model


def use_cpu_kernels(model):
    """Give the model's decoder linears the default forward: the fast CPU kernel where one applies (see the module's
    docstring), their own product elsewhere; returns the model. `generate` calls it. Linears whose forward is already
    replaced (`enable_onednn_linears`) are left as they are, and the forwards stay in place afterwards, so that a
    compiled model sees the same modules from one call to the next."""
    if torch.backends.mkldnn.is_available():
        _install(_decoder_linears(model), prepack=False)
    return model

"""The decoder's linear layers through oneDNN's inner product on the CPU (float32 inference).

A cached decoding step streams every weight once, so its speed is the speed at which the matrix-vector products read
memory. Through `F.linear` (MKL's sgemm) a CPU reaches well below its bandwidth; oneDNN's inner product on the same
weights, in their own layout, gets much closer (about 1.7x faster per step on the benchmark machine, and no extra
memory). So `generate` runs the linears through oneDNN by default (`use_onednn_linears`), wherever it applies: float32
on the CPU, without gradients, outside autocast and torch.compile; everywhere else they run `F.linear` as usual.

The opt-in `enable_onednn_linears(model)` (CLI `--onednn`) also prepacks each weight once into oneDNN's blocked
layout, which is faster again for batches of a few rows (about 1.6x at 8 rows), at the price of a second copy of
those weights (0.8 GB for the released model in float32):

    from valle_hf.onednn import enable_onednn_linears
    enable_onednn_linears(model)   # disable_onednn_linears(model) undoes it

A weight that changes (loading, LoRA merging, training) is repacked on its next use, so packing never serves stale
weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MissingDependencyError, VallEValueError

__all__ = ["OneDNNLinearForward", "disable_onednn_linears", "enable_onednn_linears", "use_onednn_linears"]

# The batch size oneDNN is told to pack for; that layout serves batch 1 at least as well as one packed for 1 row.
_PACKED_FOR_ROWS = 8


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's float32 inner product can stand in for `F.linear(x, weight)` here."""
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        and not torch.is_autocast_enabled("cpu")  # autocast casts the weights itself (the NAR)
        and not torch.compiler.is_compiling()  # inductor chooses its own kernels
    )


class OneDNNLinearForward:
    """Replaces one `nn.Linear`'s forward (like accelerate's hooks), keeping the module and its state dict as is:
    oneDNN's inner product where it applies (on the weight itself, or with `prepack` on a packed copy), `F.linear`
    elsewhere."""

    def __init__(self, module: nn.Linear, prepack: bool = False):
        self.module, self.prepack = module, prepack
        self.packed, self.packed_from = None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.module.weight
        if not _applies(x, weight):
            return F.linear(x, weight, self.module.bias)
        if self.prepack:
            source = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
            if source != self.packed_from:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, _PACKED_FOR_ROWS)
                self.packed_from = source
            weight = self.packed
        flat = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, self.module.bias, "none", [], "")
        return flat.reshape(*x.shape[:-1], self.module.out_features)


def _decoder_linears(model) -> list[nn.Linear]:
    """The linears a decoding step runs: every one of the backbone and the classifier heads."""
    modules = list(model.model.backbone.modules()) + list(model.classifiers)
    return [module for module in modules if type(module) is nn.Linear]  # not quantized or adapter-wrapped layers


def _install(linears: list[nn.Linear], prepack: bool) -> list[nn.Linear]:
    """Give each linear without a replaced forward a `OneDNNLinearForward`; returns the ones it changed."""
    changed = [module for module in linears if "forward" not in module.__dict__]
    for module in changed:
        module.forward = OneDNNLinearForward(module, prepack)
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
    """Back to `F.linear` for every decoder linear (until the next `generate`), freeing any packed copies; returns the
    model."""
    for module in _decoder_linears(model):
        if isinstance(module.__dict__.get("forward"), OneDNNLinearForward):
            del module.forward
    return model


def use_onednn_linears(model):
    """Give the model's decoder linears the default forward: oneDNN's inner product on their own weights where it
    applies (see the module's docstring), `F.linear` elsewhere; returns the model. `generate` calls it. Linears
    whose forward is already replaced (`enable_onednn_linears`) are left as they are, and the forwards stay in place
    afterwards, so that a compiled model sees the same modules from one call to the next."""
    if torch.backends.mkldnn.is_available():
        _install(_decoder_linears(model), prepack=False)
    return model

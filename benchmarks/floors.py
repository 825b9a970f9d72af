"""Floors: what the hardware allows for the products each stage runs, measured on the model's own weights.

* **Weight-read floor of one cached AR step**: one pass over exactly the weights a step reads (every linear of the 12
  decoder layers and the level-0 head) with 1 or 8 rows, through the kernel family the model runs in that precision:
  float32 through oneDNN's inner product on the plain weights (what `generate` runs by default,
  `valle_hf.cpu_kernels.CPULinearForward`), float32 through oneDNN on prepacked weights (the `--onednn` opt-in),
  float32 `F.linear` (reference), bfloat16 `F.linear`, and int8 weight-only (torchao's `Int8WeightOnlyConfig` as
  transformers' `TorchAoConfig` applies it; bfloat16 activations) through ATen's int8 matrix-vector kernel (what
  `generate` runs) and through torchao's own linear (reference). A step is bound by these reads.
* **Matrix-product throughput at the NAR's shapes**: one decoder layer's seven linears and its causal SDPA at M = the
  NAR's sequence length (text, level token, prompt and the response of `--seconds` of speech), and the level's head
  over the response rows, per precision, each through the kernels `generate` runs: float32, int8, and bfloat16 on a
  bfloat16 model's weights (the NAR's autocast of a float32 model casts them again at each level, time above the
  floor). Where the CPU has no fast bfloat16 products, the bfloat16 and int8 ones run in float32, as the model's do.
  A NAR level's compute floor is `layers x (linears + SDPA) + head` at those shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import COUNT, NAR_LEVELS, calm, fmt_pct, log, median_ms, parameter_counts, require

NAME, TITLE = "floors", "floors: weight reads of an AR step, matrix products at the NAR's shapes"
DEFAULTS = {"floor_repeats": (7, 3)}
BATCHES = (1, 8)
# Weight-read kernels: label -> (model precision, how the linears run).
KERNELS = {
    "float32 oneDNN (default)": ("float32", "kernels"),
    "float32 oneDNN prepacked (--onednn)": ("float32", "prepacked"),
    "float32 F.linear": ("float32", "linear"),
    "bfloat16 F.linear": ("bfloat16", "linear"),
    "int8 ATen int8 kernel (default)": ("int8", "kernels"),
    "int8 torchao linear": ("int8", "linear"),
}
PRODUCT_KINDS = ("float32", "bfloat16", "int8")
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_arguments(parser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--floor-repeats", type=int, default=None, help="timed passes per floor [7; quick 3]")


def check(args) -> None:
    require(args, {"floor_repeats": COUNT})


# ---------------------------------------------------------------------------------------------------- kernels
def onednn_applies(device: torch.device) -> bool:
    return device.type == "cpu" and torch.backends.mkldnn.is_available()


def _plain(weight: torch.Tensor, bias: torch.Tensor | None):
    def forward(x):
        return F.linear(x, weight, bias)

    return forward


def linear_forwards(linears: list[nn.Linear], how: str, dtype: torch.dtype | None = None) -> list:
    """Callables running each linear as `how` says: "kernels" (`CPULinearForward`, the kernels `generate` runs: oneDNN
    for float32, ATen's int8 kernel for a few rows of int8), "prepacked" (oneDNN on a packed copy), "linear"
    (`F.linear` on the weight, cast to `dtype` once if given, as autocast's cache holds it; an int8 weight dispatches
    to torchao's linear)."""
    from valle_hf.cpu_kernels import CPULinearForward

    if how in ("kernels", "prepacked"):
        return [CPULinearForward(module, prepack=how == "prepacked") for module in linears]

    def cast(tensor):
        return tensor if tensor is None or dtype is None else tensor.to(dtype)

    return [_plain(cast(module.weight), cast(module.bias)) for module in linears]


def step_linears(model) -> list[nn.Linear]:
    """The linears one cached AR step runs: every linear of the decoder layers, and the level-0 head."""
    layers = [module for module in model.model.backbone.layers.modules() if isinstance(module, nn.Linear)]
    return layers + [model.classifiers[0]]


def tensor_bytes(tensor: torch.Tensor | None) -> int:
    """Bytes a tensor occupies; a tensor subclass (torchao's int8 weights) counts its inner tensors (data and
    scales)."""
    if tensor is None:
        return 0
    names = getattr(tensor, "tensor_data_names", None)
    if names:
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def step_bytes(model) -> int:
    return sum(tensor_bytes(module.weight) + tensor_bytes(module.bias) for module in step_linears(model))


# ---------------------------------------------------------------------------------------------------- floors
def weight_read_ms(model, how: str, batch: int, device: torch.device, repeats: int) -> float:
    """Median time (ms) of one pass over the step's weights with `batch` rows, the linears run as `how` says (as in
    a cached decoding step, `valle_hf.cpu_kernels.decoding_step`)."""
    from valle_hf.cpu_kernels import decoding_step

    linears = step_linears(model)
    forwards = linear_forwards(linears, how)
    rows = {m.in_features: torch.randn(batch, m.in_features, dtype=model.dtype, device=device) for m in linears}
    pairs = list(zip(forwards, [rows[m.in_features] for m in linears], strict=True))
    with torch.no_grad(), decoding_step():  # the first, untimed pass also packs the prepacked weights
        return median_ms(lambda: [forward(x) for forward, x in pairs], repeats, device)


def is_int8(model) -> bool:
    return getattr(model.config, "quantization_config", None) is not None


def nar_kind(model, nar_dtype: str, device: torch.device) -> str:
    """What the NAR's products run in for a model and a `nar_dtype` setting: a dtype name, or "int8"."""
    from valle_hf.hardware import nar_autocast_dtype

    if is_int8(model):
        return "int8"
    dtype = nar_autocast_dtype(nar_dtype, device, model.dtype) or model.dtype
    return str(dtype).removeprefix("torch.")


def nar_length(config, args) -> tuple[int, int]:
    """(sequence length, response frames) of a NAR pass over `--seconds` of speech with the run's text and prompt."""
    from valle_hf.layout import tts_sequence

    frames = round(args.seconds * config.frame_rate)
    text = torch.zeros(args.text_tokens, dtype=torch.long)
    prompt_frames = round(args.prompt_seconds * config.frame_rate)
    return len(tts_sequence(config, text, 1, prompt_frames, response_frames=frames)), frames


def nar_products(model, kind: str, rows: int, frames: int, device: torch.device, repeats: int) -> dict:
    """Times (ms) and FLOPs of one NAR level's matrix products in `kind`, as `generate` runs them on `model` (a 16-bit
    `kind` of a float32 model: on weights cast beforehand, as autocast's cache holds them): one decoder layer's seven
    linears and its causal SDPA at `rows` positions, and the level's head over `frames` rows."""
    config = model.config
    dtype = model.dtype if kind == "int8" else COMPUTE_DTYPES[kind]  # int8 weights: the model's activations
    layer = model.model.backbone.layers[0]
    linears = [module for module in layer.modules() if isinstance(module, nn.Linear)]
    cast = dtype if model.dtype != dtype else None
    how = "linear" if cast else "kernels"
    forwards = linear_forwards(linears, how, cast)
    head = linear_forwards([model.classifiers[1]], how, cast)[0]
    x = {size: torch.randn(rows, size, dtype=dtype, device=device) for size in {m.in_features for m in linears}}
    pairs = list(zip(forwards, [x[m.in_features] for m in linears], strict=True))
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    q, k, v = (torch.randn(1, heads, rows, head_dim, dtype=dtype, device=device) for _ in range(3))
    hidden = torch.randn(frames, config.hidden_size, dtype=dtype, device=device)
    with torch.no_grad():
        linear_ms = median_ms(lambda: [forward(inputs) for forward, inputs in pairs], repeats, device)
        sdpa_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), repeats, device)
        head_ms = median_ms(lambda: head(hidden), repeats, device)
    linear_flops = sum(2 * rows * m.in_features * m.out_features for m in linears)
    sdpa_flops = 2 * heads * rows * rows * head_dim  # QK^T and PV, causal: half of 2 x 2 x rows^2 x head_dim
    head_flops = 2 * frames * config.hidden_size * model.classifiers[1].out_features
    layers = config.num_hidden_layers
    return {
        "kind": kind, "rows": rows, "frames": frames, "layer_linears_ms": linear_ms, "sdpa_ms": sdpa_ms,
        "head_ms": head_ms, "level_ms": layers * (linear_ms + sdpa_ms) + head_ms,
        "linear_gflops": linear_flops / linear_ms / 1e6, "sdpa_gflops": sdpa_flops / sdpa_ms / 1e6,
        "level_gflop": (layers * (linear_flops + sdpa_flops) + head_flops) / 1e9,
    }


def nar_floor_ms(model, kind: str, rows: int, frames: int, device: torch.device, repeats: int) -> float:
    """The compute floor (ms) of the NAR's `NAR_LEVELS` passes: each level's matrix products at their shapes."""
    return NAR_LEVELS * nar_products(model, kind, rows, frames, device, repeats)["level_ms"]


# ---------------------------------------------------------------------------------------------------- the module
def weight_read_row(model, how: str, device: torch.device, repeats: int) -> dict:
    nbytes = step_bytes(model)
    row = {"bytes": nbytes}
    for batch in BATCHES:
        ms = weight_read_ms(model, how, batch, device, repeats)
        row[str(batch)] = {"ms": ms, "gb_per_s": nbytes / ms / 1e6}
    return row


def run(args, context) -> dict:
    device = context.device
    result = {"parameters": parameter_counts(context.model()), "weight_read": {}, "products": {}}
    for label, (precision, how) in KERNELS.items():
        if how != "linear" and not onednn_applies(device):
            continue
        row = calm(args, f"weight-read floor {label}", weight_read_row, context.model(precision), how, device,
                   args.floor_repeats)
        result["weight_read"][label] = row
        log(f"weight-read floor {label}: " + ", ".join(f"b{b} {row[str(b)]['ms']:.1f} ms" for b in BATCHES))
    rows, frames = nar_length(context.model().config, args)
    for kind in PRODUCT_KINDS:
        result["products"][kind] = row = calm(args, f"NAR products {kind}", nar_products, context.model(kind), kind,
                                              rows, frames, device, args.floor_repeats)
        log(f"NAR products {kind}: level floor {row['level_ms']:.0f} ms")
    return result


def ideal_times(weight_read: dict) -> str:
    """What each precision's step would take streaming its bytes at the best bandwidth any kernel reached: how far
    a kernel family's own floor is from the memory's."""
    best = {b: max(row[str(b)]["gb_per_s"] for row in weight_read.values()) for b in BATCHES}
    sizes = {label.split()[0]: row["bytes"] for label, row in weight_read.items()}
    return "; ".join(f"{precision} " + "/".join(f"{nbytes / best[b] / 1e6:.1f}" for b in BATCHES) + " ms"
                     for precision, nbytes in sizes.items())


def report(result: dict) -> list[str]:
    counts = result["parameters"]
    lines = [f"model: {counts['decoder'] / 1e6:.1f} M decoder parameters (+{counts['codec_and_vocoder'] / 1e6:.1f} M "
             "EnCodec and Vocos); weight-read floor of one cached AR step (12 decoder layers + level-0 head):"]
    for label, row in result["weight_read"].items():
        per_batch = "  ".join(f"b{b}: {row[str(b)]['ms']:6.1f} ms {row[str(b)]['gb_per_s']:5.1f} GB/s" for b in BATCHES)
        lines.append(f"  {label:37} {row['bytes'] / 1e9:.3f} GB  {per_batch}  others {fmt_pct(row['foreign_load'])}")
    lines.append(f"  each precision's bytes at the best bandwidth measured above (b{'/b'.join(map(str, BATCHES))}): "
                 + ideal_times(result["weight_read"]))
    first = next(iter(result["products"].values()), None)
    if first:
        lines.append(f"matrix products at the NAR's shapes ({first['rows']} positions, head over {first['frames']} "
                     "frames), per level:")
    for kind, row in result["products"].items():
        lines.append(f"  {kind:9} linears {row['linear_gflops']:6.0f} GFLOP/s, SDPA {row['sdpa_gflops']:6.0f} GFLOP/s;"
                     f" one level {row['level_gflop']:.0f} GFLOP in {row['level_ms']:.0f} ms (floor of "
                     f"{NAR_LEVELS} levels: {NAR_LEVELS * row['level_ms'] / 1e3:.2f} s); others "
                     f"{fmt_pct(row['foreign_load'])}")
    return lines


if __name__ == "__main__":
    import sys

    from .__main__ import main

    sys.exit(main(only=[NAME]))

"""The precision of each stage, chosen for the machine: the AR's from measurements cached per machine."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from valle_hf import hardware
from valle_hf.errors import VallEValueError
from valle_hf.hardware import choose_precision

CPU = torch.device("cpu")


def _measured(monkeypatch, speeds: dict[str, float]) -> list[list[str]]:
    """Pretend one decoder layer's AR step takes `speeds[kind]` ms here, on a CPU with bfloat16 matrix hardware (where
    --dtype auto measures); returns the kinds each call asked for."""
    asked = []
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: True)

    def measured(kinds, *args):
        asked.append(list(kinds))
        return {kind: speeds[kind] for kind in kinds}

    monkeypatch.setattr(hardware, "_measured_step_ms", measured)
    return asked


@pytest.mark.parametrize("bfloat16_ms, expected", [(1.0, torch.bfloat16), (1.85, torch.float32), (3.0, torch.float32)])
def test_auto_takes_bfloat16_only_where_it_streams_at_least_ten_percent_faster(monkeypatch, tmp_path, bfloat16_ms,
                                                                              expected):
    _measured(monkeypatch, {"float32": 2.0, "bfloat16": bfloat16_ms})
    precision = choose_precision(CPU)
    assert precision.dtype == expected and precision.quantize is None
    assert f"bfloat16 {bfloat16_ms:.2f} ms" in precision.describe()
    # a choice made once per machine, which a busy moment can tip: the line says where it is kept, to measure again
    assert precision.describe().endswith(f"(measured on this machine; kept in {hardware._measurements_file()}: "
                                         "delete it to measure again))")
    monkeypatch.setattr(hardware, "_measurements_file", lambda: tmp_path / "unwritable" / "measurements.json")
    assert choose_precision(CPU).describe().endswith(f"not kept, as {tmp_path / 'unwritable'} cannot be written: "
                                                     "measured again at each run))")


def test_without_bfloat16_matrix_hardware_auto_is_float32_unmeasured_and_int8_is_measured(monkeypatch):
    """On an AVX2-only CPU a bfloat16 step's linears stream faster, but its elementwise ops and its NAR cost as much
    again: float32, without a measurement; int8, asked for, is still measured against it."""
    asked = _measured(monkeypatch, {"float32": 2.0, "bfloat16": 1.0, "int8": 0.5})
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: dtype == torch.float32)
    precision = choose_precision(CPU)
    assert precision.dtype == torch.float32 and not asked
    assert precision.describe() == ("precision: AR float32, NAR float32 (--dtype auto on a CPU without bfloat16 "
                                    "matrix hardware)")
    int8 = choose_precision(CPU, quantize="int8")
    assert asked == [["float32", "int8"]] and int8.quantize == "int8"
    assert int8.nar == "float32 products of int8 weights"


def test_auto_measures_at_the_batch_size_the_model_will_decode(monkeypatch):
    """A kind that streams one row faster may stream eight slower (bfloat16 on an AVX2-only AMD Zen 3: 2.4x slower
    than float32 at 8 rows); corpus synthesis measures at the rows of its widest call."""
    from valle_hf import synthesize

    speeds = {1: {"float32": 2.0, "bfloat16": 1.4, "int8": 1.0}, 8: {"float32": 4.0, "bfloat16": 9.0, "int8": 5.0}}
    asked = []
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: True)
    monkeypatch.setattr(hardware, "_measured_step_ms", lambda kinds, device, hidden, intermediate, rows=1: asked.append(
        rows) or {kind: speeds[rows][kind] for kind in kinds})
    assert choose_precision(CPU).dtype == torch.bfloat16 and asked == [1]
    eight = choose_precision(CPU, rows=8)
    assert eight.dtype == torch.float32 and asked == [1, 8]
    assert "AR step of 8 rows: float32 4.00 ms, bfloat16 9.00 ms" in eight.describe()
    assert choose_precision(CPU, quantize="int8", rows=8).quantize is None  # int8 loses at 8 rows here
    args = synthesize.build_parser().parse_args(["manifest.csv", "out", "--batch-size", "8", "--device", "cpu"])
    assert synthesize.model_precision(args, 8).dtype == torch.float32 and asked[-1] == 8


@pytest.mark.parametrize("int8_ms, applied", [(1.0, True), (2.5, False)])
def test_int8_is_applied_only_where_it_streams_faster(monkeypatch, int8_ms, applied):
    asked = _measured(monkeypatch, {"float32": 2.0, "bfloat16": 2.1, "int8": int8_ms})
    precision = choose_precision(CPU, quantize="int8")
    assert asked[-1] == ["float32", "int8"]  # against the dtype auto chose
    assert precision.quantize == ("int8" if applied else None)
    # int8 kernels are fast with 16-bit activations: the rest of the model then runs in bfloat16
    assert precision.dtype == (torch.bfloat16 if applied else torch.float32)
    assert ("int8 applied" if applied else "not applied") in precision.describe()
    assert ("AR int8 weights, bfloat16 activations" in precision.describe()) == applied


def test_a_kind_is_chosen_at_exactly_its_margin_and_int8_not_at_a_tie(monkeypatch):
    """bfloat16 is chosen where it streams at least `_AUTO_MARGIN` times as fast as float32 (the margin itself
    included: a time divided by 1 is exact); int8 only where it is faster, not as fast."""
    _measured(monkeypatch, {"float32": hardware._AUTO_MARGIN, "bfloat16": 1.0, "int8": 1.0})
    precision = choose_precision(CPU, quantize="int8")
    assert precision.dtype == torch.bfloat16 and precision.quantize is None
    assert "int8 streams slower here, not applied" in precision.describe()


def test_int8_runs_with_bfloat16_activations_on_the_cpu_and_says_what_it_runs_with(monkeypatch):
    _measured(monkeypatch, {"float16": 2.0, "int8": 1.0})
    on_cpu = choose_precision(CPU, "float16", quantize="int8")  # float16 activations are slow there
    assert on_cpu.dtype == torch.bfloat16 and "AR int8 weights, bfloat16 activations" in on_cpu.describe()
    on_gpu = choose_precision(torch.device("cuda"), "float16", quantize="int8")  # measured, not run: no GPU needed
    assert on_gpu.dtype == torch.float16
    assert "AR int8 weights, float16 activations, NAR int8 weights, float16 activations" in on_gpu.describe()


def test_an_explicit_dtype_is_kept_without_measuring(monkeypatch):
    asked = _measured(monkeypatch, {})
    precision = choose_precision(CPU, "bfloat16")
    assert precision.dtype == torch.bfloat16 and not asked and "--dtype bfloat16" in precision.describe()
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        choose_precision(CPU, quantize="int4")


def test_the_nar_runs_in_bfloat16_where_the_cpu_multiplies_it_fast(monkeypatch):
    _measured(monkeypatch, {"float32": 2.0, "bfloat16": 3.0})
    for fast, nar in ((True, "bfloat16 (autocast"), (False, "float32")):
        monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype, fast=fast: fast or dtype == torch.float32)
        assert choose_precision(CPU).nar.startswith(nar)


def test_on_a_cpu_slow_at_16bit_products_the_line_says_the_nar_multiplies_in_float32(monkeypatch):
    _measured(monkeypatch, {"float32": 2.0, "bfloat16": 1.0, "float16": 1.5, "int8": 0.5})
    for fast in (True, False):
        monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype, fast=fast: fast or dtype == torch.float32)
        assert choose_precision(CPU, "bfloat16").nar == ("bfloat16" if fast else "float32 products of bfloat16 weights")
        int8 = choose_precision(CPU, quantize="int8")
        assert int8.nar == ("int8 weights, bfloat16 activations" if fast else "float32 products of int8 weights")
        assert choose_precision(CPU, "float16", quantize="int8").describe().startswith(
            "precision: AR int8 weights, bfloat16 activations, NAR "
            + ("int8 weights, bfloat16 activations" if fast else "float32 products of int8 weights"))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # no oneDNN: the model's own products
    assert choose_precision(CPU, "bfloat16").nar == "bfloat16"


def test_a_float32_nar_makes_auto_float32_and_the_line_names_each_nar(monkeypatch):
    asked = _measured(monkeypatch, {"float32": 2.0, "bfloat16": 1.0})  # bfloat16 would win the measurement
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: True)
    precision = choose_precision(CPU, nar_dtype="float32")
    assert precision.dtype == torch.float32 and not asked  # autocast only narrows: a float32 NAR needs float32
    assert precision.describe() == "precision: AR float32, NAR float32 (nar_dtype='float32' needs a float32 model)"
    assert choose_precision(CPU, "float32", nar_dtype="float16").nar == "float16 (autocast; nar_dtype='float16')"
    assert choose_precision(CPU, "bfloat16", nar_dtype="float32").nar == "bfloat16"  # an explicit dtype is kept


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.bfloat16])
def test_an_unknown_nar_dtype_is_refused_by_name(model_dtype):
    """A direct call gets what generate's settings check gives: the values allowed, not an AttributeError of torch or,
    for a 16-bit model, a warning only."""
    with pytest.raises(VallEValueError, match=r"nar_dtype must be one of \('auto', .*\), got 'half'"):
        hardware.nar_autocast_dtype("half", CPU, model_dtype)


def test_a_nar_dtype_a_16bit_model_cannot_run_in_is_named_in_a_warning(monkeypatch):
    from conftest import logged_warnings

    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: True)  # its NAR in its own dtype

    with logged_warnings() as captured:
        assert hardware.nar_autocast_dtype("float32", CPU, torch.float16) is None
    assert "nar_dtype='float32' does not apply to a float16 model" in captured.out
    with logged_warnings() as captured:
        assert hardware.nar_autocast_dtype("auto", CPU, torch.bfloat16) is None
        assert hardware.nar_autocast_dtype("bfloat16", CPU, torch.bfloat16) is None
    assert not captured.out


def test_where_a_16bit_nar_multiplies_in_float32_its_warning_says_so(monkeypatch):
    from conftest import logged_warnings

    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: dtype == torch.float32)
    with logged_warnings() as captured:
        assert hardware.nar_autocast_dtype("float32", CPU, torch.bfloat16) is None  # what runs: no warning
    assert not captured.out
    with logged_warnings() as captured:
        assert hardware.nar_autocast_dtype("float16", CPU, torch.bfloat16) is None
    assert ("nar_dtype='float16' does not apply to a bfloat16 model: its NAR multiplies its weights in float32 on "
            "this CPU (no fast bfloat16 products)") in captured.out


def test_measurements_are_made_once_per_machine_and_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path))
    made = []
    times = iter([3.0, 9.0, 1.5, 7.0, 2.0, 8.0] + [5.0] * 99)  # a busy moment slows some rounds: the fastest is kept

    def measure(hidden, intermediate, kind, device, rows=1):
        made.append(kind if rows == 1 else (kind, rows))
        return next(times)

    monkeypatch.setattr(hardware, "decoder_layer_step_ms", measure)
    rounds = hardware._ROUNDS
    assert rounds >= 2
    first = hardware._measured_step_ms(["float32", "bfloat16"], CPU, 64, 128)
    assert made == ["float32", "bfloat16"] * rounds  # interleaved rounds, so that a busy moment slows both kinds
    expected = [3.0, 9.0, 1.5, 7.0, 2.0, 8.0, 5.0, 5.0][: 2 * rounds]
    assert first == {"float32": min(expected[0::2]), "bfloat16": min(expected[1::2])}
    assert hardware._measured_step_ms(["bfloat16", "float32"], CPU, 64, 128) == first  # read back, not measured
    assert len(made) == 2 * rounds
    saved = json.loads((tmp_path / "precision_measurements.json").read_text())
    assert list(saved) == [hardware._machine_key(CPU, 64, 128)] and "torch " + torch.__version__ in list(saved)[0]
    hardware._measured_step_ms(["float32"], CPU, 64, 256)  # other shapes: measured anew
    assert len(made) == 3 * rounds
    hardware._measured_step_ms(["float32"], CPU, 64, 128, rows=8)  # another batch size: the same, at its rows
    assert made[-rounds:] == [("float32", 8)] * rounds
    made[-rounds:] = ["float32"] * rounds
    monkeypatch.setattr(hardware, "_KERNELS_VERSION", hardware._KERNELS_VERSION + 1)  # other kernels: the same
    hardware._measured_step_ms(["float32"], CPU, 64, 128)
    assert len(made) == 5 * rounds
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # another thread count streams at another speed: the same
    try:
        hardware._measured_step_ms(["float32"], CPU, 64, 128)
    finally:
        torch.set_num_threads(threads)
    assert len(made) == 6 * rounds
    (tmp_path / "precision_measurements.json").write_text("{not json")  # a damaged file only means measuring again
    hardware._measured_step_ms(["float32"], CPU, 64, 128)
    assert len(made) == 7 * rounds


def test_only_the_kinds_not_yet_measured_are_measured(monkeypatch, tmp_path):
    """int8 asked for after --dtype auto measured float32 and bfloat16: int8 alone is measured, the others read."""
    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path))
    made = []
    monkeypatch.setattr(hardware, "decoder_layer_step_ms", lambda hidden, intermediate, kind, device, rows: made.append(
        kind) or float(len(made)))
    first = hardware._measured_step_ms(["float32", "bfloat16"], CPU, 64, 128)
    made.clear()
    both = hardware._measured_step_ms(["bfloat16", "int8"], CPU, 64, 128)
    assert made == ["int8"] * hardware._ROUNDS and both["bfloat16"] == first["bfloat16"]


@pytest.mark.parametrize("kept", [[], None, 3, "a string", [1.0], {"float32": "fast", "bfloat16": None},
                                  {"float32": 0, "bfloat16": -1.0}, {"float32": True, "bfloat16": float("nan")},
                                  {"float32": float("inf")}])
def test_a_damaged_measurements_file_only_means_measuring_again(monkeypatch, tmp_path, kept):
    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(hardware, "decoder_layer_step_ms", lambda hidden, intermediate, kind, device, rows: len(kind))
    file, key = tmp_path / "precision_measurements.json", hardware._machine_key(CPU, 64, 128)
    file.write_text(json.dumps(kept if not isinstance(kept, dict) else {key: kept}), encoding="utf-8")
    expected = {"float32": len("float32"), "bfloat16": len("bfloat16")}
    assert hardware._measured_step_ms(["float32", "bfloat16"], CPU, 64, 128) == expected
    assert json.loads(file.read_text(encoding="utf-8"))[key] == expected  # kept in place of what was there


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8"])
def test_a_decoder_layer_step_is_timed_in_each_precision(kind, monkeypatch):
    """Timed through the kernels generate's decoding steps run: int8 weights through ATen's int8 kernel."""
    if kind == "int8":
        pytest.importorskip("torchao", reason="int8 needs torchao (the [int8] extra)")
    from valle_hf.cpu_kernels import CPULinearForward

    calls, kernel, rows, forward = [], torch._weight_int8pack_mm, [], CPULinearForward.__call__
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda *args: calls.append(args) or kernel(*args))
    monkeypatch.setattr(CPULinearForward, "__call__", lambda self, x: rows.append(x.shape[0]) or forward(self, x))
    assert 0 < hardware.decoder_layer_step_ms(64, 128, kind, CPU, repeats=2, rows=3) < 1000
    assert set(rows) == {3} and bool(calls) == (kind == "int8")  # a step of 3 rows


@pytest.mark.parametrize("flags, fast", [
    ((), set()), (("_is_avx2_supported", "_is_avx512_supported"), set()), (("_is_avx512_bf16_supported",), {"bf16"}),
    (("_is_amx_tile_supported",), {"bf16"}), (("_is_amx_tile_supported", "_is_amx_fp16_supported"), {"bf16", "fp16"}),
])
def test_fast_16bit_products_are_read_from_torchs_cpu_flags(monkeypatch, flags, fast):
    for name in ("_is_avx2_supported", "_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported",
                 "_is_amx_fp16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda name=name: name in flags, raising=False)
    hardware._cpu_fast_16bit.cache_clear()
    try:
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        assert {name for name, dtype in dtypes.items() if hardware.cpu_multiplies_fast(dtype)} == fast
        assert hardware.cpu_multiplies_fast(torch.float32)
    finally:
        hardware._cpu_fast_16bit.cache_clear()  # read again from the real flags


def test_torchao_import_messages_stay_out_of_a_cpu_users_terminal():
    logger = logging.getLogger("torchao")
    before = logger.level
    with hardware.quiet_torchao_import():
        assert logger.level == (logging.ERROR if not torch.cuda.is_available() else before)
    assert logger.level == before


def test_products_are_widened_on_the_cpu_only(monkeypatch):
    """A GPU multiplies 16-bit matrices itself: on CUDA a bfloat16 model's NAR runs in bfloat16, however slow the
    CPU is at them."""
    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: dtype == torch.float32)
    assert hardware.widened_to_float32(torch.bfloat16, CPU)
    assert not hardware.widened_to_float32(torch.bfloat16, torch.device("cuda"))
    assert choose_precision(torch.device("cuda"), "bfloat16").nar == "bfloat16"


def test_int8_with_a_float32_nar_is_measured_against_the_dtype_auto_chooses(monkeypatch):
    """A float32 NAR makes auto float32 only without int8: int8 weights run with bfloat16 activations whatever was
    chosen, so auto measures float32 against bfloat16 first, then int8 against the winner."""
    asked = _measured(monkeypatch, {"float32": 2.0, "bfloat16": 1.0, "int8": 0.5})
    precision = choose_precision(CPU, quantize="int8", nar_dtype="float32")
    assert asked == [["float32", "bfloat16"], ["bfloat16", "int8"]]
    assert precision.quantize == "int8" and "needs a float32 model" not in precision.describe()


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="MemAvailable is Linux's")
def test_free_memory_is_what_the_cpu_can_still_give_and_unknown_for_a_device_without_data():
    """generate refuses a first step larger than this; without it Linux promised the memory and then killed the
    process."""
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < hardware.free_memory(torch.device("cpu")) <= physical
    assert hardware.free_memory(torch.device("meta")) is None


MIB = 2**20


@pytest.mark.parametrize("limit_file, usage_file, stat_file, cache_names", [  # the kernel's names, v2 then v1
    ("memory.max", "memory.current", "memory.stat", ("active_file", "inactive_file")),
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
     ("total_active_file", "total_inactive_file")),
])
def test_free_memory_on_the_cpu_is_at_most_what_the_memory_cgroup_leaves(monkeypatch, tmp_path, limit_file,
                                                                         usage_file, stat_file, cache_names):
    """In a container with a memory limit (docker run --memory) MemAvailable is the host's: the beams of
    `--beam-width 1000000` passed the check and the cgroup's OOM killer ended the CLI (status 137, no line). The
    limit less the usage is what is left, the page cache counted free as the kernel drops it first."""
    monkeypatch.setattr(hardware, "_CGROUP_ROOT", tmp_path)
    (tmp_path / "memory").mkdir()
    (tmp_path / limit_file).write_text(f"{64 * MIB}\n")
    (tmp_path / usage_file).write_text(f"{48 * MIB}\n")
    (tmp_path / stat_file).write_text(f"anon {40 * MIB}\n{cache_names[0]} {MIB}\n{cache_names[1]} {2 * MIB}\n")
    assert hardware._cgroup_headroom() == (64 - 48 + 1 + 2) * MIB
    if Path("/proc/meminfo").is_file():
        assert hardware.free_memory(CPU) <= (64 - 48 + 1 + 2) * MIB
    (tmp_path / usage_file).write_text(f"{80 * MIB}\n")  # past the limit, reclaiming: nothing left
    assert hardware._cgroup_headroom() == 0
    (tmp_path / limit_file).write_text("max\n")  # cgroup v2's "no limit"
    assert hardware._cgroup_headroom() is None
    (tmp_path / limit_file).unlink()  # no memory cgroup here
    assert hardware._cgroup_headroom() is None


@pytest.fixture
def cudnn_attention():
    """cuDNN's attention switch as a test found it, put back after the test."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    yield
    torch.backends.cuda.enable_cudnn_sdp(before)


@pytest.mark.parametrize("was", [True, False])
def test_decoding_attention_turns_cudnn_attention_off_and_back_as_it_was(cudnn_attention, was):
    """cuDNN's attention built an execution plan per layer at every cached step (the keys grow by one each step):
    16-bit steps of the released model took 42-48 ms on an H200 instead of 8-9 ms. The other backends are left as
    they were, and the switch comes back after the block, also after an error."""
    torch.backends.cuda.enable_cudnn_sdp(was)
    flash, efficient = torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled()
    with pytest.raises(KeyError), hardware.decoding_attention():
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() == flash
        assert torch.backends.cuda.mem_efficient_sdp_enabled() == efficient
        raise KeyError("the block failed")
    assert torch.backends.cuda.cudnn_sdp_enabled() == was


def test_overlapping_decoding_blocks_put_cudnn_attention_back_when_the_last_ends(cudnn_attention):
    """Two requests of a server decode at once: the first to end must not turn cuDNN's attention back on under the
    other, and the last puts back what was there before the first (not the first's 'off')."""
    torch.backends.cuda.enable_cudnn_sdp(True)
    first, second = hardware.decoding_attention(), hardware.decoding_attention()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not torch.backends.cuda.cudnn_sdp_enabled()
    second.__exit__(None, None, None)
    assert torch.backends.cuda.cudnn_sdp_enabled()


def test_decoding_attention_keeps_cudnn_attention_where_it_is_the_only_backend_left(cudnn_attention):
    """Inside `sdpa_kernel(SDPBackend.CUDNN_ATTENTION)` every other backend is off: turning cuDNN's off too left
    attention no kernel on CUDA."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION), hardware.decoding_attention():
        assert torch.backends.cuda.cudnn_sdp_enabled()

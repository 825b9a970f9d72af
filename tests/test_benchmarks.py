"""The benchmark runner (`python -m benchmarks`, and each module alone) as an entry point: an option no run can use
ends it before any model is built, in one `error:` line with status 1, and leaves no file behind; a module that
fails makes the run end with status 1. The released-size model is never built: the AR module runs once on the tiny
model, so that a change of the library's API that breaks its measurements fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from valle_hf.errors import UsageError


@pytest.fixture
def runner(monkeypatch):
    """`benchmarks.__main__`, with building the released-size model made an immediate failure."""
    monkeypatch.syspath_prepend(str(REPO))
    import benchmarks.__main__ as runner
    from benchmarks import common

    def no_model(*args, **kwargs):
        raise RuntimeError("the released-size model was built")

    monkeypatch.setattr(common, "build_model", no_model)
    return runner


REFUSED = {
    # name: (argv, the error's telling part); {tmp} is a fresh folder
    "unknown_flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "not_a_number": (["--threads", "x"], "--threads: invalid int value"),
    "unknown_module": (["--only", "floors,bogus"], "--only floors,bogus: unknown module(s) bogus"),
    "unknown_device": (["--device", "tpu"], "--device tpu: not a device"),
    "empty_device": (["--device", "", "--only", "floors"], "argument --device: is empty"),  # was the default device
    "negative_seconds": (["--seconds", "-1", "--only", "nar"], "--seconds -1 is not allowed"),
    "nan_seconds": (["--seconds", "nan", "--only", "nar"], "--seconds nan is not allowed"),
    "less_than_a_frame": (["--seconds", "0.006", "--only", "nar"], "--seconds 0.006 is not allowed"),
    "prompt_of_no_frame": (["--prompt-seconds", "0.001", "--only", "ar"], "--prompt-seconds 0.001 is not allowed"),
    "no_retries_left": (["--retries", "-1", "--only", "floors"], "--retries -1 is not allowed"),
    "too_few_text_tokens": (["--text-tokens", "2", "--only", "floors"], "--text-tokens 2 is not allowed"),
    "no_floor_repeats": (["--floor-repeats", "0", "--only", "floors"], "--floor-repeats 0 is not allowed"),
    "zero_steps": (["--steps", "0", "--only", "ar"], "--steps 0 is not allowed"),
    # each round timed nothing: "- ms/step over 0 steps", and the run ended with status 0
    "a_step_per_round": (["--steps", "5", "--ar-rounds", "5", "--only", "ar"], "--steps 5 shared by --ar-rounds 5"),
    "negative_profile_rows": (["--ar-profile", "--profile-rows", "-1", "--only", "ar"], "--profile-rows -1 is not"),
    "batch_not_a_number": (["--batch-sizes", "1,x", "--only", "ar"], "--batch-sizes 1,x is not allowed"),
    "batch_of_zero_rows": (["--batch-sizes", "0", "--only", "host"], "--batch-sizes 0 is not allowed"),
    "negative_ar_start": (["--ar-start", "0,-5", "--only", "ar"], "--ar-start 0,-5 is not allowed"),
    # each segment fits the model's positions (a longer one failed allocating its inputs or cache, with a traceback)
    "speech_past_the_positions": (["--seconds", "1000000", "--only", "nar"], "--seconds 1000000 is not"),
    "prompt_past_the_positions": (["--prompt-seconds", "1000000", "--only", "ar"], "--prompt-seconds 1000000 is not"),
    "text_past_the_positions": (["--text-tokens", "1000000", "--only", "floors"], "--text-tokens 1000000 is not"),
    "ar_start_past_the_positions": (["--ar-start", "0,1e6", "--only", "ar"], "past the model's positions"),
    "unknown_compile_mode": (["--compile-mode", "fastest", "--only", "ar"], "argument --compile-mode: invalid choice"),
    "unknown_ar_variant": (["--ar-variants", "float64", "--only", "ar"], "--ar-variants float64 is not allowed"),
    "unknown_nar_setting": (["--nar-settings", "fp8", "--only", "nar"], "--nar-settings fp8 is not allowed"),
    "unknown_e2e_variant": (["--e2e-variants", "fast", "--only", "e2e"], "--e2e-variants fast is not allowed"),
    "unknown_precision": (["--streaming-precisions", "int4", "--only", "streaming"],
                          "--streaming-precisions int4 is not allowed"),
    "zero_chunk": (["--chunk-seconds", "0", "--only", "streaming"], "--chunk-seconds 0 is not allowed"),
    "no_fixture_set": (["--fixtures", "{tmp}", "--only", "quality"], "no fixture set there"),
    # torch's generators refused it mid-run: "Overflow when unpacking long"
    "huge_seed": (["--seed", "1e30", "--only", "floors"], "argument --seed: expected an integer in [0, 2**64 - 1]"),
    "json_in_a_missing_folder": (["--json", "{tmp}/no/such/results.json", "--only", "host"], "cannot write --json"),
    "json_is_a_folder": (["--json", "{tmp}", "--only", "host"], "is a folder: give a file name"),
    # an unset shell variable: no file was written, without a word, and an empty --only ran every module
    "empty_json": (["--json", "", "--only", "host"], "argument --json: is empty"),
    "empty_only": (["--only", ""], "--only '' names no module: choose from floors,"),
    "only_commas": (["--only", ","], "--only ',' names no module"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_option_no_run_can_use_is_refused_before_anything_runs(case, runner, tmp_path, capsys):
    argv, expected = REFUSED[case]
    status = runner.main([arg.format(tmp=tmp_path) for arg in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert out == "", "the run started before refusing"
    assert list(tmp_path.iterdir()) == [], "a file was left behind"


@pytest.mark.parametrize(("cases", "message"), [
    ('{"cases": [{"name": "codes"}]}', "its cases.json is no parity fixture set's (KeyError: 'kind')"),  # Vocos'
    ("{not json", "its cases.json is no parity fixture set's (JSONDecodeError"),
    ('{"cases": []}', "no cases.safetensors beside its cases.json"),
])
def test_a_folder_that_holds_no_parity_fixture_set_is_refused_before_the_run(runner, tmp_path, cases, message):
    """Another fixture set (the Vocos one, an easy mix-up), a cases.json cut short or no tensors failed the quality
    module mid-run, with a traceback."""
    (tmp_path / "cases.json").write_text(cases)
    with pytest.raises(UsageError, match=re.escape(f"--fixtures {tmp_path}: {message}")):
        runner.parse(["--only", "quality", "--fixtures", str(tmp_path)])


def test_the_silence_before_the_ar_steps_and_the_steps_fit_the_response_positions_exactly(runner):
    """`--ar-start` seconds of silence and `--steps` share the response's positions: up to all of them is taken,
    one step more is refused."""
    from benchmarks.common import FRAME_RATE, POSITIONS

    start_frames = POSITIONS - 2 * FRAME_RATE
    start = str(start_frames / FRAME_RATE)
    runner.parse(["--only", "ar", "--ar-start", start, "--steps", str(POSITIONS - start_frames)])
    with pytest.raises(UsageError, match="past the model's positions"):
        runner.parse(["--only", "ar", "--ar-start", start, "--steps", str(POSITIONS - start_frames + 1)])
    # the no-cache baseline after --seconds of silence takes --baseline-steps and one step more
    seconds = str(start_frames / FRAME_RATE)
    runner.parse(["--only", "ar", "--seconds", seconds, "--baseline-steps", str(POSITIONS - start_frames - 1)])
    runner.parse(["--only", "ar", "--seconds", seconds, "--baseline-steps", str(POSITIONS), "--no-baseline"])
    with pytest.raises(UsageError, match=f"--seconds {start_frames / FRAME_RATE:g} with --baseline-steps "
                                         f"{POSITIONS - start_frames} is past the model's positions"):
        runner.parse(["--only", "ar", "--seconds", seconds, "--baseline-steps", str(POSITIONS - start_frames)])


def test_a_module_that_fails_ends_the_run_with_status_1(runner, tmp_path, capsys):
    """The failure is reported in its section, with its traceback, the run goes on, and the results are written."""
    status = runner.main(["--only", "floors,host", "--json", str(tmp_path / "results.json")])
    out, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" in err and "the released-size model was built" in err
    assert err.strip().splitlines()[-1] == "error: module(s) floors, host failed (their tracebacks are above)"
    assert out.count("FAILED: RuntimeError") == 2
    assert (tmp_path / "results.json").read_text().count('"error"') == 2
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]


def test_ctrl_c_keeps_the_results_of_the_modules_that_finished(runner, tmp_path, capsys, monkeypatch):
    """--json was written only after every module: Ctrl-C in the last one lost the others' results."""
    import json

    import benchmarks.host_work

    def interrupted(args, context):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmarks.host_work, "run", interrupted)
    status = runner.main(["--only", "floors,host", "--json", str(tmp_path / "results.json")])
    assert status == 130, capsys.readouterr()
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert list(results) == ["floors"] and "the released-size model was built" in results["floors"]["error"]


@pytest.fixture
def tiny_runner(monkeypatch):
    """`benchmarks.__main__`, with the tiny random model in place of the released-size one."""
    monkeypatch.syspath_prepend(str(REPO))
    import benchmarks.__main__ as runner
    from benchmarks import common
    from valle_hf.loading import tiny_random_model

    monkeypatch.setattr(common, "build_model", lambda device, seed: tiny_random_model(seed).to(device))
    return runner


AR_SHORT_RUN = ["--quick", "--only", "ar", "--ar-variants", "float32,bfloat16", "--batch-sizes", "1,2", "--steps",
                "3", "--ar-rounds", "1", "--floor-repeats", "1", "--no-baseline"]


def test_the_ar_module_measures_every_variant_through_generate(tiny_runner, capsys):
    """generate came to refuse the prefilled caches the module handed it: every AR row failed, and the run still
    ended with status 0."""
    status = tiny_runner.main(AR_SHORT_RUN)
    out, err = capsys.readouterr()
    assert status == 0, out + err
    rows = [line.split() for line in out.splitlines() if line.startswith(("  float32 ", "  bfloat16 "))]
    assert sorted((row[0], row[1]) for row in rows) == [("bfloat16", "1"), ("bfloat16", "2"), ("float32", "1"),
                                                         ("float32", "2")], out
    assert "FAILED" not in out


def test_every_other_module_runs_on_the_tiny_model(tiny_runner, fixtures, capsys):
    """The end-to-end module is left out: it measures in fresh processes, which build the released-size model."""
    status = tiny_runner.main(["--quick", "--only", "floors,nar,streaming,host,quality", "--fixtures",
                               str(fixtures.root)])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "FAILED" not in out
    for section in ("-- floors:", "-- NAR", "-- streaming:", "-- per-step host work", "-- quality"):
        assert f"\n{section}" in out, f"no {section} section"


def test_a_measurement_that_fails_ends_the_run_with_status_1(tiny_runner, monkeypatch, capsys):
    from benchmarks import ar_steps

    def failing_run(*args, **kwargs):
        raise RuntimeError("no step")

    monkeypatch.setattr(ar_steps, "ar_run", failing_run)
    status = tiny_runner.main(AR_SHORT_RUN)
    out, err = capsys.readouterr()
    assert status == 1
    assert out.count("FAILED: RuntimeError: no step") == 4, out
    assert err.strip().splitlines()[-1] == ("error: some measurements of module(s) ar failed (their FAILED lines are "
                                            "above)")


def test_help_shows_only_defaults_that_exist(runner, capsys):
    """Options left at None take the full run's or --quick's default, which their help gives ([10; quick 1])."""
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "[10; quick 1]" in out and "(default: None)" not in out and "(default: 0.15)" in out


@pytest.mark.subprocess
def test_a_module_run_alone_refuses_in_one_line():
    result = subprocess.run([sys.executable, "-m", "benchmarks.nar", "--nar-settings", "fp8"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True,
                            timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: --nar-settings fp8 is not allowed"), result.stderr
    assert result.stdout == ""


def test_a_module_run_alone_refuses_another_module_asked_for(runner):
    """`python -m benchmarks.host_work --only floors` ran the host module, the --only given ignored."""
    with pytest.raises(UsageError, match=r"^--only floors: this command runs host alone; run the others with python "
                                         r"-m benchmarks --only floors$"):
        runner.parse(["--only", "floors"], only=["host"])
    assert [module.NAME for module in runner.parse([], only=["host"])[1]] == ["host"]


@pytest.mark.subprocess
def test_the_machine_lines_come_without_torchaos_import_messages():
    """On a CPU, importing torchao for its version logged that its CUDA kernels' libraries cannot load (and a
    deprecation note of torch's) before the report's first line."""
    code = "import torch; from benchmarks.common import machine_info; machine_info(torch.device('cpu'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr


SYNTHESIS_REFUSED = {
    "unknown_flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "empty_device": (["--device", ""], "argument --device: is empty"),  # was the default run, minutes long
    "batch_not_a_number": (["--batch-sizes", "1,x"], "--batch-sizes 1,x is not allowed"),
    "no_batch": (["--batch-sizes", ","], "--batch-sizes , is not allowed"),
    "no_rows": (["--rows", "0"], "--rows 0 is not allowed"),
    "no_steps": (["--max-ar-steps", "0"], "--max-ar-steps 0 is not allowed"),
    "nan_prompt": (["--prompt-seconds", "nan"], "--prompt-seconds nan is not allowed"),
    "prompt_past_the_positions": (["--prompt-seconds", "1000000"], "--prompt-seconds 1000000 is not allowed"),
    "steps_past_the_positions": (["--max-ar-steps", "1000000"], "--max-ar-steps 1000000 is not allowed"),
    "no_threads": (["--threads", "0"], "--threads 0 is not allowed"),
    "unknown_device": (["--device", "tpu"], "--device tpu: not a device"),
    "json_in_a_missing_folder": (["--json", "{tmp}/no/such/synthesis.json"], "cannot write --json"),
    "empty_json": (["--json", ""], "argument --json: is empty"),
}


@pytest.mark.parametrize("case", SYNTHESIS_REFUSED)
def test_synthesis_refuses_an_option_it_cannot_use_before_building_the_model(case, monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import synthesis

    def no_model(*args, **kwargs):
        raise RuntimeError("the released-size model was built")

    monkeypatch.setattr(synthesis, "build_model", no_model)
    argv, expected = SYNTHESIS_REFUSED[case]
    status = synthesis.main([arg.format(tmp=tmp_path) for arg in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert out == "" and list(tmp_path.iterdir()) == []


def test_only_the_cache_matrix_rows_marked_compiled_compile(tiny_runner, monkeypatch, capsys):
    """On an accelerator transformers compiles every static-cache call on its own: on an H200 the matrix's static row
    marked not compiled ran compiled (and past torch's recompile limit), and the compiled row after it found its graph
    built and reported a compile time of 0 s."""
    from benchmarks import ar_steps

    seen = set()

    def recording_run(model, text, prompt, steps, args, device, budget_s=None, **extra):
        seen.add((type(extra["cache"]).__name__, extra.get("disable_compile"), "compile_config" in extra))
        return {"steps_ms": [1.0] * (steps - 1), "wall_s": 0.01}

    monkeypatch.setattr(ar_steps, "ar_run", recording_run)
    status = tiny_runner.main(["--quick", "--only", "ar", "--ar-variants", "float32", "--batch-sizes", "1",
                               "--steps", "3", "--ar-rounds", "1", "--floor-repeats", "1", "--no-baseline",
                               "--cache-matrix"])
    assert status == 0, capsys.readouterr()
    assert seen == {("NoneType", True, False), ("DynamicCache", True, False), ("StaticCache", True, False),
                    ("StaticCache", None, True)}

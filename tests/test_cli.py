"""`python -m valle_hf`: TTS and STT end to end on the fixture model, and one-line errors for bad input."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
import torch

from valle_hf.cli import build_parser, generation_kwargs, main
from valle_hf.errors import UsageError
from valle_hf.hardware import cpu_multiplies_fast


def run(argv, capsys):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("extra", [[], ["--onednn"]], ids=["default", "onednn"])
def test_tts_writes_a_24khz_wav_of_the_generated_length(tmp_path, converted_dir, prompt_wav, capsys, extra):
    from valle_hf.loading import load_model_and_processor

    out = tmp_path / "speech.wav"
    text = "Hello there."
    status, _, err = run([text, prompt_wav, out, "--model", converted_dir, "--ar-temp", 0, "--max-ar-steps", 30,
                          "--seed", 0, "--repetition-penalty", 1.0, *extra], capsys)
    assert status == 0, err
    audio, rate = soundfile.read(out)
    assert rate == 24000 and audio.ndim == 1
    model, processor = load_model_and_processor(str(converted_dir))
    batch = processor([text], prompt_audio=str(prompt_wav), input_prompt_length=3.0)
    expected = model.generate(**batch, temperature=0.0, max_new_tokens=30, return_dict_in_generate=True)
    assert len(audio) == int(expected.lengths.sum()) * model.config.sampling_rate // model.config.frame_rate


def test_stt_prints_ipa(converted_dir, prompt_wav, capsys):
    from valle_hf.loading import load_model_and_processor

    status, out, err = run(["", prompt_wav, "--task", "stt", "--model", converted_dir, "--ar-temp", 0,
                            "--max-ar-steps", 12, "--repetition-penalty", 1.0], capsys)
    assert status == 0, err
    model, processor = load_model_and_processor(str(converted_dir))
    ids = model.generate(**processor(audio=str(prompt_wav)), task="stt", temperature=0.0, max_new_tokens=12)
    assert out.strip() == processor.decode(ids[0]).strip()  # (empty when the model stops at once)


def test_original_checkpoint_is_converted_on_the_fly(tmp_path, fixtures, tokenizer_file, prompt_wav, capsys):
    out = tmp_path / "speech.wav"
    status, _, err = run(["Hi.", prompt_wav, out, "--model", fixtures.checkpoint, "--tokenizer", tokenizer_file,
                          "--codec", "tiny-random", "--vocoder", "tiny-random", "--max-ar-steps", 5, "--seed", 1],
                         capsys)
    assert status == 0, err
    assert out.is_file()


def test_a_tilde_in_a_quoted_path_is_the_home_folder(tmp_path, converted_dir, prompt_wav, capsys, monkeypatch):
    """A shell expands "~" only unquoted and not after "=": --out-path=~/out.wav reached the CLI as it is, and was
    written into a folder named "~" (or refused as missing), as were the reference and --model."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "voice.wav").write_bytes(prompt_wav.read_bytes())
    (tmp_path / "model").symlink_to(converted_dir)
    status, _, err = run(["Hi.", "~/voice.wav", "--out-path=~/out.wav", "--model=~/model", "--max-ar-steps", 3,
                          "--seed", 0], capsys)
    assert status == 0 and (tmp_path / "out.wav").is_file(), err
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_reference", "not found"),
        ("unreadable_reference", "audio"),
        ("empty_text", "empty text"),
        ("punctuation_only_text", "has no letter or digit: nothing to speak"),
        ("unknown_language", "language"),
        ("unwritable_output", "cannot write"),
        ("missing_model", "or --model tiny-random"),  # its flags: the Python call's choices are calls
        ("onednn_in_bfloat16", "--onednn needs the cpu and float32"),
        ("float32_nar_of_a_bfloat16_model", "--nar-dtype float32 cannot run with bfloat16"),
        ("float32_nar_of_int8_weights", "--nar-dtype float32 cannot run with int8 weights"),
        ("meta_device", "--device meta: a device without data"),
        ("stt_with_an_output_path", "--task stt prints its transcript and writes no file"),
        ("two_output_paths", "two output paths"),
        ("text_not_utf8", "the text is not valid utf-8 after 'hello '"),
        ("codec_of_a_converted_model", "--codec applies when a checkpoint is converted"),  # was ignored
        ("vocoder_of_tiny_random", "--vocoder applies when a checkpoint is converted"),
    ],
)
def test_bad_input_gives_one_line_and_status_1(tmp_path, converted_dir, prompt_wav, capsys, monkeypatch, case,
                                               expected):
    reference, text, out, model, extra = prompt_wav, "Hello.", tmp_path / "o.wav", converted_dir, []
    if case == "missing_reference":
        reference = tmp_path / "nope.wav"
    elif case == "unreadable_reference":
        reference = tmp_path / "bad.wav"
        reference.write_bytes(b"this is not audio")
    elif case == "empty_text":
        text = "   "
    elif case == "punctuation_only_text":
        text = " ... "
    elif case == "unknown_language":
        extra = ["--language", "xx-nope"]
    elif case == "unwritable_output":
        out = tmp_path / "no" / "such" / "dir" / "o.wav"
    elif case == "missing_model":
        model = tmp_path / "no-model-here"
    elif case == "onednn_in_bfloat16":
        extra = ["--onednn", "--dtype", "bfloat16"]
    elif case == "meta_device":
        extra = ["--device", "meta"]
    elif case == "stt_with_an_output_path":
        text, extra = "", ["--task", "stt"]
    elif case == "text_not_utf8":
        text = "Hello \udcff\udcfe world."  # bytes 0xff 0xfe of a command line that was not UTF-8
    elif case == "two_output_paths":
        extra = ["--out-path", tmp_path / "other.wav"]
    elif case == "codec_of_a_converted_model":
        extra = ["--codec", "tiny-random"]
    elif case == "vocoder_of_tiny_random":
        model, extra = "tiny-random", ["--vocoder", "none"]
    elif case.startswith("float32_nar_of"):  # on a CPU with fast 16-bit products (elsewhere they run in float32)
        monkeypatch.setattr("valle_hf.hardware.cpu_multiplies_fast", lambda dtype: True)
        extra = ["--nar-dtype", "float32", *(["--dtype", "bfloat16"] if "bfloat16" in case else ["--quantize", "int8"])]
    status, _, err = run([text, reference, out, "--model", model, "--max-ar-steps", 3, *extra], capsys)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert expected in lines[0].lower(), lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("extra", [[], ["--stream"]], ids=["whole", "streamed"])
@pytest.mark.parametrize("spoken", [(False,), (True, False)], ids=["the_only_sentence", "one_of_two"])
def test_a_sentence_that_came_out_empty_writes_no_file(tmp_path, converted_dir, prompt_wav, capsys, monkeypatch,
                                                       extra, spoken):
    """A sentence whose model stopped at its first step gives 0 samples: an error, not an empty file that looks like
    a result, nor the other sentences' audio with that one missing."""
    from valle_hf.modeling import VallEForConditionalGeneration

    audio = [torch.full((960,), 0.1) if speaks else torch.zeros(0) for speaks in spoken]
    monkeypatch.setattr(VallEForConditionalGeneration, "generate", lambda self, **kwargs: audio)
    out, text = tmp_path / "speech.wav", " ".join(["Hello.", "Bye now."][: len(spoken)])
    status, _, err = run([text, prompt_wav, out, "--model", converted_dir, *extra], capsys)
    sentence = f"{len(spoken)} ({['Hello.', 'Bye now.'][len(spoken) - 1]!r}) of {len(spoken)} came out empty"
    assert status == 1 and err.strip().splitlines()[-1] == (f"error: sentence {sentence} (the model stopped at its "
                                                            "first step), so nothing was written: try another seed")
    assert "wrote" not in err and not list(tmp_path.iterdir())


def test_running_out_of_memory_is_one_line_and_any_other_failure_keeps_its_traceback(tmp_path, converted_dir,
                                                                                     prompt_wav, capsys, monkeypatch):
    """--beam-width 1000000000 ended with torch's traceback: the CPU allocator's failure is a plain RuntimeError."""
    from valle_hf.modeling import VallEForConditionalGeneration

    def fails(error):
        def generate(self, **kwargs):
            raise error
        return generate

    argv = ["Hello.", prompt_wav, tmp_path / "speech.wav", "--model", converted_dir]
    allocation = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                              "memory: you tried to allocate 136000000000 bytes.")
    monkeypatch.setattr(VallEForConditionalGeneration, "generate", fails(allocation))
    status, _, err = run(argv, capsys)
    assert status == 1 and err.strip().splitlines()[-1].startswith("error: out of memory ([enforce fail"), err
    assert "136000000000 bytes" in err and "smaller batch or beam width" in err and not list(tmp_path.iterdir())
    monkeypatch.setattr(VallEForConditionalGeneration, "generate", fails(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        run(argv, capsys)


@pytest.mark.subprocess
def test_beams_the_free_memory_cannot_hold_are_refused_before_their_first_step(tmp_path, converted_dir, prompt_wav,
                                                                               capsys, monkeypatch):
    """--beam-width 1000000 on the tiny model grew its inputs and cache to 22 GB, and the kernel killed the process
    (status 137, no line): Linux's allocator promises memory, so torch's own refusal never came."""
    from valle_hf import generation

    monkeypatch.setattr(generation, "free_memory", lambda device: 0)
    out = tmp_path / "speech.wav"
    status, _, err = run(["Hello.", prompt_wav, out, "--model", converted_dir, "--beam-width", "2"], capsys)
    last = err.strip().splitlines()[-1]
    assert status == 1 and re.fullmatch(r"error: 1 row\(s\) x 2 \(--beam-width=2\) need .* GB for the keys and "
                                        r"values of their \d+ input positions alone, and cpu has 0 GB free: lower "
                                        r"--beam-width, or give fewer or shorter texts at once", last), err
    assert not out.exists() and not list(tmp_path.iterdir())
    # a width past any float (1e309, a whole number to the flag) failed while its refusal was written
    monkeypatch.setattr(generation, "free_memory", lambda device: 10**9)
    status, _, err = run(["Hello.", prompt_wav, out, "--model", converted_dir, "--beam-width", "1e309"], capsys)
    assert status == 1 and re.search(r"^error: 1 row\(s\) x 1e\+309 \(--beam-width=1e\+309\) need \d[.\d]*e\+\d+ "
                                     r"GB .* and cpu has 1 GB free", err.strip().splitlines()[-1]), err
    assert "Traceback" not in err and not out.exists()


def test_module_entry_point_runs_the_embedded_model(tmp_path, prompt_wav):
    out = tmp_path / "noise.wav"
    result = subprocess.run(
        [sys.executable, "-m", "valle_hf", "Hi.", str(prompt_wav), str(out), "--model", "tiny-random",
         "--max-ar-steps", "4", "--seed", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    audio, rate = soundfile.read(out)
    assert rate == 24000 and 0 < len(audio) <= 4 * 320


def _sampler_actions():
    from valle_hf.cli import FLAG_SETTINGS, build_parser

    return [action for action in build_parser()._actions if action.dest in FLAG_SETTINGS]


# Values for flags whose rules tie them to others (min <= temperature, no mirostat with beams) or to a format.
_FLAG_VALUES = {"min_ar_temp": 0.25, "ar_temp": 0.75, "min_nar_temp": 0.25, "beam_width": 1,
                "dry_sequence_breakers": [3, 9]}


def _flag_value(action, index: int):
    """A value for a flag that is not its default and that its setting's rule accepts: a choice, a number of the
    flag's type, or the switch itself."""
    from valle_hf.cli import FLAG_SETTINGS, whole_number
    from valle_hf.configuration import SETTING_RULES

    if action.dest in _FLAG_VALUES:
        return _FLAG_VALUES[action.dest]
    if action.choices:
        return list(action.choices)[-1]
    if action.nargs == 0:
        return True
    candidates = [3 + index, 2, 1] if action.type is whole_number else [1.25 + index / 8, 0.25 + index / 16, 0.5]
    rule = SETTING_RULES.get(FLAG_SETTINGS[action.dest], (None, lambda value: True))[1]
    return next(action.type(str(value)) for value in candidates if rule(action.type(str(value))))


def test_generation_kwargs_map_every_sampler_flag():
    from valle_hf.cli import FLAG_SETTINGS, build_parser, generation_kwargs
    from valle_hf.errors import UsageError

    actions = _sampler_actions()
    assert {action.dest for action in actions} == set(FLAG_SETTINGS)
    argv = ["t", "r.wav", "o.wav"]
    # entropix refuses mirostat and dynamic temperature beside it; the prompt prefix refuses a silence prefix
    alone = {"entropix_sampling": {"entropix": True}, "input_prompt_prefix": {"input_prompt_prefix": True}}
    for flag, setting in alone.items():
        assert generation_kwargs(build_parser().parse_args([*argv, f"--{flag.replace('_', '-')}"])) == setting
    expected = {}
    for index, action in enumerate(action for action in actions if action.dest not in alone):
        value = _flag_value(action, index)
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        argv += [action.option_strings[0]] if value is True else [action.option_strings[0], text]
        expected[FLAG_SETTINGS[action.dest]] = value
    kwargs = generation_kwargs(build_parser().parse_args(argv))
    assert kwargs == {**expected, "do_sample": expected["temperature"] > 0}
    assert all(type(kwargs[name]) is type(value) for name, value in expected.items())
    # nothing given: nothing set (the model's generation config decides); the original's 0 beams means off
    assert generation_kwargs(build_parser().parse_args(argv[:3])) == {}
    off = generation_kwargs(build_parser().parse_args([*argv[:3], "--beam-width", "0", "--ar-temp", "0"]))
    assert off == {"num_beams": 1, "temperature": 0.0, "do_sample": False}
    for flag, value in (("--nar-temp", "nan"), ("--prefix-silence", "-1.5"), ("--input-prompt-length", "-3")):
        with pytest.raises(UsageError, match=f"{flag} {value} is not allowed"):  # a TTS flag out of range, with STT
            generation_kwargs(build_parser().parse_args([*argv[:3], "--task", "stt", flag, value]))


def test_positionals_may_come_after_options(tmp_path, prompt_wav, capsys):
    out = tmp_path / "o.wav"
    status, _, err = run(["Hi.", prompt_wav, "--seed", 1, out, "--model", "tiny-random", "--max-ar-steps", 3], capsys)
    assert status == 0 and out.is_file(), err


def test_negative_numbers_in_scientific_notation_are_values_not_options():
    from valle_hf.cli import build_parser, generation_kwargs

    for text, value in (("-1e-3", -0.001), ("-2.5E+1", -25.0), ("-.5", -0.5)):
        args = build_parser().parse_args(["t", "r.wav", "o.wav", "--min-ar-temp", text])
        assert generation_kwargs(args)["min_temperature"] == value


@pytest.mark.parametrize("value, shown", [("-inf", "-inf"), ("-Infinity", "-inf"), ("-nan", "nan")])
def test_a_negative_infinity_is_a_value_refused_by_the_flags_range(tmp_path, prompt_wav, capsys, value, shown):
    """"--min-ar-temp -inf" was read as an option, and said "expected one argument" of a flag given one."""
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", "--min-ar-temp", value, "--model", "tiny-random"],
                         capsys)
    assert status == 1 and err.strip() == (f"error: --min-ar-temp {shown} is not allowed: it must be a finite number "
                                           "(< 0 = off)"), err


def test_a_value_that_starts_with_a_dash_is_said_to_go_after_an_equals_sign(tmp_path, prompt_wav, capsys):
    """argparse takes "-1,2" for an option and said only that the flag "expected one argument", though it was given
    one."""
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", "--dry-sequence-breakers", "-1,2"], capsys)
    assert status == 1 and "'-1,2' starts with '-' and was taken for an option; give it after '=': " \
        "--dry-sequence-breakers=-1,2" in err, err
    for left_out in (["--dry-sequence-breakers"], ["--dry-sequence-breakers", "--seed", "1"]):  # no value given
        status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", *left_out], capsys)
        assert status == 1 and "expected one argument (see" in err and "starts with '-'" not in err, err


def test_cli_pipeline_and_generate_speak_alike_from_the_shipped_defaults(tmp_path, converted_dir, prompt_wav, capsys):
    """One seed, no sampler settings: the CLI, `pipeline("text-to-speech")` and `generate` all take the model's
    generation config (the original CLI's tuned defaults) and the same prompt rule, so they give the same audio."""
    from transformers import pipeline

    from valle_hf.loading import load_model_and_processor

    text, seed, steps = "Hello there.", 3, 30
    out = tmp_path / "cli.wav"
    status, _, err = run([text, prompt_wav, out, "--model", converted_dir, "--seed", seed, "--max-ar-steps", steps],
                         capsys)
    assert status == 0, err
    cli_audio = torch.from_numpy(soundfile.read(out, dtype="float32")[0])

    model, processor = load_model_and_processor(str(converted_dir))
    generated = model.generate(**processor([text], prompt_audio=str(prompt_wav)), max_new_tokens=steps,
                               seeds=[seed], return_dict_in_generate=True, output_scores=True)
    tts = pipeline("text-to-speech", model=str(converted_dir))
    piped = tts(text, forward_params={"prompt_audio": str(prompt_wav), "max_new_tokens": steps, "seeds": [seed]})

    audio = generated.audio[0].clamp(-1, 1)
    assert torch.equal(cli_audio, audio)
    assert torch.equal(torch.as_tensor(piped["audio"]).reshape(-1), generated.audio[0])
    # the shared settings are the tuned ones, and they matter: plain sampling at temperature 1 samples from other
    # scores (compared at the first step, which exists even when the model stops at once)
    plain = model.generate(**processor([text], prompt_audio=str(prompt_wav)), max_new_tokens=steps, temperature=1.0,
                           repetition_penalty=1.0, seeds=[seed], return_dict_in_generate=True, output_scores=True)
    assert not torch.equal(plain.scores[0], generated.scores[0])


@pytest.mark.parametrize("flag, value, rule", [
    ("--ar-temp", "nan", "finite number >= 1e-06"), ("--ar-temp", "inf", "finite number >= 1e-06"),
    ("--min-ar-temp", "nan", "finite number"), ("--mirostat-tau", "nan", "finite number >= 0"),
    ("--repetition-penalty", "0", ">= 1"), ("--beam-width", "-1", "integer >= 0 (0 or 1: no beam search)"),
    ("--layer-skip-entropy-threshold", "nan", "bits >= 0"), ("--layer-skip-varentropy-threshold", "-1", "bits >= 0"),
    ("--nar-temp", "-1", "finite number >= 1e-06"), ("--min-p-keep", "0", "integer >= 1"),
    ("--top-p", "0", "(0, 1]"), ("--input-prompt-length", "inf", "seconds in [1/75, 3600]"),
    ("--input-prompt-length", "1e308", "seconds in [1/75, 3600]"), ("--prefix-silence", "1e9", "seconds in [0, 3600]"),
    ("--input-prompt-length", "0.001", "(one frame at least)"),  # was refused by generate, in its words
    ("--ar-temp", "1e-45", "0 (greedy) or a finite number >= 1e-06"), ("--nar-temp", "1e-30", ">= 1e-06"),
    ("--dry-allowed-length", "99999999999", "an integer in [1, 65536]"),
])
def test_every_flag_is_checked_before_any_model_loads(tmp_path, prompt_wav, capsys, flag, value, rule):
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", flag, value, "--model", tmp_path / "no-such-model"],
                         capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {flag} ") and "is not allowed" in lines[0] and rule in lines[0]


@pytest.mark.parametrize("task", ["tts", "stt"])
def test_a_flag_refused_against_the_models_own_setting_is_named_as_the_flag(tmp_path, prompt_wav, capsys, task):
    """--min-ar-temp above the model's own AR temperature (no --ar-temp given) was refused by `generate` in the
    setting's words, "min_temperature=1000000000.0 is not allowed", where --min-nar-temp named its flag."""
    given = ["Hi.", prompt_wav, tmp_path / "o.wav"] if task == "tts" else ["", prompt_wav]
    status, _, err = run([*given, "--task", task, "--min-ar-temp", "1e9", "--model", "tiny-random"], capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert status == 1 and lines and lines[0].startswith(
        "error: --min-ar-temp 1000000000 is not allowed: it must be at most temperature ("), err
    assert not (tmp_path / "o.wav").exists()


def test_a_dry_breaker_past_the_text_head_is_named_as_the_flag_for_speech_to_text(prompt_wav, capsys):
    """Speech to text's AR reads the text head: a breaker past it passed the CLI's check (against every head) and was
    refused by `generate` as "dry_sequence_breakers=[...] is not allowed"."""
    from valle_hf.loading import load_model_and_processor

    classes = load_model_and_processor("tiny-random")[0].config.text_vocab_size
    status, _, err = run(["", prompt_wav, "--task", "stt", "--dry-multiplier", "1", "--dry-sequence-breakers",
                          str(classes), "--model", "tiny-random"], capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert status == 1 and lines == [f"error: --dry-sequence-breakers {classes} is not allowed: it must be token ids "
                                     f"in 0..{classes - 1}: this model's text head has {classes} classes"], err


def test_a_prompt_prefix_without_a_prompt_is_refused_before_any_model_loads(tmp_path, capsys):
    """It was refused by `generate`, after the model loaded (a download, for the released one), in its words."""
    status, _, err = run(["Hi.", "", tmp_path / "o.wav", "--no-prompt", "--input-prompt-prefix", "--model",
                          tmp_path / "no-such-model"], capsys)
    assert status == 1 and err.strip() == ("error: --input-prompt-prefix starts the response from the voice prompt, "
                                           "and --no-prompt gives none: drop one of the two"), err


def test_a_silence_prefix_that_leaves_the_models_steps_no_positions_is_named_as_the_flag(tmp_path, prompt_wav, capsys):
    """The silence prefix shares the response's positions with the model's own max_new_tokens (no --max-ar-steps
    given): `generate` refused it in the words of the setting it blamed, not the flag."""
    from valle_hf.loading import load_model_and_processor

    model, _ = load_model_and_processor("tiny-random")
    config = model.config
    seconds = (config.max_position_embeddings - model.generation_config.max_new_tokens) / config.frame_rate
    argv = ["Hi.", prompt_wav, tmp_path / "o.wav", "--model", "tiny-random", "--prefix-silence"]
    status, _, err = run([*argv, f"{seconds + 1:g}"], capsys)
    refusal = f"error: --prefix-silence {seconds + 1:g} is not allowed: it must be a number of seconds in [0, " \
              f"{seconds:g}]"
    assert status == 1 and err.strip().startswith(f"{refusal} with max_new_tokens="), err
    assert not (tmp_path / "o.wav").exists()


def test_a_models_own_setting_that_no_flag_sets_is_refused_in_its_own_name():
    """A generation config's least length above the --max-ar-steps given: no flag to name, so the setting's."""
    from types import SimpleNamespace

    from valle_hf.configuration import SettingError, VallEConfig, VallEGenerationConfig

    args = build_parser().parse_args(["Hi.", "--no-prompt", "o.wav", "--max-ar-steps", "10"])
    model = SimpleNamespace(config=VallEConfig(), generation_config=VallEGenerationConfig(min_new_tokens=50))
    with pytest.raises(SettingError, match=r"^min_new_tokens=50 is not allowed: it must be at most max_new_tokens"):
        generation_kwargs(args, model)


def test_a_float32_nar_of_a_16bit_model_runs_where_the_cpu_widens_its_products(monkeypatch):
    """On a CPU slow at 16-bit products a bfloat16 model's NAR multiplies in float32: --nar-dtype float32 is what
    runs there, not refused (it is refused on CPUs with fast 16-bit products: test_bad_input_gives_one_line...)."""
    from valle_hf.cli import check_device

    monkeypatch.setattr("valle_hf.hardware.cpu_multiplies_fast", lambda dtype: dtype == torch.float32)
    for flags in (["--dtype", "bfloat16"], ["--quantize", "int8"]):
        args = build_parser().parse_args(["Hi.", "ref.wav", "o.wav", "--device", "cpu", "--nar-dtype", "float32",
                                          *flags])
        assert check_device(args) == "cpu"


def test_onednn_runs_on_the_cpu_named_with_its_index():
    """--device cpu:0 --onednn was refused: "--onednn needs the CPU" (the device was compared as the text "cpu")."""
    from valle_hf.cli import check_device

    args = build_parser().parse_args(["Hi.", "ref.wav", "o.wav", "--device", "cpu:0", "--onednn"])
    assert check_device(args) == "cpu:0"


def test_stt_takes_a_blank_text_as_none():
    """TEXT is not read with --task stt: a blank one (a quoted space) is as good as ''."""
    from valle_hf.cli import check_ignored_flags

    for text in ("", " ", "\t"):
        check_ignored_flags(build_parser().parse_args([text, "ref.wav", "--task", "stt"]))
    with pytest.raises(UsageError, match="give '' as TEXT"):
        check_ignored_flags(build_parser().parse_args(["Hi.", "ref.wav", "--task", "stt"]))


def test_a_flag_refused_beside_another_names_that_rule_not_its_own_range():
    """--beam-width 2 with entropix said "it must be an integer >= 0 (0 or 1: no beam search)", which 2 is."""
    args = build_parser().parse_args(["Hi.", "--no-prompt", "o.wav", "--entropix-sampling", "--beam-width", "2"])
    with pytest.raises(UsageError, match=r"^--beam-width 2 is not allowed: it must be 1 with entropix"):
        generation_kwargs(args)


@pytest.mark.parametrize("flags, message", [
    (["--input-prompt-length", "nan"], "--input-prompt-length nan is not allowed: it must be 0 (the whole prompt) or "
                                       "a number of seconds in [1/75, 3600] (one frame at least)"),
    (["--max-nar-levels", "-2"], "--max-nar-levels -2 is not allowed: it must be an integer >= 0 (0 = level 0 only; "
                                 "unset: all levels)"),
    (["--dry-sequence-breakers", "3,-1"], "--dry-sequence-breakers 3,-1 is not allowed: it must be comma-separated "
                                          "token ids (integers >= 0)"),
    (["--ar-temp", "-1"], "--ar-temp -1 is not allowed: it must be 0 (greedy) or a finite number >= 1e-06"),
    (["--top-p", "1.5"], "--top-p 1.5 is not allowed: it must be a number in (0, 1] (1 = off)"),
    (["--top-p", "1e15"], "--top-p 1000000000000000 is not allowed: it must be a number in (0, 1] (1 = off)"),
    (["--top-p", "1e16"], "--top-p 1e+16 is not allowed: it must be a number in (0, 1] (1 = off)"),
    (["--dry-allowed-length", "1e400"], "--dry-allowed-length 1e+400 is not allowed: it must be an integer in"),
    (["--dry-allowed-length", "12345678901234567890"], "--dry-allowed-length 12345678901234567890 is not allowed"),
])
def test_a_flag_refused_is_named_with_its_own_words_not_the_apis(flags, message):
    """A flag takes one value: its range said "None or ..., or a list of them (one per row)", a list of ids was
    quoted as the Python list "[3, -1]", and a whole number given to a float flag as argparse read it ("-1.0")."""
    args = build_parser().parse_args(["Hi.", "--no-prompt", "o.wav", *flags])
    with pytest.raises(UsageError) as refused:
        generation_kwargs(args)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("flags, message", [
    (["--stream-chunk", "0"], "--stream-chunk 0 is not allowed: it must be a number of seconds in (0, 3600]"),
    (["--stream-chunk", "1e308"], "--stream-chunk 1e+308 is not allowed"),
    (["--stream-chunk", "nan"], "--stream-chunk nan is not allowed"),
    (["--beam-width", "2"], "--stream cannot run with --beam-width 2"),
    (["--refine-on-stop"], "--stream cannot run with --refine-on-stop"),
])
def test_streaming_flags_are_checked_before_any_model_loads(tmp_path, prompt_wav, capsys, flags, message):
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", "--stream", *flags, "--model",
                          tmp_path / "no-such-model"], capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), err


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required"), (["Hi.", "x.wav", "--bogus"], "unrecognized arguments: --bogus"),
    (["Hi.", "x.wav", "--ar-temp", "warm"], "invalid float value"),
    (["Hi.", "x.wav", "--task", "asr"], "invalid choice"),
    (["Hi.", "x.wav", "--dry-sequence-breakers", "a,b"], "comma-separated token ids"),
    # an unset variable: the run went on, on the default device
    (["Hi.", "x.wav", "--device", ""], "argument --device: is empty (an unset shell variable?)"),
])
def test_argparse_errors_are_one_line_with_status_1(argv, message, capsys):
    status, _, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_yaml_selects_the_checkpoint_it_names_as_the_original_does(tmp_path, fixtures, prompt_wav, capsys):
    import shutil

    yaml_file = fixtures.root / "config.yaml"
    if not yaml_file.is_file():
        pytest.skip("fixture set has no config.yaml")
    from valle_hf.conversion import original_config_from_yaml

    model = original_config_from_yaml(yaml_file)
    name = f"{model.get('name', 'ar+nar')}-{model.get('arch_type', 'llama')}-{model.get('resp_levels', 8)}"
    folder = tmp_path / "ckpt" / name
    folder.mkdir(parents=True)
    shutil.copy(yaml_file, tmp_path / "config.yaml")
    # seeded as test_original_checkpoint_is_converted_on_the_fly: unseeded, a draw that stops at once failed it
    common = ["--codec", "tiny-random", "--vocoder", "tiny-random", "--max-ar-steps", 3, "--seed", 1]
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "a.wav", "--yaml", tmp_path / "config.yaml", *common], capsys)
    assert status == 1 and f"no checkpoint at {folder}/fp32.sft" in err  # where the original looks for it
    shutil.copy(fixtures.checkpoint, folder / "fp32.sft")
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "a.wav", "--yaml", tmp_path / "config.yaml", *common], capsys)
    assert status == 0, err
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "b.wav", "--yaml", tmp_path / "config.yaml", "--model",
                          "tiny-random", "--max-ar-steps", 3], capsys)
    assert status == 1 and "applies to original checkpoints" in err and not (tmp_path / "b.wav").exists()



# ---------------------------------------------------------------------------------------------------- every flag
_LOADED: dict = {}  # tiny-random per dtype (its build takes a while); every run gets its own copy
_RUNS: dict = {}  # the results of the CLI runs below, by arguments (each run is deterministic: it has a seed)


@dataclass
class CliRun:
    kwargs: dict  # what `generate` received
    model: torch.nn.Module  # the model it ran on
    output: object  # what it computed (the `VallEGenerateOutput`, with the processed scores of every AR step)
    written: np.ndarray | str  # the audio the CLI wrote, or the text it printed

    def scores(self) -> torch.Tensor:
        return torch.stack(self.output.scores)


class CliRuns:
    """Runs `main` against the embedded tiny-random model (a model that reacts to every input), recording what every
    `generate` call received and computed; runs with the same arguments are done once."""

    BASE = ["Hello there.", None, None, "--model", "tiny-random", "--seed", "1", "--max-ar-steps", "12"]

    def __init__(self, tmp_path, prompt_wav, capsys):
        self.tmp_path, self.prompt_wav, self.capsys = tmp_path, prompt_wav, capsys
        self.calls: list[tuple] = []

    def __call__(self, *extra, text: str | None = None) -> CliRun:
        key = (text or self.BASE[0], *(str(arg) for arg in extra))
        if key not in _RUNS:
            out = self.tmp_path / f"run{len(self.calls)}.wav"
            argv = [str(arg) for arg in self.BASE]
            argv[:3] = [key[0], str(self.prompt_wav), str(out)]
            if "stt" in key:  # a transcript of the reference is printed: no text, no output path
                argv[0] = ""
                del argv[2]
            first = len(self.calls)
            status, printed, err = run([*argv, *key[1:]], self.capsys)
            assert status == 0, err
            assert len(self.calls) == first + 1, "one generate call per run"
            written = printed if "stt" in key else soundfile.read(out)[0]
            _RUNS[key] = CliRun(*self.calls[-1], written)
        return _RUNS[key]


# One decoder layer's AR step (ms) per precision, as the CLI's runs see it: float32 fastest, int8 faster still.
MEASURED = {"float32": 2.0, "bfloat16": 2.1, "float16": 2.1, "int8": 1.5}


@pytest.fixture
def cli(tmp_path, prompt_wav, capsys, monkeypatch):
    import copy

    import valle_hf.hardware
    import valle_hf.loading
    from valle_hf.modeling import VallEForConditionalGeneration

    runs = CliRuns(tmp_path, prompt_wav, capsys)
    generate = VallEForConditionalGeneration.generate
    load = valle_hf.loading.load_model_and_processor

    def recording_generate(self, *args, **kwargs):
        """The real generate, asked for its scores too; returns what the CLI asked for."""
        out = generate(self, *args, **kwargs, output_scores=True, return_dict_in_generate=True)
        runs.calls.append((kwargs, self, out))
        return out.text_ids if kwargs.get("task") == "stt" else out.audio

    def load_once(name=None, **kwargs):
        if name != "tiny-random":
            return load(name, **kwargs)
        key = (kwargs["dtype"], kwargs.get("quantize"))
        if key not in _LOADED:
            _LOADED[key] = load(name, **kwargs)
        return copy.deepcopy(_LOADED[key])

    # The runs are shared between tests, so --dtype auto and --quantize decide alike on every machine.
    monkeypatch.setattr(valle_hf.hardware, "_measured_step_ms", lambda kinds, *args: {k: MEASURED[k] for k in kinds})
    monkeypatch.setattr(VallEForConditionalGeneration, "generate", recording_generate)
    monkeypatch.setattr(valle_hf.loading, "load_model_and_processor", load_once)
    return runs


# Each sampler flag: its arguments, the arguments of the run it is compared with (the two differ in that flag alone),
# what `generate` must receive, and what must change: the processed scores of the AR steps, or the audio (settings
# that act after the AR). Penalties need a history that repeats itself: half a second of silence frames.
SILENCE = ["--prefix-silence", "0.5"]
SAMPLER_FLAG_CASES = {
    "--max-ar-steps": (["--max-ar-steps", "5"], [], {"max_new_tokens": 5}, "audio"),
    "--max-nar-levels": (["--max-nar-levels", "2"], [], {"max_levels": 2}, "audio"),
    "--ar-temp": (["--ar-temp", "0"], [], {"temperature": 0.0, "do_sample": False}, "scores"),
    "--nar-temp": (["--nar-temp", "1.0"], [], {"nar_temperature": 1.0}, "audio"),
    "--min-ar-temp": (["--min-ar-temp", "0.05"], [], {"min_temperature": 0.05}, "scores"),
    "--min-nar-temp": (["--nar-temp", "1.0", "--min-nar-temp", "0.05"], ["--nar-temp", "1.0"],
                       {"nar_min_temperature": 0.05}, "audio"),
    "--top-p": (["--top-p", "0.2"], [], {"top_p": 0.2}, "scores"),
    "--top-k": (["--top-k", "2"], [], {"top_k": 2}, "scores"),
    "--min-p": (["--min-p", "0.9"], [], {"min_p": 0.9}, "scores"),
    "--repetition-penalty": ([*SILENCE, "--repetition-penalty", "1.0"], SILENCE, {"repetition_penalty": 1.0},
                             "scores"),
    "--repetition-penalty-decay": ([*SILENCE, "--repetition-penalty-decay", "0.5"], SILENCE,
                                   {"repetition_penalty_decay": 0.5}, "scores"),
    "--length-penalty": (["--length-penalty", "0.5"], [], {"stop_length_penalty": 0.5}, "scores"),
    "--beam-width": (["--beam-width", "2"], [], {"num_beams": 2}, "audio"),
    "--mirostat-tau": (["--mirostat-tau", "1.0"], [], {"mirostat_tau": 1.0}, "scores"),
    "--mirostat-eta": (["--mirostat-tau", "1.0", "--mirostat-eta", "2.0"], ["--mirostat-tau", "1.0"],
                       {"mirostat_eta": 2.0}, "scores"),
    "--entropix-sampling": (["--entropix-sampling"], [], {"entropix": True}, "scores"),
    "--dry-multiplier": ([*SILENCE, "--dry-multiplier", "1.0"], SILENCE, {"dry_multiplier": 1.0}, "scores"),
    "--dry-base": ([*SILENCE, "--dry-multiplier", "1.0", "--dry-base", "1.01"], [*SILENCE, "--dry-multiplier", "1.0"],
                   {"dry_base": 1.01}, "scores"),
    "--dry-allowed-length": ([*SILENCE, "--dry-multiplier", "1.0", "--dry-allowed-length", "4"],
                             [*SILENCE, "--dry-multiplier", "1.0"], {"dry_allowed_length": 4}, "scores"),
    "--layer-skip": (["--layer-skip", "--layer-skip-exit-layer", "0"], ["--layer-skip-exit-layer", "0"],
                     {"layer_skip": True}, "scores"),
    "--layer-skip-exit-layer": (["--layer-skip", "--layer-skip-exit-layer", "0"], ["--layer-skip"],
                                {"layer_skip_exit_layer": 0}, "scores"),
    "--layer-skip-entropy-threshold": (
        ["--layer-skip", "--layer-skip-varentropy-threshold", "1e9", "--layer-skip-entropy-threshold", "1e9"],
        ["--layer-skip", "--layer-skip-varentropy-threshold", "1e9"], {"layer_skip_entropy_threshold": 1e9}, "scores"),
    "--layer-skip-varentropy-threshold": (
        ["--layer-skip", "--layer-skip-entropy-threshold", "1e9", "--layer-skip-varentropy-threshold", "1e9"],
        ["--layer-skip", "--layer-skip-entropy-threshold", "1e9"], {"layer_skip_varentropy_threshold": 1e9}, "scores"),
    "--refine-on-stop": (["--refine-on-stop"], [], {"refine_on_stop": True}, "audio"),
    "--sampler-order": (["--top-p", "0.5", "--sampler-order", "transformers"], ["--top-p", "0.5"],
                        {"sampler_order": "transformers"}, "scores"),
    "--input-prompt-length": (["--input-prompt-length", "0.5"], [], {"input_prompt_length": 0.5}, "audio"),
    "--input-prompt-prefix": (["--input-prompt-prefix"], [], {"input_prompt_prefix": True}, "audio"),
    "--prefix-silence": (["--prefix-silence", "0.5"], [], {"prefix_silence": 0.5}, "audio"),
    "--audio-backend": (["--audio-backend", "encodec"], [], {"audio_backend": "encodec"}, "audio"),
    "--repetition-penalty-mode": ([*SILENCE, "--repetition-penalty-mode", "per_token"], SILENCE,
                                  {"repetition_penalty_mode": "per_token"}, "scores"),
    "--repetition-penalty-decay-mode": (
        [*SILENCE, "--repetition-penalty-decay", "0.5", "--repetition-penalty-decay-mode", "original"],
        [*SILENCE, "--repetition-penalty-decay", "0.5"], {"repetition_penalty_decay_mode": "original"}, "scores"),
    "--min-p-keep": (["--min-p", "0.9", "--min-p-keep", "32"], ["--min-p", "0.9"], {"min_p_keep": 32}, "scores"),
    "--dry-sequence-breakers": (
        [*SILENCE, "--dry-multiplier", "1.0", "--dry-sequence-breakers", "62"], [*SILENCE, "--dry-multiplier", "1.0"],
        {"dry_sequence_breakers": [62]}, "scores"),
    "--nar-dtype": (["--nar-dtype", "bfloat16"], ["--nar-dtype", "float32"], {"nar_dtype": "bfloat16"}, "audio"),
}


def differ(first: torch.Tensor | np.ndarray, second: torch.Tensor | np.ndarray) -> bool:
    return first.shape != second.shape or not (first == second).all()


@pytest.mark.parametrize("flag", sorted(SAMPLER_FLAG_CASES))
def test_every_sampler_flag_reaches_generate_and_changes_the_computation(cli, flag):
    args, baseline_args, expected, changes = SAMPLER_FLAG_CASES[flag]
    flagged, baseline = cli(*args), cli(*baseline_args)
    assert {name: flagged.kwargs.get(name) for name in expected} == expected
    assert all(baseline.kwargs.get(name) != value for name, value in expected.items())
    if changes == "scores":
        assert differ(flagged.scores(), baseline.scores())
    assert differ(flagged.written, baseline.written) or changes == "scores"


def test_language_flag_changes_the_phonemes(cli):
    german, english = cli("--language", "de"), cli()
    assert differ(german.kwargs["input_ids"], english.kwargs["input_ids"])
    assert differ(german.written, english.written)


def test_task_flag_transcribes_what_generate_computes(cli, capsys):
    from valle_hf.loading import tiny_random_processor

    stt = cli("--task", "stt")
    assert stt.kwargs["task"] == "stt" and "input_ids" not in stt.kwargs and stt.kwargs["audio"]
    assert stt.written.strip() == tiny_random_processor().decode(stt.output.text_ids[0]).strip()
    status, _, err = run(["", cli.prompt_wav, "--task", "stt", "--model", "tiny-random", "--max-ar-steps", 3], capsys)
    assert status == 0 and "precision: AR " in err and "NAR" not in err, err  # speech-to-text runs no NAR


@pytest.mark.parametrize("references", ["", " ; "])
def test_stt_without_audio_asks_for_the_audio_to_transcribe(references, capsys):
    """An empty REFERENCES with --task stt was told to use --no-prompt for a random voice, which --task stt refuses."""
    status, out, err = run(["", references, "--task", "stt", "--model", "tiny-random"], capsys)
    assert status == 1 and not out
    assert err.startswith("error: no audio to transcribe given") and "give the audio file to transcribe" in err, err
    assert "--no-prompt" not in err and "voice" not in err and len(err.strip().splitlines()) == 1


def test_seed_flag_seeds_the_sampling(cli, capsys):
    """Sentence i of the text draws from seed + i (`generate`'s per-row seeds), so a sentence sounds the same
    whichever text it is in; the seed changes the sampling, of the AR and of the NAR."""
    assert differ(cli("--seed", "2").written, cli().written)
    assert differ(cli("--seed", "2", "--nar-temp", "1").written, cli("--nar-temp", "1").written)
    assert cli("--seed", "2").kwargs["seeds"] == [2]
    two = cli("--seed", "2", "--nar-temp", "1", text="Hello there. General Kenobi.")
    assert two.kwargs["seeds"] == [2, 3]
    second = cli("--seed", "3", "--nar-temp", "1", text="General Kenobi.")
    length = second.output.lengths[0]
    assert torch.equal(two.output.codes[1, : two.output.lengths[1]], second.output.codes[0, :length])
    status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "o.wav", "--seed", "-1"], capsys)
    assert status == 1 and "expected an integer >= 0" in err


def test_device_dtype_and_onednn_flags_reach_the_model(cli, capsys):
    assert cli("--device", "cpu").model.device.type == "cpu"
    encodec = ["--audio-backend", "encodec"]  # Vocos cannot decode in half precision on the CPU (see below)
    half, full = cli(*encodec, "--dtype", "bfloat16"), cli(*encodec)
    assert half.model.dtype == torch.bfloat16 and differ(half.scores(), full.scores())
    assert full.model.dtype == torch.float32  # auto: float32, measured fastest here (MEASURED)
    assert differ(half.written, full.written)
    int8 = cli(*encodec, "--quantize", "int8")  # measured faster: int8 decoder weights, bfloat16 activations
    assert type(int8.model.model.backbone.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert int8.model.dtype == torch.bfloat16 and differ(int8.scores(), full.scores())
    status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "q.wav", "--model", "tiny-random", "--quantize", "int8",
                          "--max-ar-steps", 2], capsys)
    # the NAR multiplies in float32 on a CPU without bfloat16 matrix hardware
    fast = cpu_multiplies_fast(torch.bfloat16)
    nar = "int8 weights, bfloat16 activations" if fast else "float32 products of int8 weights"
    assert status == 0 and f"precision: AR int8 weights, bfloat16 activations, NAR {nar}" in err, err
    status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "q.wav", "--model", "tiny-random", "--dtype", "float32",
                          "--max-ar-steps", 2], capsys)  # a dtype given: the NAR's is still chosen here, and said
    assert status == 0 and "precision: AR float32, NAR " in err and "(--dtype float32" in err, err
    if torch.backends.mkldnn.is_available():
        packed, plain = cli("--onednn"), cli()
        assert packed.model.classifiers[0].forward.prepack  # the prepacked oneDNN linears are in place
        assert not plain.model.classifiers[0].forward.prepack  # generate's default
        torch.testing.assert_close(packed.scores(), plain.scores(), rtol=1e-4, atol=1e-4)
        status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "q.wav", "--model", "tiny-random", "--onednn",
                              "--max-ar-steps", 2], capsys)  # it named a --dtype float32 no one gave
        assert status == 0 and "precision: AR float32, NAR " in err and "(--onednn runs float32)" in err, err
    if not torch.cuda.is_available():
        status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "o.wav", "--device", "cuda"], capsys)
        assert status == 1 and "CUDA is not available" in err


@pytest.mark.parametrize("kind", ["mps", "xpu", "hpu", "privateuseone"])
def test_a_device_torch_knows_but_this_machine_lacks_is_one_line(kind, tmp_path, prompt_wav, capsys):
    """--device mps or xpu on a machine without one passed the check, and moving the model there ended with its
    backend's traceback (RuntimeError, AssertionError, ModuleNotFoundError), after the model had loaded."""
    backend = getattr(torch, kind, None)
    if backend is not None and backend.is_available():
        pytest.skip(f"this machine has {kind}")
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", "--model", "tiny-random", "--device", kind], capsys)
    assert status == 1 and err.strip() == f"error: --device {kind}: {kind.upper()} is not available here: use " \
                                          "--device cpu", err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_index_beyond_the_machines_gpus_is_one_line(tmp_path, prompt_wav, capsys):
    """--device cuda:N, N the number of GPUs, passed the check and failed in torch ("invalid device ordinal")."""
    count = torch.cuda.device_count()
    status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", "--model", "tiny-random", "--device",
                          f"cuda:{count}"], capsys)
    assert status == 1 and err.strip() == (f"error: --device cuda:{count}: this machine has {count} cuda device(s): "
                                           f"use cuda:0 to cuda:{count - 1}"), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flags", [["--dtype", "bfloat16"], ["--quantize", "int8"]], ids=["bfloat16", "int8"])
def test_a_float32_nar_of_a_16bit_model_runs_where_the_cpu_multiplies_16bit_matrices_in_float32(cli, capsys,
                                                                                                 monkeypatch, flags):
    """Without fast 16-bit products the NAR of a bfloat16 or int8 model already multiplies in float32: asked for,
    it is what runs, not a mistake."""
    if flags[0] == "--quantize":
        pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
    monkeypatch.setattr("valle_hf.hardware.cpu_multiplies_fast", lambda dtype: dtype == torch.float32)
    status, _, err = run(["Hi.", cli.prompt_wav, cli.tmp_path / "n.wav", "--model", "tiny-random", "--nar-dtype",
                          "float32", "--max-ar-steps", 2, *flags], capsys)
    weights = "int8" if flags[0] == "--quantize" else "bfloat16"
    assert status == 0 and f", NAR float32 products of {weights} weights (" in err, err
    assert "does not apply" not in err


def test_the_original_attention_and_amp_flags(cli, capsys):
    """An original command line with --attention or --amp ended in 'unrecognized arguments'. --attention picks the
    backbone's attention implementation (the same scores); --amp is refused, naming what to use instead."""
    backbone = lambda run: run.model.model.backbone.config._attn_implementation  # noqa: E731
    eager, auto = cli("--attention", "eager"), cli()
    assert backbone(eager) == "eager" and backbone(auto) != "eager"
    torch.testing.assert_close(eager.scores(), auto.scores(), rtol=1e-4, atol=1e-4)
    argv = ["Hi.", cli.prompt_wav, cli.tmp_path / "o.wav", "--model", "tiny-random", "--max-ar-steps", 2]
    status, _, err = run([*argv, "--amp"], capsys)
    assert status == 1 and err.startswith("error: --amp: ") and "--nar-dtype" in err and err.count("\n") == 1, err
    if importlib.util.find_spec("flash_attn") is None:
        status, _, err = run([*argv, "--attention", "flash_attention_2"], capsys)
        assert status == 1 and err.startswith("error: --attention flash_attention_2 cannot run here"), err
        assert err.count("\n") == 1 and not (cli.tmp_path / "o.wav").exists()


def test_a_model_saved_with_int8_weights_says_so_in_its_precision_line(tmp_path, capsys):
    """A model saved quantized loads with its int8 weights whatever --dtype and --quantize ask: the line names them,
    not a dtype its linears lack."""
    pytest.importorskip("torchao", reason="int8 weights need torchao (the [int8] extra)")
    from valle_hf.loading import load_model_and_processor

    model, processor = load_model_and_processor("tiny-random", dtype=torch.bfloat16, quantize="int8")
    model.save_pretrained(tmp_path / "int8")
    processor.save_pretrained(tmp_path / "int8")
    status, _, err = run(["Hi.", "", tmp_path / "o.wav", "--no-prompt", "--model", tmp_path / "int8",
                          "--max-ar-steps", 2], capsys)
    assert status == 0 and "precision: AR int8 weights, " in err and "saved with int8 weights" in err
    # --onednn asks float32 of every flag, but these weights are int8 whatever is asked (it blamed bfloat16)
    status, _, err = run(["Hi.", "", tmp_path / "p.wav", "--no-prompt", "--model", tmp_path / "int8", "--onednn"],
                         capsys)
    last = err.splitlines()[-1]  # after transformers' loading bar
    assert status == 1 and last.startswith("error: --onednn") and "saved with int8 weights" in last
    assert "drop --onednn" in last and "Traceback" not in err
    assert not (tmp_path / "p.wav").exists()


def test_half_precision_decodes_with_the_default_vocos_backend(cli):
    """The Vocos head computes its spectrum and inverse FFT in float32 (torch has no complex bfloat16)."""
    half = cli("--dtype", "bfloat16")
    assert half.model.dtype == torch.bfloat16 and half.written.dtype.kind == "f" and np.isfinite(half.written).all()


def test_out_path_flag_names_the_output(cli, capsys):
    out = cli.tmp_path / "named.wav"
    status, _, err = run(["Hi.", cli.prompt_wav, "--out-path", out, "--model", "tiny-random", "--max-ar-steps", 3],
                         capsys)
    assert status == 0, err
    assert soundfile.read(out)[1] == 24000
    status, _, err = run(["Hi.", cli.prompt_wav, out, "--out-path", out, "--model", "tiny-random", "--max-ar-steps",
                          3], capsys)
    assert status == 0, err  # the same file as OUT_PATH and --out-path is one output
    status, _, err = run(["Hi.", cli.prompt_wav, "--model", "tiny-random"], capsys)
    assert status == 1 and "no output path" in err


def test_conversion_flags_reach_the_conversion(cli, tmp_path, fixtures, tokenizer_file, vocos_checkpoint_dir,
                                               capsys):
    """--tokenizer, --yaml, --codec and --vocoder: an original checkpoint converted on the fly."""
    import json

    from safetensors.torch import save_file

    from valle_hf.codec import tiny_random_codec
    from valle_hf.conversion import load_original_checkpoint

    checkpoint = ["--model", fixtures.checkpoint, "--tokenizer", tokenizer_file, "--ar-temp", "0"]
    plain = cli(*checkpoint, "--codec", "tiny-random", "--vocoder", "tiny-random")
    other_codec = tmp_path / "codec"
    tiny_random_codec(seed=1).save_pretrained(other_codec)
    codec = cli(*checkpoint, "--codec", other_codec, "--vocoder", "tiny-random")
    assert torch.equal(codec.model.codec_model.quantizer.layers[0].codebook.embed,
                       tiny_random_codec(seed=1).quantizer.layers[0].codebook.embed)
    assert differ(codec.written, plain.written)  # another codec: other prompt codes
    vocos = cli(*checkpoint, "--codec", "tiny-random", "--vocoder", vocos_checkpoint_dir)
    assert differ(vocos.written, plain.written) and torch.equal(vocos.scores(), plain.scores())
    encodec = cli(*checkpoint, "--codec", "tiny-random", "--vocoder", "none")
    assert encodec.model.vocoder is None and differ(encodec.written, plain.written)

    original = load_original_checkpoint(fixtures.checkpoint)
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))  # a tokenizer that disagrees with the checkpoint
    symbol = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)[40]
    data["model"]["vocab"][symbol] = (data["model"]["vocab"][symbol] + 1) % len(data["model"]["vocab"])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    argv = ["Hi.", cli.prompt_wav, tmp_path / "o.wav", "--codec", "tiny-random", "--vocoder", "tiny-random"]
    status, _, err = run([*argv, "--model", fixtures.checkpoint, "--tokenizer", wrong], capsys)
    assert status == 1 and "symbol" in err
    if original.symmap is not None:
        bare = tmp_path / "bare.safetensors"  # no embedded config: only --yaml describes the model
        save_file(original.tensors, str(bare))
        status, _, err = run([*argv, "--model", bare], capsys)
        assert status == 1 and "--yaml" in err  # this command's flag for it (valle_hf.convert's is --config)
        if (fixtures.root / "config.yaml").is_file():
            status, _, err = run([*argv, "--model", bare, "--yaml", fixtures.root / "config.yaml", "--max-ar-steps",
                                  3], capsys)
            assert status == 0, err


# Flags checked by the tests named here rather than in SAMPLER_FLAG_CASES.
OTHER_FLAG_TESTS = {
    "--language": "test_language_flag_changes_the_phonemes",
    "--task": "test_task_flag_transcribes_what_generate_computes",
    "--seed": "test_seed_flag_seeds_the_sampling",
    "--device": "test_device_dtype_and_onednn_flags_reach_the_model",
    "--dtype": "test_device_dtype_and_onednn_flags_reach_the_model",
    "--onednn": "test_device_dtype_and_onednn_flags_reach_the_model",
    "--attention": "test_the_original_attention_and_amp_flags",
    "--amp": "test_the_original_attention_and_amp_flags",
    "--quantize": "test_device_dtype_and_onednn_flags_reach_the_model",
    "--out-path": "test_out_path_flag_names_the_output",
    "--model": "test_tts_writes_a_24khz_wav_of_the_generated_length",
    "--revision": "test_revision_flag_loads_the_hub_model_at_that_revision",
    "--tokenizer": "test_conversion_flags_reach_the_conversion",
    "--yaml": "test_conversion_flags_reach_the_conversion",
    "--codec": "test_conversion_flags_reach_the_conversion",
    "--vocoder": "test_conversion_flags_reach_the_conversion",
    "--stream": "test_stream_flags_stream_into_the_output",
    "--stream-chunk": "test_stream_flags_stream_into_the_output",
    "--no-prompt": "test_no_prompt_flag_speaks_in_a_random_voice",
    "--language-switch": "test_language_switch_flag_removes_the_markers",
}


def test_stream_flags_stream_into_the_output(cli):
    from valle_hf.streaming import AudioFileStreamer

    streamed, plain = cli("--stream", "--stream-chunk", "0.04"), cli()
    streamer = streamed.kwargs["audio_streamer"]
    assert isinstance(streamer, AudioFileStreamer) and streamer.chunk_seconds == 0.04
    assert plain.kwargs.get("audio_streamer") is None
    assert streamed.written.shape == plain.written.shape and not streamer.partial.exists()


def test_revision_flag_loads_the_hub_model_at_that_revision(tmp_path, monkeypatch, converted_dir, prompt_wav,
                                                            capsys):
    """--revision (revision= in Python) pins a branch, tag or commit of a Hub id: here the repository has only v1,
    so a load that asked for main would fail."""
    from conftest import served_hub
    from huggingface_hub import constants

    from valle_hf.errors import ModelNotFoundError
    from valle_hf.loading import load_model_and_processor

    repos = {"someone/valle": {path.name: path for path in converted_dir.iterdir() if path.is_file()}}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with served_hub(monkeypatch, repos, {"someone/valle": {"v1"}}) as hub:
        out = tmp_path / "o.wav"
        status, _, err = run(["Hi.", prompt_wav, out, "--model", "someone/valle", "--revision", "v1", "--max-ar-steps",
                              3, "--seed", 0], capsys)
        assert status == 0 and out.is_file(), err
        assert {path.split("/")[4] for _, path, _ in hub.file_requests()} == {"v1"}
        status, _, err = run(["Hi.", prompt_wav, out, "--model", "someone/valle", "--revision", "v2"], capsys)
        assert status == 1 and err.count("\n") == 1, err  # not told to go offline: the repository answered
        assert err.startswith("error: could not download the model someone/valle (someone/valle/config.json at "
                              "revision v2): the repository has no branch, tag or commit of that name; give one"), err
        with pytest.raises(ModelNotFoundError, match="someone/valle"):
            load_model_and_processor("someone/valle")  # main, which this repository does not have


def test_every_flag_of_the_cli_has_a_test():
    from valle_hf.cli import build_parser

    options = {option for action in build_parser()._actions for option in action.option_strings
               if option.startswith("--")} - {"--help"}
    assert options == set(SAMPLER_FLAG_CASES) | set(OTHER_FLAG_TESTS)
    assert not set(SAMPLER_FLAG_CASES) & set(OTHER_FLAG_TESTS)
    assert all(callable(globals().get(name)) for name in OTHER_FLAG_TESTS.values())


def test_no_prompt_flag_speaks_in_a_random_voice(cli, capsys):
    out = cli.tmp_path / "random_voice.wav"
    status, _, err = run(["Hi.", "", out, "--no-prompt", "--model", "tiny-random", "--max-ar-steps", 3], capsys)
    assert status == 0, err
    assert cli.calls[-1][0].get("prompt_audio") is None and soundfile.read(out)[0].size > 0
    assert err.strip().splitlines()[-1].startswith("seed: ")  # printed once the run worked, to repeat it
    status, _, err = run(["Hi.", "", cli.tmp_path / "o.wav", "--model", "tiny-random"], capsys)
    assert status == 1 and "no reference audio given" in err and "--no-prompt" in err
    assert not (cli.tmp_path / "o.wav").exists()
    for given in ([out], ["--out-path", out]):  # a reference and an output path, however the path is given
        status, _, err = run(["Hi.", cli.prompt_wav, *given, "--no-prompt", "--model", "tiny-random"], capsys)
        assert status == 1 and "--no-prompt speaks without a voice prompt, but a reference was given" in err, err


def test_references_joined_with_a_semicolon_are_one_voice_for_every_sentence(cli, capsys):
    other = cli.tmp_path / "other.wav"
    soundfile.write(other, np.zeros(4800, dtype=np.float32), 24000)
    for text, sentences in (("One sentence.", 1), ("Two sentences. Here is the second.", 2)):
        status, _, err = run([text, f"{cli.prompt_wav};{other}", cli.tmp_path / "o.wav", "--model", "tiny-random",
                              "--max-ar-steps", 3], capsys)
        assert status == 0, err
        prompts = cli.calls[-1][0]["prompt_audio"]
        assert [len(references) for references in prompts] == [2] * sentences


def test_language_switch_flag_removes_the_markers(cli):
    """espeak marks the English word in French text with (en)...(fr); the released model was trained with them."""
    text = "J'aime le football."
    kept = cli("--language", "fr", text=text)
    removed = cli("--language", "fr", "--language-switch", "remove", text=text)
    assert differ(kept.kwargs["input_ids"], removed.kwargs["input_ids"])


def test_a_flag_without_its_switch_is_warned_about_by_its_flag(cli):
    """--dry-base without --dry-multiplier was accepted without a word, as the original did: nothing applied it."""
    from conftest import logged_warnings

    with logged_warnings() as logged:
        cli("--dry-base", "2.0")
    with logged_warnings() as transcribing:
        cli("--task", "stt", "--ar-temp", "0", "--top-k", "5")
    inert = [line for log in (logged, transcribing) for line in log.out.splitlines() if "has no effect" in line]
    assert inert == ["--dry-base has no effect without --dry-multiplier > 0: set --dry-multiplier, or drop --dry-base",
                     "--top-k has no effect without --ar-temp > 0: set --ar-temp, or drop --top-k"]


def test_a_text_starting_with_a_dash_follows_the_end_of_options(tmp_path, prompt_wav, monkeypatch, capsys):
    """`--` was dropped by the intermixed parse, so a text (or file) starting with '-' could not be given at all; then
    positionals on both sides of it were refused."""
    import valle_hf.cli

    parsed = []

    def stop(args):  # the parsed arguments, before anything is read
        parsed.append((args.text, args.references, args.out_path, args.model, args.seed))
        raise UsageError("parsed")

    monkeypatch.setattr(valle_hf.cli, "prepare_inputs", stop)
    out = str(tmp_path / "o.wav")
    assert main(["--", "-Hello.", str(prompt_wav), out]) == 1
    assert main(["--model", "tiny-random", "--", "-Hello.", str(prompt_wav), out]) == 1
    assert main(["Hi.", str(prompt_wav), "--seed", "1", out]) == 1  # positionals around options, without `--`
    assert main(["Hi.", "--seed", "1", str(prompt_wav), "--model", "m", "--", "-o.wav"]) == 1  # on both sides of it
    assert main(["--seed", "1", "--", "1", str(prompt_wav)]) == 1  # a text that is an option's value too
    assert parsed == [("-Hello.", str(prompt_wav), out, None, None),
                      ("-Hello.", str(prompt_wav), out, "tiny-random", None), ("Hi.", str(prompt_wav), out, None, 1),
                      ("Hi.", str(prompt_wav), "-o.wav", "m", 1), ("1", str(prompt_wav), None, None, 1)]
    capsys.readouterr()
    assert main(["-Hello.", str(prompt_wav), out]) == 1  # without `--`: the way to give it
    assert "unrecognized arguments: -Hello.: a text or file that starts with '-' goes after `--`, the options go " \
           "before it" in capsys.readouterr().err
    assert main(["-hello", str(prompt_wav), out]) == 1  # -h and "ello": argparse said "ignored explicit argument"
    assert "'-hello' was read as the option -h: a text or file that starts with '-' goes after `--`, the options go " \
           "before it" in capsys.readouterr().err
    assert main(["Hi.", str(prompt_wav), out, "--seed", "1", "--", "extra"]) == 1  # a word too many
    assert "unrecognized arguments: extra: with `--`, the options go before it" in capsys.readouterr().err
    assert main(["Hi.", "--", str(prompt_wav), out, "--model", "tiny-random"]) == 1  # an option after `--`
    err = capsys.readouterr().err  # "--model (did you mean --model?)" named it again
    assert "unrecognized arguments: --model (an option after --: give the options before --" in err, err
    assert "did you mean" not in err
    for misspelt in (["Hi.", str(prompt_wav), out, "--modle", "x"], ["Hi.", "--modle", "x", "--", str(prompt_wav)]):
        assert main(misspelt) == 1  # a misspelt option is no text
        err = capsys.readouterr().err
        assert "unrecognized arguments: --modle" in err and "`--`" not in err, err


def test_integer_flags_take_whole_numbers_written_as_decimals_and_token_ids_lose_none(tmp_path, prompt_wav):
    """A manifest cell or a flag of 5.0 steps was refused where a seed of 3.0 was taken; "1,,2" as token ids lost
    its empty place without a word."""
    from valle_hf.cli import parse_flag

    parser = build_parser()
    args = parser.parse_args(["Hi.", str(prompt_wav), "--max-ar-steps", "5.0", "--top-k", "2e1",
                              "--layer-skip-exit-layer", "-1.0"])
    assert (args.max_ar_steps, args.top_k, args.layer_skip_exit_layer) == (5, 20, -1)
    assert all(type(value) is int for value in (args.max_ar_steps, args.top_k, args.layer_skip_exit_layer))
    with pytest.raises(UsageError, match="--top-k: expected an integer, got '2.5'"):
        parser.parse_args(["Hi.", str(prompt_wav), "--top-k", "2.5"])
    for huge in ("1e4001", "1E+999999999"):  # int() would build a number of that many digits (a gigabyte for the last)
        with pytest.raises(UsageError, match=f"--seed: expected an integer >= 0, got '{re.escape(huge)}'"):
            parser.parse_args(["Hi.", str(prompt_wav), "--seed", huge])
    assert parser.parse_args(["Hi.", str(prompt_wav), "--seed", "1e4000"]).seed == 10**4000
    assert parse_flag("max_ar_steps", 5.0) == 5 and parse_flag("dry_sequence_breakers", "1, 2") == [1, 2]
    for none in ("", " "):  # no breakers, as the default
        assert parser.parse_args(["Hi.", str(prompt_wav), "--dry-sequence-breakers", none]).dry_sequence_breakers == []
    for text in ("1,,2", "1,2,"):
        with pytest.raises(UsageError, match="expected comma-separated token ids"):
            parse_flag("dry_sequence_breakers", text)


def test_an_on_off_setting_reads_true_or_false_in_any_case_and_nothing_else():
    """A manifest's cell or a web form writes on/off settings as True, YES, Off or 1 (spreadsheets capitalise)."""
    from valle_hf.cli import parse_flag

    for text in ("true", "True", "YES", "on", "1", " On "):
        assert parse_flag("layer_skip", text) is True, text
    for text in ("false", "FALSE", "No", "off", "0"):
        assert parse_flag("refine_on_stop", text) is False, text
    assert parse_flag("entropix_sampling", True) is True and parse_flag("entropix_sampling", "") is None
    with pytest.raises(UsageError, match="--layer-skip 'maybe': expected true or false"):
        parse_flag("layer_skip", "maybe")


@pytest.mark.parametrize("option", ["--model", "--tokenizer", "--yaml", "--codec", "--vocoder"])
def test_an_empty_model_option_is_refused_by_name(tmp_path, prompt_wav, capsys, option):
    """An unset shell variable: --model "" was read as the current folder ("is a directory but not a converted
    model"), --tokenizer "" and --codec "" as no option at all; a blank one (" ") is as empty."""
    for value in ("", " \t"):
        status, _, err = run(["Hi.", prompt_wav, tmp_path / "o.wav", option, value], capsys)
        assert status == 1 and f"error: argument {option}: is empty (an unset shell variable?)" in err, err


def test_a_text_that_names_a_file_is_spoken_with_a_warning(cli, tmp_path, monkeypatch):
    """`python -m valle_hf story.txt ...` spoke "story dot t x t" without a word."""
    from conftest import logged_warnings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "story.txt").write_text("Once upon a time.", encoding="utf-8")
    with logged_warnings() as logged:
        run = cli(text="story.txt")
    assert differ(run.kwargs["input_ids"], cli(text="Hello.").kwargs["input_ids"])  # spoken as written
    assert ("TEXT story.txt is the name of a file here: it is spoken as written, not read; to speak the file's text, "
            'give it as TEXT ("$(cat story.txt)")') in logged.out, logged.out
    with logged_warnings() as logged:
        cli(text="Story.")
    assert "name of a file" not in logged.out

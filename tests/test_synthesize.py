"""`python -m valle_hf.synthesize`: a 12-row manifest (3 voices, 4 languages, per-row seeds and settings, 2 bad rows)
gives 10 WAVs equal to single-row CLI runs and 2 reported failures; the same under `accelerate launch` with two real
processes; a run killed with SIGKILL and resumed ends with every row done once and no partial file."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import GROUP_AT_EXIT, REPO, accelerate_launch, logged_warnings, subprocess_environment

import valle_hf.loading
from valle_hf import synthesize as synthesis
from valle_hf.cli import FLAG_SETTINGS, count_value
from valle_hf.cli import main as cli_main
from valle_hf.errors import MissingDependencyError, ModelNotFoundError, UsageError, VallEError
from valle_hf.modeling import VallEForConditionalGeneration

MANIFEST = """\
id,text,prompt,language,seed,ar_temp,nar_temp
r01,Hello there.,p1.wav,,11,,
r02,"The first sentence. And a second one, longer than the first.",p2.wav,en,12,,1.0
r03,Bonjour tout le monde.,p3.wav,fr,13,0.8,
r04,Guten Morgen.,p1.wav,de,,,
r05,This one is read in the language it looks like.,p2.wav,auto,15,,
r06,A greedy row.,p3.wav,,16,0,
r07,Missing voice.,nope.wav,,17,,
r08,,p1.wav,,18,,
r09,Another English row.,./p2.wav,,19,,
r10,Une autre phrase.,p3.wav,fr,20,,1.0
r11,Short.,p1.wav,,21,,
r12,"A row with a comma, quoted.",p2.wav,en,22,0.8,
"""
BAD = {"r07": ("8", "prompt file not found"), "r08": ("9", "empty text")}
# The run's flags: a seed for the rows without one, a few AR steps, and both stages in float32, where a row's codes do
# not depend on the batch's shape (bfloat16 rounding can). --dtype auto would measure this machine, which can choose
# bfloat16 in one process and float32 in another.
FLAGS = ["--model", "tiny-random", "--seed", "7", "--max-ar-steps", "12", "--dtype", "float32", "--nar-dtype",
         "float32", "--no-progress"]
SUBPROCESS_TIMEOUT = 240
# A scripted model's answer to `speak_batch`'s check of each row's text and prompt against its positions: they fit.
FITS = {"check_segments_fit": lambda *args, **kwargs: None}
_MODELS: dict = {}


def rows_of(manifest: Path) -> dict[str, dict]:
    from valle_hf.manifest import read_table

    return {row.values["id"]: row.values for row in read_table(manifest).rows}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, prompt_wav) -> Path:
    """The manifest and its three voices."""
    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(prompt_wav, root / "p1.wav")
    samples = np.arange(24000 * 2) / 24000
    for name, frequency in (("p2.wav", 300.0), ("p3.wav", 520.0)):
        noise = np.random.default_rng(int(frequency)).standard_normal(len(samples))
        soundfile.write(root / name, (0.3 * np.sin(2 * np.pi * frequency * samples) + 0.05 * noise).astype(np.float32),
                        24000)
    (root / "manifest.csv").write_text(MANIFEST, encoding="utf-8")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def cached_loading():
    """tiny-random loaded once (it takes seconds) and copied for every in-process run."""
    load = valle_hf.loading.load_model_and_processor

    def load_once(name=None, **kwargs):
        key = (name, kwargs.get("dtype"))
        if key not in _MODELS:
            _MODELS[key] = load(name, **kwargs)
        return copy.deepcopy(_MODELS[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(valle_hf.loading, "load_model_and_processor", load_once)
        yield


def synthesize_main(argv) -> tuple[int, str]:
    """The command run in this process: its status and stderr. It must leave transformers' progress bars as they
    were (--no-progress turns them off for the run only)."""
    import contextlib
    import io

    from transformers.utils.logging import is_progress_bar_enabled

    bars = is_progress_bar_enabled()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = synthesis.main([str(arg) for arg in argv])
    assert is_progress_bar_enabled() == bars
    return status, err.getvalue()


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory, cached_loading) -> Path:
    """OUT_DIR of one uninterrupted in-process run, batches of 4 sentences."""
    out = tmp_path_factory.mktemp("reference") / "out"
    status, err = synthesize_main([corpus, out, *FLAGS, "--batch-size", "4"])
    assert status == synthesis.SOME_ROWS_FAILED, err
    return out


@pytest.mark.parametrize(("batch_size", "rows"), [(100000, 5), (3, 3)])
def test_dtype_auto_measures_the_rows_of_the_runs_widest_call(tmp_path, prompt_wav, monkeypatch, cached_loading,
                                                              batch_size, rows):
    """--dtype auto measured --batch-size rows: 100000 for a manifest of two rows ran for minutes."""
    from valle_hf import hardware

    shutil.copy(prompt_wav, tmp_path / "p.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\na,One. Two. Three. Four.,p.wav\nb,Hi.,p.wav\n", encoding="utf-8")
    measured = []

    def measure(kinds, device, hidden, intermediate, rows):
        measured.append(rows)
        return {kind: 1.0 for kind in kinds}

    monkeypatch.setattr(hardware, "cpu_multiplies_fast", lambda dtype: True)
    monkeypatch.setattr(hardware, "_measured_step_ms", measure)
    flags = [flag for flag in FLAGS if flag not in ("--dtype", "float32", "--nar-dtype")]
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *flags, "--batch-size", batch_size])
    assert status == 0 and measured == [rows], err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wavs(out: Path) -> dict[str, np.ndarray]:
    return {path.stem: soundfile.read(path, dtype="float32")[0] for path in sorted(out.glob("*.wav"))}


def assert_same_wavs(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    """Equal WAVs: the same codes give the same samples up to float32 rounding (a batch's matrix products sum in
    another order than a row's alone: ~1e-8 here); a different code or seed changes them by orders of magnitude more."""
    assert sorted(first) == sorted(second)
    for name, audio in first.items():
        assert audio.shape == second[name].shape, name
        np.testing.assert_allclose(audio, second[name], rtol=0, atol=1e-6, err_msg=name)


def test_ten_wavs_and_two_reported_failures(reference):
    assert sorted(wavs(reference)) == [f"r{index:02d}" for index in range(1, 13) if f"r{index:02d}" not in BAD]
    failed = records(reference / "failed.jsonl")
    assert [(record["id"], record["line"]) for record in failed] == [(id_, line) for id_, (line, _) in BAD.items()]
    assert all(BAD[record["id"]][1] in record["error"] for record in failed)
    done = {record["id"]: record for record in records(reference / "done.jsonl")}
    assert sorted(done) == sorted(wavs(reference))
    assert done["r04"]["seed"] == 7 and done["r01"]["seed"] == 11  # the run's seed, and the row's own
    for row_id, audio in wavs(reference).items():
        record = done[row_id]
        assert record["path"] == f"{row_id}.wav" and record["seconds"] == round(len(audio) / 24000, 4)
        assert record["frames"] * 320 == len(audio) and isinstance(record["stopped"], bool)
    assert not (reference / "parts").exists() and not list(reference.glob(".*"))


def test_each_wav_equals_a_single_row_cli_run_with_the_same_seed(corpus, reference, tmp_path, cached_loading):
    rows = rows_of(corpus)
    for row_id, audio in wavs(reference).items():
        row = rows[row_id]
        argv = [row["text"], str(corpus.parent / row["prompt"]), str(tmp_path / f"{row_id}.wav"), *FLAGS[:-1],
                "--seed", row["seed"] or "7"]
        argv += ["--language", row["language"]] if row["language"] else []
        for flag in ("ar_temp", "nar_temp"):
            argv += [f"--{flag.replace('_', '-')}", row[flag]] if row[flag] else []
        assert cli_main(argv) == 0
        assert_same_wavs({row_id: audio}, {row_id: soundfile.read(tmp_path / f"{row_id}.wav", dtype="float32")[0]})


def _spied(monkeypatch, name: str) -> list[tuple[tuple, dict]]:
    """The positional and keyword arguments of every call of the model's method `name`, which still runs."""
    calls, method = [], getattr(VallEForConditionalGeneration, name)

    def spy(self, *args, **kwargs):
        calls.append((args, kwargs))
        return method(self, *args, **kwargs)

    monkeypatch.setattr(VallEForConditionalGeneration, name, spy)
    return calls


def test_each_voice_is_encoded_once_and_batches_share_settings(corpus, tmp_path, cached_loading, monkeypatch):
    encoded, generated = _spied(monkeypatch, "prompt_rows"), _spied(monkeypatch, "generate")
    status, err = synthesize_main([corpus, tmp_path / "out", *FLAGS, "--batch-size", "4"])
    assert status == synthesis.SOME_ROWS_FAILED, err
    # encode calls of the synthesis itself (generate is given codes): one per distinct voice (./p2.wav is p2.wav)
    assert len([args for args, _ in encoded if args[2] is not None]) == 3
    calls = [kwargs for _, kwargs in generated]
    assert all(call.get("prompt_audio") is None for call in calls)
    settings = [{key: call[key] for key in ("temperature", "nar_temperature") if key in call} for call in calls]
    assert len(calls) == len({json.dumps(item, sort_keys=True) for item in settings}) + 1  # one group needed 2 batches
    assert all(len(call["seeds"]) == len(call["input_ids"]) <= 4 for call in calls)


def test_a_row_longer_than_the_batch_size_is_spoken_in_calls_of_that_size(corpus, reference, tmp_path,
                                                                           cached_loading, monkeypatch):
    """A row of more sentences than --batch-size was one `generate` call of all of them: a long text ran the device
    out of memory whatever --batch-size said."""
    generated = _spied(monkeypatch, "generate")
    status, err = synthesize_main([corpus, tmp_path / "out", *FLAGS, "--batch-size", "1"])
    assert status == synthesis.SOME_ROWS_FAILED, err
    assert all(len(kwargs["seeds"]) == 1 for _, kwargs in generated)
    assert len(generated) > len(wavs(reference))  # a row of two sentences was spoken in two calls
    assert_same_wavs(wavs(tmp_path / "out"), wavs(reference))


def test_the_plan_reports_every_bad_row_by_its_line(tmp_path):
    """Rows that cannot be spoken are found before any model loads, each reported with its line."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    lines = [
        "id,text,prompt,language,seed,ar_temp,top_k",
        "ok,Fine.,voice.wav,,,,",
        "ok,Duplicate id.,voice.wav,,,,",
        "a/b,Bad id.,voice.wav,,,,",
        ".hidden,Bad id.,voice.wav,,,,",
        "lang,Unknown language.,voice.wav,xx-nope,,,",
        "seed,Bad seed.,voice.wav,,-3,,",
        "temp,Bad setting.,voice.wav,,,hot,",
        "range,Out of range.,voice.wav,,,nan,",
        "int,Not an integer.,voice.wav,,,,2.5",
        "voice,No voice.,,,,,",
        "cells,Too many, cells,voice.wav,,,,",
        f"{'x' * (synthesis.MAX_ID_BYTES + 1)},Long id.,voice.wav,,,,",
        "folder,A folder as the voice.,.,,,,",
        "dots,...,voice.wav,,,,",
        'quote,"Unbalanced,voice.wav,,,,',
    ]
    lines.insert(-1, "nul,A NUL in the voice's name.,voi\0ce.wav,,,,")  # stopped the plan of every row
    # a Windows path separator and a control character are no file name either; the limit counts UTF-8 bytes, and
    # an id of exactly that many is a file name
    longest, wide = "y" * synthesis.MAX_ID_BYTES, "\u00e9" * (synthesis.MAX_ID_BYTES // 2 + 1)
    lines[-1:-1] = ["back\\slash,Bad id.,voice.wav,,,,", "tab\tid,Bad id.,voice.wav,,,,",
                    f"{wide},Long in bytes.,voice.wav,,,,", f"{longest},Fine too.,voice.wav,,,,",
                    "no\u00a0break,Bad id.,voice.wav,,,,"]  # was refused as holding a control character
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert sorted(job.id for batch in plan.batches for job in batch) == ["ok", longest]
    errors = {failure["line"]: (failure["id"], failure["error"]) for failure in plan.failures}
    expected = {
        "3": "id 'ok' is also the id of line 2", "4": "not a plain file name", "5": "not a plain file name",
        "6": "unknown language 'xx-nope'", "7": "seed: expected an integer >= 0, got '-3'",
        "8": "ar_temp 'hot': expected a number", "9": "ar_temp nan is not allowed: it must be",
        "10": "top_k '2.5': expected an integer", "11": "no prompt: give the voice's audio file",
        "12": "line 12: 8 columns where the header has 7", "13": f"at most {synthesis.MAX_ID_BYTES} bytes",
        "14": "is a folder: give an audio file", "15": "has no letter or digit: nothing to speak",
        "16": "the prompt holds a NUL character", "17": "not a plain file name", "18": "not a plain file name",
        "19": f"at most {synthesis.MAX_ID_BYTES} bytes", "22": "line 22: the file ends inside a quoted cell",
        "21": "id 'no\\xa0break' is not a plain file name (no '/', '\\', leading '.', control characters or invisible "
              "ones, such as a no-break or zero-width space)",
    }
    assert sorted(errors, key=int) == sorted(expected, key=int)
    assert all(expected[line] in error for line, (_, error) in errors.items()), errors
    assert errors["8"][0] == "temp"  # each failure names its row's id too
    assert not (tmp_path / "out").exists()


def test_a_rows_bad_setting_is_named_as_its_column_and_the_commands_flags_as_flags(tmp_path):
    """A cell's value was named as the command line's flag (``--ar-temp nan``), which the command did not give; a JSON
    value of the wrong kind said "expected text" of a column that takes a number."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    rows = [{"id": "steps", "max_ar_steps": 0}, {"id": "temp", "ar_temp": "nan"}, {"id": "seed", "seed": True},
            {"id": "flag", "ar_temp": True}, {"id": "list", "max_ar_steps": [300]},
            {"id": "object", "top_k": {"k": 5}}, {"id": "floor", "ar_temp": 0.5}, {"id": "ok", "ar_temp": 0.9},
            {"id": "breakers", "dry_sequence_breakers": [1, 2]}]
    lines = [json.dumps({"text": "Fine.", "prompt": "voice.wav", **row}) for row in rows]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **{**dict.fromkeys(FLAG_SETTINGS), "min_ar_temp": 0.8})
    plan = synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert sorted(job.id for batch in plan.batches for job in batch) == ["breakers", "ok"], plan.failures
    errors = {failure["id"]: failure["error"] for failure in plan.failures}
    assert errors["steps"].startswith("max_ar_steps 0 is not allowed: it must be "), errors
    assert errors["temp"].startswith("ar_temp nan is not allowed: it must be "), errors
    assert errors["seed"] == "seed: expected an integer >= 0, got the JSON true"
    assert errors["flag"] == "ar_temp: expected a number, got the JSON true"
    assert errors["list"] == "max_ar_steps: expected an integer, got the JSON [300]"
    assert errors["object"] == 'top_k: expected an integer, got the JSON {"k": 5}'
    # the command's --min-ar-temp 0.8 is above this row's ar_temp: the flag the command gave keeps its name
    assert errors["floor"].startswith("--min-ar-temp 0.8 is not allowed: it must be at most"), errors
    assert not any("--" in error for row_id, error in errors.items() if row_id != "floor"), errors


def test_ids_naming_one_file_where_names_ignore_case_or_unicode_form_are_refused(tmp_path):
    """On macOS and Windows the second row's WAV replaced the first's, and both records named it."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    ids = ["Anna", "anna", "caf\u00e9", "cafe\u0301", "other", "straße", "strasse", "STRAẞE", "λογος", "ΛΟΓΟΣ"]  # é
    # composed, then e + combining accent; "ß" is no "ss" in any file system's case folding, its capital is "ẞ", and
    # a final "ς" is a "σ"
    lines = ["id,text,prompt", *(f"{row_id},Hello.,voice.wav" for row_id in ids)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert sorted(job.id for batch in plan.batches for job in batch) == sorted([*ids[0:5:2], *ids[5:7], ids[8]])
    errors = {failure["line"]: failure["error"] for failure in plan.failures}
    assert sorted(errors) == ["11", "3", "5", "9"], errors
    assert "'straße' of line 7 differ only in case" in errors["9"] and "'λογος' of line 10" in errors["11"]
    assert "'Anna' of line 2 differ only in case" in errors["3"] and f"{ids[2]!r} of line 4" in errors["5"]


def test_folders_in_the_places_of_a_rows_wav_or_of_the_records_are_found_before_any_row(tmp_path):
    """A folder named like a row's WAV stopped the run when that row was written; one named like failed.jsonl, after
    every row was spoken."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (tmp_path / "m.csv").write_text("id,text,prompt\ntaken,Hello.,voice.wav\nfree,Hello.,voice.wav\n",
                                    encoding="utf-8")
    out = synthesis.OutputFolder(tmp_path / "out")
    (tmp_path / "out" / "taken.wav").mkdir(parents=True)
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", out, flags)
    assert [job.id for batch in plan.batches for job in batch] == ["free"]
    assert "taken.wav is a folder: move it away" in plan.failures[0]["error"]
    for name in (synthesis.FAILED, synthesis.DONE):
        (tmp_path / "out" / name).mkdir()
        with pytest.raises(UsageError, match=f"{name} is a folder: the run keeps its records there"):
            out.check()
        (tmp_path / "out" / name).rmdir()
    (tmp_path / "out" / synthesis.PARTS).write_text("")
    with pytest.raises(UsageError, match="parts is a file"):
        out.check()


def test_a_row_whose_wav_would_replace_any_rows_voice_is_reported_and_the_voice_kept(tmp_path, monkeypatch):
    for name in ("voice.wav", "other.wav"):
        (tmp_path / name).write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    lines = ["id,text,prompt", "voice,Its WAV is the next row's voice.,other.wav", "next,Spoken.,voice.wav",
             "other,Its WAV is the first row's voice.,voice.wav"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path), flags)  # OUT_DIR: the same
    assert [job.id for batch in plan.batches for job in batch] == ["next"]
    errors = {failure["line"]: failure["error"] for failure in plan.failures}
    assert sorted(errors) == ["2", "4"]
    assert "voice.wav is the prompt of line 3" in errors["2"] and "other.wav is the prompt of line 2" in errors["4"]
    # the only row reading voice.wav was finished by an earlier run: the voice is still kept
    (tmp_path / "m.csv").write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    (tmp_path / "next.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (tmp_path / synthesis.DONE).write_text(json.dumps({"id": "next", "path": "next.wav"}) + "\n", encoding="utf-8")
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path), flags)
    assert plan.done == 1 and not plan.batches
    assert [(failure["line"], "is the prompt of line 3" in failure["error"]) for failure in plan.failures] == [
        ("2", True)]
    # OUT_DIR named relative to the working folder: its WAVs are still the voices they would replace
    monkeypatch.chdir(tmp_path)
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder("."), flags)
    assert plan.done == 1 and not plan.batches and [failure["line"] for failure in plan.failures] == ["2"]


def test_a_finished_row_whose_voice_moved_away_is_done_not_failed(tmp_path):
    """A re-run after the voices were moved reported every finished row as failed too (in both records, status 3)."""
    lines = ["id,text,prompt", "kept,Spoken before.,gone.wav", "kept,A second row with its id.,gone.wav",
             "new,Not spoken yet.,gone.wav"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (out / synthesis.DONE).write_text(json.dumps({"id": "kept", "path": "kept.wav"}) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(out), flags)
    assert plan.done == 1 and not plan.batches
    errors = {failure["line"]: failure["error"] for failure in plan.failures}
    assert sorted(errors) == ["3", "4"], errors
    assert "also the id of line 2" in errors["3"] and "prompt file not found" in errors["4"]


def test_a_row_edited_since_it_was_spoken_is_spoken_again(tmp_path, prompt_wav, cached_loading):
    """A re-run skipped a done row whose text had been edited: its WAV kept speaking the old text, without a word."""
    shutil.copy(prompt_wav, tmp_path / "voice.wav")

    def run(texts):
        rows = [f"{row_id},{text},voice.wav" for row_id, text in texts.items()]
        (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt", *rows]) + "\n", encoding="utf-8")
        status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS])
        assert status == 0, err
        assert ("audio s/s" in err) == ("wrote 0 row(s)" not in err), err  # a throughput table of what was spoken
        assert ("precision:" in err) == ("wrote 0 row(s)" not in err), err  # and the precision it was spoken in
        return next(line for line in err.splitlines() if line.startswith("wrote ")), wavs(tmp_path / "out")

    _, first = run({"kept": "Hello there.", "edited": "Good morning."})
    report, second = run({"kept": "Hello there.", "edited": "Good evening to all of you."})
    assert "wrote 1 row(s)" in report and "(1 done before, 1 spoken again: their cells, the model, its settings " \
                                          "or the seed changed since)" in report
    np.testing.assert_array_equal(first["kept"], second["kept"])
    assert first["edited"].shape != second["edited"].shape or not np.allclose(first["edited"], second["edited"])
    report, third = run({"kept": "Hello there.", "edited": "Good evening to all of you."})
    assert "wrote 0 row(s)" in report and "(2 done before)" in report
    # What the run reads is unchanged: a column added empty, a cell's spaces, the same rows as JSONL
    rows = ["kept,Hello there.,voice.wav,", "edited, Good evening to all of you. ,voice.wav,"]
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt,seed", *rows]) + "\n", encoding="utf-8")
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS])
    assert status == 0 and "wrote 0 row(s)" in err and "(2 done before)" in err, err
    assert "audio s/s" not in err  # nothing spoken: no throughput table of zeros
    lines = [json.dumps({"id": row_id, "text": text, "prompt": "voice.wav", "seed": None})
             for row_id, text in [("kept", "Hello there."), ("edited", "Good evening to all of you.")]]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, err = synthesize_main([tmp_path / "m.jsonl", tmp_path / "out", *FLAGS])
    assert status == 0 and "wrote 0 row(s)" in err and "(2 done before)" in err, err
    # Another flag, the same rows by another model, or with another language switch: spoken again (the first run's
    # WAVs were kept without a word)
    other_model = ["--ar-temp", "0.7", "--model", str(tmp_path / "other-model")]
    for other in (["--ar-temp", "0.7"], other_model, [*other_model, "--language-switch", "remove"]):
        if "--model" in other and not (tmp_path / "other-model").exists():
            for part in valle_hf.loading.load_model_and_processor("tiny-random"):
                part.save_pretrained(tmp_path / "other-model")
        status, err = synthesize_main([tmp_path / "m.jsonl", tmp_path / "out", *FLAGS, *other])
        assert status == 0 and "wrote 2 row(s)" in err and "(0 done before, 2 spoken again" in err, err


def test_a_wav_cut_short_since_its_run_is_spoken_again_with_a_warning(tmp_path, prompt_wav, cached_loading):
    """A re-run took a done row's WAV as done because it existed: one cut short since (by a copy, a full disk) was
    kept, without a word. A WAV left whole is kept."""
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\ncut,Hello there.,voice.wav\nwhole,Good morning.,voice.wav\n",
                                    encoding="utf-8")
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS])
    assert status == 0, err
    first = wavs(tmp_path / "out")
    cut = tmp_path / "out" / "cut.wav"
    cut.write_bytes(cut.read_bytes()[:-2 * 160])  # 160 16-bit samples fewer, the header as written
    with logged_warnings() as logged:
        status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS])
    assert status == 0 and "wrote 1 row(s)" in err and "(1 done before" in err, err
    assert "the WAV of row(s) 'cut' in" in logged.out and "is not the length its record says" in logged.out
    assert_same_wavs(first, wavs(tmp_path / "out"))


def test_a_done_row_is_spoken_again_under_another_language_but_not_for_its_columns_reordered(tmp_path):
    """The run's --language speaks a row without one (its cells unchanged); the order of the columns speaks none."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    manifest, out = tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out")
    manifest.write_text("id,text,prompt\nrow,Hello.,voice.wav\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    job = synthesis.plan_synthesis(manifest, out, flags, language="en").batches[0][0]
    out.root.mkdir()
    (out.root / "row.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    record = {"id": "row", "path": "row.wav", "cells": job.cells, "run": job.run}
    (out.root / synthesis.DONE).write_text(json.dumps(record) + "\n", encoding="utf-8")
    manifest.write_text("prompt,text,id\nvoice.wav,Hello.,row\n", encoding="utf-8")
    plan = synthesis.plan_synthesis(manifest, out, flags, language="en")
    assert (plan.done, plan.edited, plan.batches) == (1, 0, [])
    plan = synthesis.plan_synthesis(manifest, out, flags, language="de")
    assert (plan.done, plan.edited, [[job.id for job in batch] for batch in plan.batches]) == (0, 1, [["row"]])


def test_a_done_row_is_spoken_again_under_another_language_switch_or_seed_given_but_not_on_a_plain_resume(tmp_path):
    """A re-run with --language-switch remove, or with --seed 2 after --seed 1, kept the WAVs spoken otherwise."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    manifest, out = tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out")
    manifest.write_text("id,text,prompt,seed\nrow,Hello.,voice.wav,\nown,Hello.,voice.wav,7\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    jobs = synthesis.plan_synthesis(manifest, out, flags, seed=1).batches[0]
    out.root.mkdir()
    for job in jobs:
        (out.root / f"{job.id}.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    records = [{"id": job.id, "path": f"{job.id}.wav", "cells": job.cells, "run": job.run, "seed": job.seed}
               for job in jobs]
    (out.root / synthesis.DONE).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")

    def respoken(**run):
        plan = synthesis.plan_synthesis(manifest, out, flags, **run)
        assert plan.done + plan.edited == 2, plan
        return sorted(job.id for batch in plan.batches for job in batch)

    assert respoken(seed=1) == respoken() == respoken(language_switch="keep") == []
    assert respoken(seed=2) == ["row"]  # the row with a seed of its own keeps it
    assert respoken(seed=1, language_switch="remove") == respoken(language_switch="remove") == ["own", "row"]
    with pytest.raises(synthesis.UsageError, match="language_switch= in Python.*got 'drop'"):
        synthesis.plan_synthesis(manifest, out, flags, language_switch="drop")


def test_a_done_record_edited_without_its_id_or_path_is_left_out_with_a_warning(tmp_path):
    """A hand-edited record ({} or without its path) made an existing WAV count as its row's, or vanished unsaid."""
    lines = ["id,text,prompt", "bare,Spoken?,voice.wav", "pathless,Spoken?,voice.wav", "whole,Spoken.,voice.wav"]
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("bare", "pathless", "whole"):
        (out / f"{name}.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    records = [{}, {"id": "pathless"}, {"id": "whole", "path": "whole.wav"}]
    (out / synthesis.DONE).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with logged_warnings() as logged:
        plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(out), flags)
    assert plan.done == 1 and not plan.failures
    assert sorted(job.id for batch in plan.batches for job in batch) == ["bare", "pathless"]
    assert f"{out / synthesis.DONE}: line(s) 1, 2 name no row's WAV" in logged.out


def test_a_row_of_empty_cells_fails_by_its_line(tmp_path):
    """A spreadsheet's emptied row (",,") was skipped in silence, where a blank line has nothing to lose."""
    plan = _plan_without_flags(tmp_path, "id,text,prompt\nok,Hello.,voice.wav\n,,\n\n")
    assert [(failure["line"], "no id" in failure["error"]) for failure in plan.failures] == [("3", True)]


def test_a_mistake_in_the_command_line_is_said_by_the_main_process_alone(tmp_path, monkeypatch, capsys):
    """Under a launcher each of the N processes printed the same `error:` line for one mistyped flag; a mistake a
    process finds in its own files (its node's OUT_DIR) is still said by that process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    (tmp_path / "taken").write_text("a file", encoding="utf-8")
    mistakes = [["m.csv", str(tmp_path / "out"), "--ar-temp", "nan"], ["m.csv", str(tmp_path / "out"), "--bach-size"],
                ["m.csv", str(tmp_path / "out"), "--language", "xx-nope"]]
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert [synthesis.main(argv) for argv in mistakes] == [1, 1, 1]
        said = capsys.readouterr().err.splitlines()
        assert len(said) == (0 if rank == "1" else 3), said
        assert synthesis.main(["m.csv", str(tmp_path / "taken"), "--device", "cpu"]) == 1
        assert "taken is a file" in capsys.readouterr().err

    def missing(*_):  # a package missing on this process's machine only
        raise MissingDependencyError("espeak-ng is not installed")

    monkeypatch.setattr(synthesis, "resolve_language", missing)
    monkeypatch.setenv("RANK", "1")
    assert synthesis.main(["m.csv", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == "error: espeak-ng is not installed\n"


@pytest.mark.parametrize("header, named", [
    ("id,te\u200bxt,prompt", "rename its column 'te\\u200bxt' (did you mean text?)"),
    ("id,text,prompt,ar_temp\u200b", "unknown column(s) 'ar_temp\\u200b' (did you mean ar_temp?)"),
])
def test_a_column_name_with_a_character_one_cannot_see_is_shown_with_its_escapes(tmp_path, header, named):
    """A zero-width space copied into a header was named unseen: "rename its column te\u200bxt (did you mean text?)"
    read as a column the file has."""
    (tmp_path / "m.csv").write_text(f"{header}\na,Hi.,voice.wav,0.5\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with pytest.raises(UsageError) as refused:
        synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert named in str(refused.value)


@pytest.mark.parametrize("name, header", [("m.tsv", "id,text,prompt"), ("m.tsv", "id;text;prompt")])
def test_a_header_another_layout_left_whole_is_said_to_be_in_another_layout(tmp_path, name, header):
    """A CSV named .tsv was told to "rename its column id,text,prompt (did you mean prompt?)"."""
    (tmp_path / name).write_text(f"{header}\na,Hi.,voice.wav\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with pytest.raises(UsageError, match="is it in another layout") as refused:
        synthesis.plan_synthesis(tmp_path / name, synthesis.OutputFolder(tmp_path / "out"), flags)
    assert "did you mean" not in str(refused.value)


def _plan_without_flags(tmp_path, manifest: str):
    """The plan of `manifest` (CSV text, its prompts "voice.wav": the example prompt) with no flag given."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (tmp_path / "m.csv").write_text(manifest, encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    return synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)


def test_a_text_its_language_cannot_read_fails_in_the_plan(tmp_path):
    """Han characters in English text: found only when the row was spoken, after the model had loaded."""
    plan = _plan_without_flags(tmp_path, "id,text,prompt\nok,Hello.,voice.wav\nhan,Hello \u4e16\u754c.,voice.wav\n")
    assert [job.id for batch in plan.batches for job in batch] == ["ok"]
    assert [(failure["id"], "Chinese or Japanese characters" in failure["error"]) for failure in plan.failures] == [
        ("han", True)]


def test_cells_with_spaces_around_them_are_read_as_their_values(tmp_path):
    """A spreadsheet's padded cells: the id named the file ' spaced .wav', the language was unknown."""
    plan = _plan_without_flags(tmp_path, "id,text,prompt,language,seed\n spaced , Hello. , voice.wav , fr , 3 \n")
    assert not plan.failures, plan.failures
    job = plan.batches[0][0]
    assert (job.id, job.sentences, job.language, job.seed) == ("spaced", ["Hello."], "fr", 3)
    assert job.prompt == (str((tmp_path / "voice.wav").resolve()),)


def test_a_done_row_edited_into_one_that_cannot_be_spoken_fails_and_an_older_record_is_taken_as_unedited(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("edited", "older"):
        (out / f"{name}.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    lines = ["id,text,prompt", "edited,Spoken before.,gone.wav", "older,Spoken before.,gone.wav"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = synthesis.read_table(tmp_path / "m.csv", "auto")
    digest = synthesis.row_digest(table.rows[0])
    records = [{"id": "edited", "path": "edited.wav", "cells": digest.translate(str.maketrans("0123456789abcdef",
                                                                                            "123456789abcdef0"))},
               {"id": "older", "path": "older.wav"}]  # written before done records kept the cells
    (out / synthesis.DONE).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(out), flags)
    assert plan.done == 1 and not plan.batches
    assert [(failure["id"], "prompt file not found" in failure["error"]) for failure in plan.failures] == [
        ("edited", True)]


def test_jsonl_values_that_are_not_text_are_refused_by_line(tmp_path):
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    lines = ['{"id": "ok", "text": "Fine.", "prompt": "voice.wav", "seed": 3}',
             '{"id": "list", "text": ["a", "b"], "prompt": "voice.wav"}',
             '{"id": "object", "text": {"x": 1}, "prompt": "voice.wav"}',
             '{"id": "flag", "text": "Fine.", "prompt": "voice.wav", "language": true}',
             '{"id": "twice", "text": "Fine.", "prompt": "voice.wav", "seed": 1, "seed": 2}',
             '{"id": ["a"], "text": "Fine.", "prompt": "voice.wav"}',  # stopped the whole plan
             '{"id": "numbers", "text": "Fine.", "prompt": ["voice.wav", 5, null]}',  # was named prompt_audio
             '{"id": "files", "text": "Fine.", "prompt": ["voice.wav", "voice.wav"]}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert [job.id for batch in plan.batches for job in batch] == ["ok", "files"]
    errors = {failure["line"]: failure["error"] for failure in plan.failures}
    assert 'text: expected text, got the JSON ["a", "b"]' in errors["2"]
    assert 'text: expected text, got the JSON {"x": 1}' in errors["3"]
    assert "language: expected text, got the JSON true" in errors["4"]
    assert "the key seed appears twice" in errors["5"]
    assert 'id: expected text, got the JSON ["a"]' in errors["6"]
    assert [failure["id"] for failure in plan.failures if failure["line"] == "6"] == [["a"]]  # as written, not null
    assert "prompt: expected text or a list of texts, got the JSON 5 in its list: list the voice's audio" in errors["7"]


def test_whole_number_seeds_written_as_decimals_are_those_integers(tmp_path):
    """JSON writers and spreadsheets store an integer column with missing cells as floats (3.0): it was refused, and
    still was for the integer sampler flags (max_ar_steps 5.0) after seeds took it."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    lines = ['{"id": "float", "text": "Fine.", "prompt": "voice.wav", "seed": 3.0, "max_ar_steps": 5.0}',
             '{"id": "text", "text": "Fine.", "prompt": "voice.wav", "seed": "1e3", "top_k": "2e1"}',
             '{"id": "zero", "text": "Fine.", "prompt": "voice.wav", "seed": "0e999999999"}',
             '{"id": "half", "text": "Fine.", "prompt": "voice.wav", "seed": 3.5}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags)
    jobs = {job.id: job for batch in plan.batches for job in batch}
    assert {row_id: job.seed for row_id, job in jobs.items()} == {"float": 3, "text": 1000, "zero": 0}
    assert jobs["float"].settings["max_new_tokens"] == 5 and jobs["text"].settings["top_k"] == 20
    assert [(failure["id"], failure["error"]) for failure in plan.failures] == [
        ("half", "seed: expected an integer >= 0, got '3.5'")]
    # the run's seed may be 0 too, for the rows without one
    lines = ['{"id": "unseeded", "text": "Fine.", "prompt": "voice.wav"}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plan = synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags, seed=0)
    assert plan.seed == 0 and [job.seed for batch in plan.batches for job in batch] == [0]


def test_a_semicolon_manifest_reads_decimal_commas_and_a_jsonl_text_on_two_lines_is_refused(tmp_path):
    """A spreadsheet saves semicolons where the comma is the decimal mark, and writes 0,7 there: every row with a
    number failed ("expected a number"). A JSON string's line break was spoken, where a CSV cell's is refused."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    (tmp_path / "m.csv").write_text("\ufeffid;text;prompt;ar_temp;top_p;dry_multiplier;dry_sequence_breakers\n"
                                    "a;Fine.;voice.wav;0,7;1;0,5;1,2\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert plan.failures == []
    settings = plan.batches[0][0].settings
    read = (settings["temperature"], settings["dry_multiplier"], settings["dry_sequence_breakers"])
    assert read == (0.7, 0.5, [1, 2])
    (tmp_path / "m.csv").write_text("id;text;prompt;top_k;beam_width\na;Fine.;voice.wav;2,0;1\n"
                                    "b;Fine.;voice.wav;1,5;1\n", encoding="utf-8")  # a count: whole, or as written
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert [job.settings["top_k"] for batch in plan.batches for job in batch] == [2]
    assert [failure["error"] for failure in plan.failures] == ["top_k '1,5': expected an integer"]
    (tmp_path / "m.csv").write_text("id,text,prompt,ar_temp\na,Fine.,voice.wav,\"0,7\"\n", encoding="utf-8")
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert [failure["error"] for failure in plan.failures] == ["ar_temp '0,7': expected a number"]  # commas: a point
    (tmp_path / "m.jsonl").write_text('{"id": "a", "text": "One.\\nTwo.", "prompt": "voice.wav"}\n', encoding="utf-8")
    plan = synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert [failure["error"] for failure in plan.failures] == [
        "text holds a line break (a text must be on one line): join its lines, or give each its own row"]


def test_a_column_named_twice_in_a_pipe_separated_header_is_refused(tmp_path):
    """'|'-separated files are read with an optional header: the second text column was spoken in silence."""
    (tmp_path / "m.csv").write_text("id|text|prompt|text\nx|Hello.|voice.wav|Bye.\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with pytest.raises(UsageError, match="names the column 'text' twice"):
        synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)


def test_a_jsonl_manifest_without_one_json_line_says_why(tmp_path):
    """Python's dicts written as lines: the error said the file had no id column and asked to name it .jsonl."""
    rows = [{"id": "a", "text": "Hello.", "prompt": "voice.wav"}, {"id": "b", "text": "Hi.", "prompt": "voice.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with pytest.raises(UsageError, match=r"no line can be read \(line 1: not JSON .*write one JSON object per line"):
        synthesis.plan_synthesis(tmp_path / "m.jsonl", synthesis.OutputFolder(tmp_path / "out"), flags)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5", "nan", "1e3", "2.0"])
def test_the_batch_size_is_read_as_a_count(value, tmp_path):
    """--batch-size was argparse's int: 1e3 and 2.0 were refused ("invalid int value") where the count flags read
    whole numbers so written, and 0 was refused after parsing, in words of its own."""
    parser = synthesis.build_parser()
    argv = [str(tmp_path / "m.csv"), str(tmp_path / "out"), f"--batch-size={value}"]
    try:
        count = count_value(value)
    except synthesis.argparse.ArgumentTypeError as error:
        with pytest.raises(UsageError) as refused:
            parser.parse_args(argv)
        assert str(refused.value) == f"argument --batch-size: {error} (see {parser.prog} --help)"
    else:
        assert parser.parse_args(argv).batch_size == count


@pytest.mark.parametrize("command", ["synthesize", "cli"])
def test_an_empty_language_is_refused_as_an_empty_name(command, tmp_path):
    """--language "" (an unset variable) was taken for a language: "--language : unknown language ''"."""
    from valle_hf import cli

    module, argv = (synthesis, [tmp_path / "m.csv", tmp_path / "out"]) if command == "synthesize" else (
        cli, ["Hi.", tmp_path / "ref.wav", tmp_path / "o.wav"])
    with pytest.raises(UsageError, match=r"^argument --language: is empty \(an unset shell variable\?\)"):
        module.build_parser().parse_args([*map(str, argv), "--language", ""])


@pytest.mark.parametrize(("argument", "message"), [
    ({"seed": -1}, "seed= in Python) must be an integer >= 0"), ({"seed": "abc"}, "must be an integer >= 0"),
    ({"batch_size": "4"}, "batch_size= in Python) must be an integer >= 1"),
    ({"batch_size": True}, "batch_size= in Python) must be an integer >= 1, got True"),
    ({"language": "xx-nope"}, "unknown language"),
    ({"ar_temp": "hot"}, "--ar-temp hot is not allowed"), ({"max_nar_levels": 99}, "--max-nar-levels 99"),
    ({"language_switch": "drop"}, "language_switch= in Python) must be one of keep, remove"),
])
def test_the_python_api_refuses_bad_run_settings_before_any_row(corpus, tmp_path, cached_loading, argument,
                                                                 message):
    model, processor = valle_hf.loading.load_model_and_processor("tiny-random")
    with pytest.raises(UsageError, match=re.escape(message)):
        synthesis.synthesize(corpus, tmp_path / "out", model, processor, **argument)
    assert not (tmp_path / "out").exists()


def test_the_python_api_speaks_a_manifest_with_flags_by_name(corpus, tmp_path, reference, monkeypatch):
    """Its paths given from the home folder, "~/...", as no shell expands them in Python."""
    from valle_hf.loading import load_model_and_processor

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # where a "~" read as a folder's name would write
    (tmp_path / "corpus").symlink_to(corpus.parent)
    model, processor = load_model_and_processor("tiny-random")
    plan, report = synthesis.synthesize(f"~/corpus/{corpus.name}", "~/out", model, processor, seed=7,
                                        max_ar_steps=12, nar_dtype="float32", batch_size=16, progress=False)
    assert report.rows == 10 and report.failed == 0 and len(plan.failures) == 2 and report.audio_seconds > 0
    assert [record["id"] for record in records(tmp_path / "out" / "failed.jsonl")] == list(BAD)  # the plan's too
    assert_same_wavs(wavs(tmp_path / "out"), wavs(reference))
    with pytest.raises(UsageError, match="unknown sampler flag"):
        synthesis.synthesize(corpus, tmp_path / "out", model, processor, temperature=0.5)


def test_the_run_seed_is_printed_only_when_a_row_takes_it(tmp_path, prompt_wav, cached_loading):
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    flags = list(FLAGS)
    del flags[flags.index("--seed"): flags.index("--seed") + 2]  # no run seed given: a random one
    # a --seed given is not printed back: the command already says it
    for name, seeds, given, printed in (("own", ("1", "2"), False, False), ("mixed", ("1", ""), False, True),
                                        ("given", ("1", ""), True, False)):
        rows = [f"{name}{index},Hello.,voice.wav,{seed}" for index, seed in enumerate(seeds)]
        (tmp_path / f"{name}.csv").write_text("\n".join(["id,text,prompt,seed", *rows]) + "\n", encoding="utf-8")
        status, err = synthesize_main([tmp_path / f"{name}.csv", tmp_path / name, *(FLAGS if given else flags)])
        assert status == 0 and ("seed: " in err) == printed, err
        assert err.strip().splitlines()[-1] == "precision: AR float32, NAR float32 (--dtype float32)"  # what ran


def test_a_row_whose_audio_is_empty_or_nan_is_reported_and_the_run_goes_on(tmp_path, prompt_wav, cached_loading,
                                                                            monkeypatch, capsys):
    from valle_hf.modeling import VallEForConditionalGeneration

    generate = VallEForConditionalGeneration.generate

    def broken_rows(self, **kwargs):  # rows found by their seeds: r0's and r2's second sentence stop at once, r1 NaN
        out = generate(self, **kwargs)
        for row, seed in enumerate(kwargs["seeds"]):
            if seed in (100, 301):
                out.audio[row] = out.audio[row][:0]
            elif seed == 200:
                out.audio[row] = torch.full_like(out.audio[row], float("nan"))
        return out

    monkeypatch.setattr(VallEForConditionalGeneration, "generate", broken_rows)
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    rows = ["r0,Hello.,voice.wav,100", "r1,Hello.,voice.wav,200", "r2,One. Two.,voice.wav,300",
            "r3,Hello.,voice.wav,400"]
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt,seed", *rows]) + "\n", encoding="utf-8")
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS, "--batch-size", "8"])  # one batch
    assert status == synthesis.SOME_ROWS_FAILED, err
    failed = {record["id"]: record["error"] for record in records(tmp_path / "out" / "failed.jsonl")}
    assert sorted(failed) == ["r0", "r1", "r2"], failed
    assert "sentence 1 ('Hello.') of 1 came out empty" in failed["r0"] and "NaN" in failed["r1"]
    assert "sentence 2 ('Two.') of 2 came out empty" in failed["r2"]
    assert sorted(wavs(tmp_path / "out")) == ["r3"]
    # no row is printed on its own (these were, on stdout, and the plan's failures were not): the summary counts them
    assert capsys.readouterr().out == ""
    assert "(r0)" not in err and f"3 failed (listed in {tmp_path / 'out' / 'failed.jsonl'})" in err, err


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 136000000000 bytes."),
], ids=["cuda", "cpu"])
def test_a_batch_out_of_memory_ends_the_run_in_one_line_keeping_the_rows_written(error, tmp_path, prompt_wav,
                                                                               cached_loading, monkeypatch):
    """A --batch-size too large for the device ended the run with torch's traceback (on the CPU, the allocator's
    failure is a plain RuntimeError)."""
    from valle_hf.modeling import VallEForConditionalGeneration

    generate, calls = VallEForConditionalGeneration.generate, []

    def second_call_runs_out(self, **kwargs):
        calls.append(len(kwargs["seeds"]))
        if len(calls) == 2:
            raise error
        return generate(self, **kwargs)

    monkeypatch.setattr(VallEForConditionalGeneration, "generate", second_call_runs_out)
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    rows = ["short,Hi.,voice.wav", "long,The first sentence. And the second one.,voice.wav"]  # shortest first
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt", *rows]) + "\n", encoding="utf-8")
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS, "--batch-size", "2"])
    assert status == 1 and calls == [1, 2], err
    assert re.fullmatch(r"error: out of memory on cpu speaking a batch of 2 sentence\(s\) \(.*memory.*\).*"
                        r"lower --batch-size.*run the same command again to resume", err.strip().splitlines()[-1])
    assert [path.name for path in (tmp_path / "out").glob("*.wav")] == ["short.wav"]


def test_beams_the_free_memory_cannot_hold_end_the_run_in_one_line_keeping_the_rows_written(tmp_path, prompt_wav,
                                                                                         cached_loading, monkeypatch):
    """A --beam-width that `generate` refused before its first step failed every row alike, each in failed.jsonl
    (exit 3): every batch asked for the same memory."""
    from valle_hf import generation

    calls = []

    def free_for_the_first_call_only(device):
        calls.append(device)
        return None if len(calls) == 1 else 0  # None: not known, so the first call runs

    monkeypatch.setattr(generation, "free_memory", free_for_the_first_call_only)
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    rows = ["short,Hi.,voice.wav", "long,The first sentence. And the second one.,voice.wav"]  # shortest first
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt", *rows]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, err = synthesize_main([tmp_path / "m.csv", out, *FLAGS, "--batch-size", "1", "--beam-width", "2"])
    assert status == 1 and len(calls) == 2, err
    assert re.fullmatch(r"error: 1 row\(s\) x 2 \(--beam-width=2\) need .* GB .*: lower --beam-width, or give fewer "
                        r"or shorter texts at once \(a lower --batch-size\); the rows written so far are kept; run the "
                        r"same command again to resume", err.strip().splitlines()[-1]), err
    assert [path.name for path in out.glob("*.wav")] == ["short.wav"] and not (out / "failed.jsonl").exists()


def test_beams_a_rows_cell_asks_for_beyond_the_free_memory_fail_that_row_in_the_columns_words(tmp_path, prompt_wav,
                                                                                             cached_loading,
                                                                                             monkeypatch):
    """A beam_width cell the memory cannot hold ended the whole run, naming a --beam-width flag never given (and
    every later run alike, at that row): only its row fails, the others are spoken."""
    from valle_hf import generation

    batches, speak = [], synthesis.speak_batch  # no memory free for a batch with beams
    monkeypatch.setattr(synthesis, "speak_batch", lambda model, processor, jobs, *args: batches.append(jobs[0]) or
                        speak(model, processor, jobs, *args))
    monkeypatch.setattr(generation, "free_memory", lambda device: 0 if batches[-1].settings.get("num_beams") else None)
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    rows = ["plain,Hi.,voice.wav,", "wide,Hello.,voice.wav,3", "plain2,Yo.,voice.wav,"]
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt,beam_width", *rows]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, err = synthesize_main([tmp_path / "m.csv", out, *FLAGS])
    assert status == synthesis.SOME_ROWS_FAILED, err
    assert sorted(path.stem for path in out.glob("*.wav")) == ["plain", "plain2"]
    [failure] = records(out / "failed.jsonl")
    assert failure["id"] == "wide" and "x 3 (beam_width=3)" in failure["error"] and "lower beam_width" in \
        failure["error"] and "--beam-width" not in failure["error"], failure


def test_rows_whose_cells_give_a_setting_are_batched_apart_from_rows_the_flags_give_it():
    """A batch's messages name a setting by the manifest's column or by the flag: rows that differ in that (and only
    in that) never share a batch."""
    flagged = synthesis.Job("a", "2", ["Hi."], "en", (), 0, {"num_beams": 3}, "", "")
    cell = dataclasses.replace(flagged, id="b", cell_settings=frozenset({"beam_width"}))
    assert synthesis._batches([flagged, cell], 8) == [[flagged], [cell]]


@pytest.mark.parametrize("launcher", ["ACCELERATE_MIXED_PRECISION", "TORCHELASTIC_RUN_ID"])
def test_a_run_with_failed_rows_ends_with_0_under_a_launcher_of_one_process(launcher, tmp_path, monkeypatch):
    """`accelerate launch --cpu` starts one process: its status 3 became accelerate's CalledProcessError traceback
    (torchrun's crash report with `--multi_gpu --num_processes 1`)."""
    (tmp_path / "m.csv").write_text("id,text,prompt\nlost,Hello.,missing.wav\n", encoding="utf-8")
    arguments = [tmp_path / "m.csv", tmp_path / "out", *FLAGS]
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert synthesize_main(arguments)[0] == synthesis.SOME_ROWS_FAILED
    monkeypatch.setenv(launcher, "no")
    status, err = synthesize_main(arguments)
    assert status == 0 and "1 failed" in err, err
    assert [record["id"] for record in records(tmp_path / "out" / "failed.jsonl")] == ["lost"]


def test_a_run_of_several_processes_ends_with_0_whatever_started_them(monkeypatch):
    """Processes started without torchrun's or accelerate's variables (srun, mpirun) ended with 3 each, which their
    launcher reports as a crash (each process of several ended with 0 before launchers of one were told apart)."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert synthesis._exit_status(True, 1) == synthesis.SOME_ROWS_FAILED
    assert synthesis._exit_status(True, 2) == synthesis._exit_status(False, 1) == 0


def test_a_row_cut_at_the_step_limit_is_named_by_its_id(tmp_path, prompt_wav, cached_loading):
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    rows = ["alpha,Hello.,voice.wav,100", "beta,One. Two.,voice.wav,200"]
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt,seed", *rows]) + "\n", encoding="utf-8")
    flags = [*FLAGS[:FLAGS.index("--max-ar-steps") + 1], "1", *FLAGS[FLAGS.index("--max-ar-steps") + 2:]]
    with logged_warnings() as logged:
        status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *flags, "--batch-size", "8"])
    assert status == 0, err
    stopped = {record["id"]: record["stopped"] for record in records(tmp_path / "out" / "done.jsonl")}
    assert stopped == {"alpha": False, "beta": False}, stopped  # one step: no row reaches its stop token
    warning = next(line for line in logged.out.splitlines() if "reached the length limit" in line)
    named = warning.split(" reached ")[0].removeprefix("row(s) ").split(", ")  # the batch may order its rows anyhow
    assert sorted(named) == ["id 'alpha'", "id 'beta' (sentence 1 of 2)", "id 'beta' (sentence 2 of 2)"], warning


def test_a_rerun_skips_finished_rows_and_redoes_a_deleted_one(corpus, reference, tmp_path, cached_loading):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "r03.wav").unlink()
    before = {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav")}
    status, err = synthesize_main([corpus, out, *FLAGS])
    assert status == synthesis.SOME_ROWS_FAILED, err
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav") if path.name in before} == before
    assert "wrote 1 row(s)" in err and "(9 done before)" in err
    assert sorted(record["id"] for record in records(out / "done.jsonl")) == sorted(wavs(reference))
    assert_same_wavs(wavs(out), wavs(reference))
    status, err = synthesize_main([corpus, out, *FLAGS])  # nothing left: no model is loaded, the report says so
    assert status == synthesis.SOME_ROWS_FAILED and "wrote 0 row(s)" in err and "(10 done before)" in err, err
    assert len(records(out / "failed.jsonl")) == 2


# ---------------------------------------------------------------------------------------------------- real processes
def test_two_processes_under_accelerate_give_the_same_files(corpus, reference, tmp_path):
    """Each process also takes the process group down before it exits: one that left while the main one still wrote
    its report tore the group down at the interpreter's exit, and once aborted there, a crash of the run."""
    out, run = tmp_path / "out", tmp_path / "run.py"
    run.write_text(f"{GROUP_AT_EXIT}import sys\nfrom valle_hf.synthesize import main\nsys.exit(main())\n",
                   encoding="utf-8")
    command = [*accelerate_launch(2), str(run), str(corpus), str(out), *FLAGS, "--batch-size", "4", "--device", "cpu"]
    result = subprocess.run(command, env=subprocess_environment(), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("group up at exit: False") == 2, result.stderr[-3000:]
    table = {line.split()[0]: line.split()[1:] for line in result.stderr.splitlines()
             if line.split()[:1] in (["0"], ["1"], ["all"])}
    assert sorted(table) == ["0", "1", "all"] and int(table["0"][0]) > 0 and int(table["1"][0]) > 0, result.stderr
    assert int(table["0"][0]) + int(table["1"][0]) == int(table["all"][0]) == 10  # the rows were dealt out
    assert_same_wavs(wavs(out), wavs(reference))
    key = lambda record: record["id"]  # noqa: E731
    assert sorted(records(out / "done.jsonl"), key=key) == sorted(records(reference / "done.jsonl"), key=key)
    assert records(out / "failed.jsonl") == records(reference / "failed.jsonl")


@pytest.mark.parametrize("main", [True, False])
def test_every_process_runs_in_the_precision_the_main_process_chose(main, monkeypatch):
    from types import SimpleNamespace

    from valle_hf import hardware

    chosen = hardware.Precision(torch.bfloat16, None, "NAR bfloat16", "measured by the main process")
    other = hardware.Precision(torch.float32, None, "NAR float32", "measured by this process")
    monkeypatch.setattr(synthesis, "model_precision", lambda args, rows: chosen if main else other)
    monkeypatch.setattr(synthesis, "_broadcast", lambda state, value: (chosen, False))  # the main process's value
    state = SimpleNamespace(is_main_process=main, num_processes=2, process_index=0 if main else 1)
    job = SimpleNamespace(sentences=["Hi."])
    assert synthesis._run_precision(state, SimpleNamespace(batch_size=8), [[job]]) is chosen


@pytest.mark.parametrize("main", [True, False])
def test_a_mistake_the_main_process_finds_ends_every_process_with_one_error_line(main, monkeypatch, capsys):
    """The others waited for a plan that never came, then printed a lost connection's traceback."""
    from types import SimpleNamespace

    sent = []

    def broadcast(state, value):  # what every process gets: the main process's value
        sent.append(value)
        return (None, True) if not main else value

    def plan():
        raise UsageError("bad manifest")

    monkeypatch.setattr(synthesis, "_broadcast", broadcast)
    state = SimpleNamespace(is_main_process=main, num_processes=2, process_index=0 if main else 1)
    with pytest.raises(UsageError if main else SystemExit) as raised:
        synthesis._on_main(state, plan)
    assert sent == [(None, True)] if main else raised.value.code == 1
    assert capsys.readouterr().err == ""  # the main process's entry point prints the one line


@pytest.mark.parametrize(("failing", "index", "raised"), [
    ({0: "model not found: m"}, 0, "model not found: m"),  # the main process alone: its own error
    ({0: "model not found: m", 1: "model not found: m"}, 0, "model not found: m"),  # alike: said once
    ({1: "no such device"}, 0, "process 1: no such device"),  # another process's: named
    ({0: "model not found: m", 1: "no such device"}, 0, "process 0: model not found: m; process 1: no such device"),
    ({0: "model not found: m"}, 1, None),  # the others end with status 1 and print nothing
    ({1: "no such device"}, 1, None),
])
def test_a_model_that_fails_to_load_in_any_process_ends_every_process_with_one_error_line(failing, index, raised,
                                                                                         monkeypatch, capsys):
    """A process whose model failed to load left the others waiting for it; they printed a lost connection's
    traceback."""
    from types import SimpleNamespace

    def load():
        if index in failing:
            raise ModelNotFoundError(failing[index])
        return "loaded"

    every, sent = [(rank, failing.get(rank)) for rank in range(2)], []
    monkeypatch.setattr(synthesis, "_gather", lambda state, value: sent.append(value) or every)
    state = SimpleNamespace(is_main_process=index == 0, num_processes=2, process_index=index)
    with pytest.raises(VallEError if raised else SystemExit) as caught:
        synthesis._load_together(state, load)
    assert sent == [every[index]]
    if raised:
        assert str(caught.value) == raised
        assert isinstance(caught.value, ModelNotFoundError) == (failing.get(0) == raised)  # the main one's own
    else:
        assert caught.value.code == 1
    assert capsys.readouterr().err == ""  # the main process's entry point prints the one line


def test_a_model_that_loads_in_every_process_is_each_ones(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(synthesis, "_gather", lambda state, value: [(0, None), (1, None)])
    state = SimpleNamespace(is_main_process=False, num_processes=2, process_index=1)
    assert synthesis._load_together(state, lambda: "loaded") == "loaded"


def test_a_flag_the_model_cannot_take_is_refused_before_any_row(tmp_path, prompt_wav):
    """Checked against the model once it loads (its RVQ levels, its layers): each batch of rows failed alike."""
    manifest, out = tmp_path / "m.csv", tmp_path / "out"
    manifest.write_text(f"id,text,prompt\na,Hello.,{prompt_wav}\n", encoding="utf-8")
    args = synthesis.build_parser().parse_args([str(manifest), str(out), *FLAGS])
    levels = synthesis.load_model(args)[0].config.num_rvq_levels
    status, err = synthesize_main([manifest, out, *FLAGS, "--max-nar-levels", str(levels)])
    assert status == 1 and f"error: --max-nar-levels {levels} is not allowed" in err, err
    assert not out.exists()


def test_a_model_not_found_under_a_launcher_is_said_once_without_a_traceback(tmp_path, prompt_wav):
    """One row for two processes: the second has nothing to speak and loads no model, and it printed a lost
    connection's traceback when the main process failed to load the model."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text,prompt\na,Hello.,{prompt_wav}\n", encoding="utf-8")
    command = [*accelerate_launch(2), "-m", "valle_hf.synthesize", str(manifest), str(tmp_path / "out"),
               "--model", str(tmp_path / "absent"), "--device", "cpu", "--no-progress"]
    result = subprocess.run(command, env=subprocess_environment(), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.count("error: ") == 1 and "error: model not found" in result.stderr, result.stderr[-3000:]
    assert "[rank" not in result.stderr, result.stderr[-3000:]  # no process's own traceback
    assert not (tmp_path / "out").exists()


def test_a_run_killed_half_way_resumes_with_every_row_done_once(corpus, reference, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "valle_hf.synthesize", str(corpus), str(out), *FLAGS, "--batch-size", "1"]
    process = subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    part = out / "parts" / "done.0.jsonl"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not (part.is_file() and part.read_bytes().count(b"\n") >= 2) and process.poll() is None:
        assert time.monotonic() < deadline, "no row was finished in time"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-3000:]
    finished = len(records(part))
    assert 2 <= finished < 10, f"the kill came after {finished} rows: it must land half-way"
    # what a kill can also cut: a WAV in the middle of its write, a record in the middle of its line
    (out / ".r12.wav.killed.part").write_bytes(b"RIFF")
    with open(part, "ab") as handle:
        handle.write(b'{"id": "r1')
    status = subprocess.run(command, env=subprocess_environment(), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT).returncode
    assert status == synthesis.SOME_ROWS_FAILED
    done = [record["id"] for record in records(out / "done.jsonl")]
    assert sorted(done) == sorted(wavs(reference)) and len(done) == len(set(done))  # each row once
    assert not list(out.glob(".*")) and not (out / "parts").exists()  # no partial file
    assert_same_wavs(wavs(out), wavs(reference))


def _job(row_id: str, lines: str, sentences: list[str]) -> synthesis.Job:
    return synthesis.Job(row_id, lines, sentences, "en", ("voice.wav",), 1, {}, "cells")


def test_batches_hold_up_to_batch_size_sentences_of_rows_of_like_length(tmp_path):
    """Rows sorted by length pad little in their batch; a batch is filled up to `batch_size` sentences."""
    (tmp_path / "voice.wav").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())
    texts = {"c": "A rather longer sentence to speak.", "a": "Hi.", "d": "The very longest sentence of them all.",
             "b": "A bit longer."}
    rows = [f"{row_id},{text},voice.wav" for row_id, text in texts.items()]
    (tmp_path / "m.csv").write_text("\n".join(["id,text,prompt", *rows]) + "\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags,
                                    batch_size=2)
    assert [[job.id for job in batch] for batch in plan.batches] == [["a", "b"], ["c", "d"]]


def test_failed_jsonl_lists_the_plans_and_every_processs_failures_by_line(tmp_path):
    out = synthesis.OutputFolder(tmp_path / "out", rank=1)
    out.prepare()
    out.record_failure(_job("late", "12-13", ["Late."]), "spoken wrong")
    out.record_failure(_job("early", "3", ["Early."]), "spoken wrong")
    everything = out.write_failures([{"line": "9", "id": "planned", "error": "no prompt"}])
    assert [record["id"] for record in records(out.root / "failed.jsonl")] == ["early", "planned", "late"]
    assert everything == records(out.root / "failed.jsonl")


def test_a_row_is_recorded_as_stopped_only_when_every_sentence_of_it_stopped(processor):
    """`generate`'s rows are the sentences; a row's record sums their frames and says whether each one stopped."""
    from types import SimpleNamespace

    class Scripted:
        device = torch.device("cpu")
        check_segments_fit = FITS["check_segments_fit"]

        def generate(self, input_ids, **kwargs):
            return SimpleNamespace(audio=[torch.full((320,), 0.1)] * 3, lengths=torch.tensor([2, 3, 4]),
                                   stopped=torch.tensor([True, False, True]))

    jobs = [_job("two", "2", ["One here.", "Two here."]), _job("one", "3", ["Three here."])]
    spoken, failed = synthesis.speak_batch(Scripted(), processor, jobs, lambda files: torch.zeros(5, 8).long())
    assert not failed
    assert [(row.job.id, row.frames, row.stopped) for row in spoken] == [("two", 5, False), ("one", 4, True)]


def test_preparing_removes_what_a_killed_run_left_and_drops_its_failures(tmp_path):
    """A killed run's partial files are removed; its failures are dropped, so that those rows are tried again."""
    out = synthesis.OutputFolder(tmp_path / "out")
    out.parts.mkdir(parents=True)
    left = [out.root / ".row.wav.x1.part", out.root / f".{synthesis.DONE}.x2.part",
            out.root / f".{synthesis.FAILED}.x3.part"]
    for path in left:
        path.write_bytes(b"RIFF")
    out.record_failure(_job("row", "2", ["Hi."]), "spoken wrong")
    out.prepare()
    assert [path for path in left if path.exists()] == []
    assert out.write_failures([]) == []


def test_a_missing_package_ends_the_run_instead_of_failing_each_row(processor):
    """Every row would fail alike, each with the same pip install: the batch raises it once."""
    from types import SimpleNamespace

    from valle_hf.errors import MissingDependencyError

    def missing(*args, **kwargs):
        raise MissingDependencyError("pip install the-codec")

    jobs = [_job("one", "2", ["One here."])]
    model = SimpleNamespace(device=torch.device("cpu"), generate=missing, **FITS)
    with pytest.raises(MissingDependencyError):  # when generating
        synthesis.speak_batch(model, processor, jobs, lambda files: torch.zeros(5, 8).long())
    with pytest.raises(MissingDependencyError):  # when reading the voice
        synthesis.speak_batch(model, processor, jobs, missing)


def _scripted_model(calls: list):
    """A model whose `generate` records how each call's rows are named in warnings and says every row stopped."""
    from types import SimpleNamespace

    from valle_hf import generation

    def generate(input_ids, **kwargs):
        rows = len(input_ids)
        calls.append(generation._named_rows(list(range(rows)), rows))
        return SimpleNamespace(audio=[torch.full((320,), 0.1)] * rows, lengths=torch.ones(rows, dtype=torch.long),
                               stopped=torch.ones(rows, dtype=torch.bool))

    return SimpleNamespace(device=torch.device("cpu"), generate=generate, **FITS)


def test_each_call_of_a_long_row_names_its_own_sentences_in_warnings(processor):
    """A row spoken in several calls named every call's rows by position: the names were the whole row's."""
    calls = []
    jobs = [_job("long", "2", ["One here.", "Two here."])]
    synthesis.speak_batch(_scripted_model(calls), processor, jobs, lambda files: torch.zeros(5, 8).long(),
                          max_sentences=1)
    assert calls == ["row(s) id 'long' (sentence 1 of 2)", "row(s) id 'long' (sentence 2 of 2)"]


def test_out_of_memory_names_the_calls_size_for_a_row_longer_than_the_batch(processor):
    """A row of three sentences spoken in calls of two ran out of memory at two: lowering --batch-size helps."""
    from types import SimpleNamespace

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    model = SimpleNamespace(device=torch.device("cpu"), generate=out_of_memory, **FITS)
    jobs = [_job("long", "2", ["One here.", "Two here.", "Three here."])]
    with pytest.raises(synthesis.VallEValueError, match=r"speaking a batch of 2 sentence\(s\)"):
        synthesis._speak_in_memory(model, processor, jobs, lambda files: torch.zeros(5, 8).long(), "keep", 2)


def test_a_row_whose_wav_cannot_be_written_keeps_no_record_over_its_old_wav(tmp_path, monkeypatch):
    """A row is done only once its WAV is written: a record written first would take an edited row's old WAV, still
    there, for its new audio at the next run."""
    from types import SimpleNamespace

    out = synthesis.OutputFolder(tmp_path / "out")
    out.prepare()
    out.wav("row").write_bytes((REPO / "examples" / "prompt.wav").read_bytes())  # spoken before the row's edit
    job = _job("row", "2", ["Hello."])
    nan = synthesis.Spoken(job, torch.full((320,), float("nan")), 1, True)
    monkeypatch.setattr(synthesis, "_speak_in_memory", lambda *args: ([nan], []))
    model = SimpleNamespace(config=SimpleNamespace(sampling_rate=24000))
    report = synthesis.run_synthesis([[job]], model, None, out, progress=False)
    assert (report.rows, report.failed) == (0, 1) and out.done_records() == {}


def test_a_flag_without_its_switch_is_warned_about_once_for_the_whole_run(tmp_path, prompt_wav, cached_loading):
    """Each batch's generate call warned again about the same flag (the rows here take one call each)."""
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\na,Hello.,voice.wav\nb,Hi.,voice.wav\n", encoding="utf-8")
    with logged_warnings() as logged:
        status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *FLAGS, "--batch-size", "1",
                                       "--layer-skip-exit-layer", "0"])
    assert status == 0, err
    inert = [line for line in logged.out.splitlines() if "has no effect" in line]
    assert inert == ["--layer-skip-exit-layer has no effect without --layer-skip: set --layer-skip, or drop "
                     "--layer-skip-exit-layer"]


def test_the_model_is_named_as_loaded_in_the_command_and_the_api(tmp_path, prompt_wav, monkeypatch):
    """A re-run with another --vocoder or --codec for the release, or another --yaml or --tokenizer for a checkpoint,
    kept the first run's WAVs (the release was named None whatever its decoders); and the command named the release
    None where the API named it by its folder, so the API spoke again what the command had spoken. The release was
    then named by its cache's path (a moved cache spoke every row again), and --yaml alone apart from the same
    checkpoint given with --model."""
    from valle_hf.cli import model_identity, resolved_name
    from valle_hf.configuration import DEFAULT_CODEC

    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def named(*argv) -> str:
        return model_identity(synthesis.build_parser().parse_args(["m.csv", "out", *argv]))

    release = named()
    first_run = resolved_name(release)  # as plan_synthesis names it, before the release is converted into the cache
    assert named("--codec", DEFAULT_CODEC) == release  # the release's own codec, said
    assert len({release, named("--vocoder", "none"), named("--vocoder", "tiny-random"), named("--codec", "a/b")}) == 4
    (tmp_path / "folder").mkdir()
    assert named("--model", "folder") == named("--model", str(tmp_path / "folder")) == named("--model", "./folder/")
    assert named("--model", "org/repo", "--revision", "v2") != named("--model", "org/repo")
    (tmp_path / "fp32.sft").write_bytes(b"")
    (tmp_path / "config.yaml").write_text("")
    assert len({named("--model", "fp32.sft"), named("--model", "fp32.sft", "--yaml", "config.yaml"),
                named("--model", "fp32.sft", "--tokenizer", "config.yaml"),
                named("--model", "fp32.sft", "--vocoder", "none")}) == 4
    (tmp_path / "named.yaml").write_text("models:\n- name: ar+nar\n")  # the original's ckpt/ar+nar-llama-8/fp32.sft
    checkpoint = tmp_path / "ckpt" / "ar+nar-llama-8" / "fp32.sft"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    assert named("--yaml", "named.yaml") == named("--model", str(checkpoint), "--yaml", "named.yaml")
    assert named("--yaml", "named.yaml") != named("--model", "fp32.sft", "--yaml", "named.yaml")
    # The release as converted into the cache: rows the command spoke are done for the API's release model
    for part in valle_hf.loading.load_model_and_processor("tiny-random"):
        part.save_pretrained(tmp_path / "cache" / valle_hf.loading.released_folder_name())
    assert resolved_name(named()) == first_run
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\nalpha,Hello.,voice.wav\n", encoding="utf-8")
    released_flags = FLAGS[:FLAGS.index("--model")] + FLAGS[FLAGS.index("--model") + 2:]
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *released_flags])
    assert status == 0 and "wrote 1 row(s)" in err, err
    monkeypatch.chdir(tmp_path / "cache")  # the API's model loaded from that folder, named as written: relative
    model, processor = valle_hf.loading.load_model_and_processor(valle_hf.loading.released_folder_name())
    plan, report = synthesis.synthesize(tmp_path / "m.csv", tmp_path / "out", model, processor, seed=7,
                                        max_ar_steps=12, nar_dtype="float32", progress=False)
    assert (plan.done, plan.edited, report.rows) == (1, 0, 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").rename(tmp_path / "moved")  # another user's cache, or one moved to a larger disk
    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path / "moved"))
    status, err = synthesize_main([tmp_path / "m.csv", tmp_path / "out", *released_flags])
    assert status == 0 and "wrote 0 row(s) into" in err and "(1 done before)" in err, err


def test_a_rows_setting_the_model_cannot_take_is_named_as_its_cell(tmp_path, prompt_wav, cached_loading):
    """A cell of more NAR levels than the model has failed its row as generate's `max_levels=12 ... None (all)`: a
    keyword and a value that no manifest cell has."""
    model, processor = valle_hf.loading.load_model_and_processor("tiny-random")
    too_many = model.config.num_rvq_levels + 4
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text(f"id,text,prompt,max_nar_levels\nok,Hello.,voice.wav,\nmany,Hello.,voice.wav,"
                                    f"{too_many}\n", encoding="utf-8")
    plan, report = synthesis.synthesize(tmp_path / "m.csv", tmp_path / "out", model, processor, seed=1,
                                        max_ar_steps=4, progress=False)
    assert report.rows == 1
    failures = {record["id"]: record["error"] for record in records(tmp_path / "out" / "failed.jsonl")}
    assert list(failures) == ["many"]
    assert failures["many"] == (f"max_nar_levels {too_many} is not allowed: it must be an integer "
                                f"0..{model.config.num_rvq_levels - 1} (or unset: all levels): this model has "
                                f"{model.config.num_rvq_levels} RVQ levels"), failures
    assert "max_levels" not in failures["many"], failures


def test_a_prompt_that_is_a_pipe_is_named_as_such_not_missing(tmp_path):
    import os

    os.mkfifo(tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\npiped,Hello.,voice.wav\n", encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    plan = synthesis.plan_synthesis(tmp_path / "m.csv", synthesis.OutputFolder(tmp_path / "out"), flags)
    assert [failure["error"] for failure in plan.failures] == [
        f"prompt {tmp_path / 'voice.wav'} is not a regular file (a pipe or a device): give an audio file"]


def test_a_prompt_longer_than_the_models_positions_fails_its_row_alone(tmp_path, cached_loading):
    """generate refuses a whole voice prompt past the model's positions; in a batch's call that failed every row of
    the batch, and each run again, as the same rows make the same batch."""
    model, processor = valle_hf.loading.load_model_and_processor("tiny-random")
    model.config.max_position_embeddings = model.config.seconds_to_frames(3.2)  # a 1 s voice fits, a 4 s one not
    samples = np.arange(24000 * 4) / 24000
    for name, seconds in (("short.wav", 1), ("long.wav", 4)):
        soundfile.write(tmp_path / name, (0.3 * np.sin(2 * np.pi * 220 * samples[:24000 * seconds])).astype(np.float32),
                        24000)
    (tmp_path / "m.csv").write_text("id,text,prompt\nok,Hello.,short.wav\nlong,Hello.,long.wav\n", encoding="utf-8")
    plan, report = synthesis.synthesize(tmp_path / "m.csv", tmp_path / "out", model, processor, seed=1,
                                        max_ar_steps=4, input_prompt_length=0, progress=False)
    assert report.rows == 1 and (tmp_path / "out" / "ok.wav").is_file()
    failures = {record["id"]: record["error"] for record in records(tmp_path / "out" / "failed.jsonl")}
    assert list(failures) == ["long"] and failures["long"].startswith("the voice prompt of row(s) id 'long' is 300 "
                                                                      "frames long"), failures
    plan, report = synthesis.synthesize(tmp_path / "m.csv", tmp_path / "cut", model, processor, seed=1,
                                        max_ar_steps=4, progress=False)  # the model's 3 s of it fit
    assert report.rows == 2 and not records(tmp_path / "cut" / "failed.jsonl")


def test_a_prompt_that_starts_the_response_past_the_positions_fails_its_row_alone(tmp_path, cached_loading):
    """With input_prompt_prefix the voice prompt starts the response, which may add max_ar_steps frames: a row whose
    prompt and steps together pass the model's positions failed every row of its batch."""
    model, processor = valle_hf.loading.load_model_and_processor("tiny-random")
    model.config.max_position_embeddings = model.config.seconds_to_frames(3.2)
    steps = model.config.max_position_embeddings - model.config.seconds_to_frames(1.5)  # a 1 s voice fits, 2 s not
    samples = np.arange(24000 * 2) / 24000
    for name, seconds in (("short.wav", 1), ("long.wav", 2)):
        soundfile.write(tmp_path / name, (0.3 * np.sin(2 * np.pi * 220 * samples[:24000 * seconds])).astype(np.float32),
                        24000)
    (tmp_path / "m.csv").write_text("id,text,prompt\nok,Hello.,short.wav\nlong,Hello.,long.wav\n", encoding="utf-8")
    plan, report = synthesis.synthesize(tmp_path / "m.csv", tmp_path / "out", model, processor, seed=1,
                                        max_ar_steps=steps, input_prompt_length=0, input_prompt_prefix=True,
                                        progress=False)
    assert report.rows == 1 and (tmp_path / "out" / "ok.wav").is_file()
    failures = {record["id"]: record["error"] for record in records(tmp_path / "out" / "failed.jsonl")}
    frames = model.config.seconds_to_frames(2)
    assert list(failures) == ["long"] and failures["long"].startswith(f"the voice prompt of row(s) id 'long' is "
                                                                      f"{frames} frames long"), failures
    assert f"lower --max-ar-steps: with --input-prompt-prefix it starts the response, which may add {steps}" in \
        failures["long"]


def test_a_record_line_edited_into_no_json_is_warned_about_once_per_run(tmp_path, prompt_wav):
    """The plan read done.jsonl, then the folder's preparation read it again, and each warned of the same lines."""
    shutil.copy(prompt_wav, tmp_path / "voice.wav")
    (tmp_path / "m.csv").write_text("id,text,prompt\na,Hello.,voice.wav\n", encoding="utf-8")
    out = synthesis.OutputFolder(tmp_path / "out")
    out.root.mkdir()
    (out.root / "done.jsonl").write_text('{"id": "a", "pa\n{"id": "b"}\n', encoding="utf-8")
    flags = synthesis.argparse.Namespace(task="tts", **dict.fromkeys(FLAG_SETTINGS))
    with logged_warnings() as logged:
        synthesis.plan_synthesis(tmp_path / "m.csv", out, flags)
        out.prepare()
    assert logged.out.count("line(s) 1 hold no JSON object") == 1, logged.out

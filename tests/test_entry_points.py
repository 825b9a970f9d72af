"""Every entry point on a table of bad inputs: exit status 1, one `error:` line on stderr, no traceback, no user file
changed and nothing half-written left behind (only the reports a tool documents, such as failed.jsonl).

The CLI (`python -m valle_hf`), the converter (`python -m valle_hf.convert`), corpus synthesis (`python -m
valle_hf.synthesize`), scripts/prepare_dataset.py, scripts/convert_and_upload.py, scripts/make_example_prompt.py and
examples/finetune.py are called in-process through their `main(argv)`, exactly what their `__main__` runs; the
converter also runs as a process with the Hub unreachable. The benchmarks' runners have theirs in test_benchmarks.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO, load_script, tiny_config

from valle_hf import phonemes
from valle_hf.errors import UsageError, entry_point

# Files an entry point may leave after a failure, because it documents them as its report.
REPORTS = {"failed.jsonl"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root`, with the bytes of each file (None for a directory)."""
    return {str(path.relative_to(root)): None if path.is_dir() else path.read_bytes() for path in root.rglob("*")}


@pytest.fixture
def workspace(tmp_path, prompt_wav) -> Path:
    """A user's folder: a reference, an earlier output, a text file, a folder and a file that is not audio."""
    shutil.copy(prompt_wav, tmp_path / "ref.wav")
    shutil.copy(prompt_wav, tmp_path / "out.wav")
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "junk.wav").write_text("this is not audio\n")
    return tmp_path


def check_refused(main: Callable[[list[str]], int], argv: list, workspace: Path, capsys, expected: str) -> None:
    """`main(argv)` fails as a user's mistake must: status 1, one line, no traceback, the workspace as it was."""
    before = snapshot(workspace)
    status = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    after = snapshot(workspace)
    assert {path: after.get(path) for path in before} == before, "a user file changed"
    new = set(after) - set(before)
    reports = {path for path in new if Path(path).name in REPORTS}
    folders_of_reports = {str(folder) for path in reports for folder in Path(path).parents}
    assert not new - reports - folders_of_reports, f"left behind: {sorted(new - reports)}"


# ---------------------------------------------------------------------------------------------------- damaged inputs


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, fixtures, converted_dir) -> Path:
    """Checkpoints and model directories broken the ways users meet them (downloads cut short, empty files, ...)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("damaged")
    data = fixtures.checkpoint.read_bytes()
    (root / "truncated.sft").write_bytes(data[: len(data) // 2])
    (root / "empty.sft").write_bytes(b"")
    (root / "garbage.sft").write_bytes(b"\x00" * 64)
    (root / "folder.sft").mkdir()
    torch.save({"module": {}, "config": object()}, root / "pickle.pth")  # an arbitrary object: refused, not run
    from safetensors import safe_open

    with safe_open(str(fixtures.checkpoint), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(fixtures.checkpoint))
    tensors["text_emb.weight"] = torch.full_like(tensors["text_emb.weight"], float("nan"))
    save_file(tensors, str(root / "nan.sft"), metadata=metadata)
    for name in ("no_tokenizer", "truncated_weights", "empty_weights"):
        shutil.copytree(converted_dir, root / name)
    (root / "no_tokenizer" / "tokenizer.json").unlink()
    weights = (root / "truncated_weights" / "model.safetensors").read_bytes()
    (root / "truncated_weights" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (root / "empty_weights" / "model.safetensors").write_bytes(b"")
    (root / "not_a_model").mkdir()
    (root / "bad.yaml").write_text("models: [unclosed\n  - {name: x\n")
    (root / "empty_model.yaml").write_text("models:\n  - {}\n")
    torch.save({"module": tensors, "config": json.loads(metadata["config"])}, root / "torch_named.sft")
    return root


# ---------------------------------------------------------------------------------------------------- the CLI

CLI_CASES = {
    # name: (arguments after the text, the error's telling part); {ws} is the workspace, {dmg} the damaged inputs
    "missing_reference": (["{ws}/nope.wav", "{ws}/new.wav"], "audio file not found"),
    "directory_reference": (["{ws}/folder", "{ws}/new.wav"], "is a directory, not an audio file"),
    "empty_reference": (["", "{ws}/new.wav"], "no reference audio given"),
    "blank_references": ([" ; ", "{ws}/new.wav"], "no reference audio given"),
    "stream_chunk_out_of_range_without_stream": (["{ws}/ref.wav", "{ws}/new.wav", "--stream-chunk", "nan"],
                                                 "--stream-chunk nan is not allowed"),
    "stream_chunk_without_stream": (["{ws}/ref.wav", "{ws}/new.wav", "--stream-chunk", "2"],
                                    "--stream-chunk 2 sets the chunks of --stream, which was not given"),
    "stt_with_the_audio_only": (["--task", "stt"], "with --task stt, give '' as TEXT: python -m valle_hf ''"),
    "stt_as_one_argument_with_the_audio_only": (["--task=stt"], "with --task stt, give '' as TEXT"),
    "stt_with_a_tts_setting_of_zero": (["{ws}/ref.wav", "--task", "stt", "--nar-temp", "0"],
                                       "--nar-temp: text-to-speech only; --task stt would ignore it"),
    "stt_with_a_text": (["{ws}/ref.wav", "--task", "stt"], "--task stt transcribes REFERENCES and reads no text"),
    "stt_with_a_stream_chunk": (["{ws}/ref.wav", "--task", "stt", "--stream-chunk", "2"],
                                "--stream-chunk: text-to-speech only; --task stt would ignore it"),
    "stt_streamed": (["{ws}/ref.wav", "--task", "stt", "--stream"], "--task stt prints a transcript: drop --stream"),
    "stt_without_a_prompt": (["{ws}/ref.wav", "--task", "stt", "--no-prompt"], "--no-prompt is for text-to-speech"),
    "stt_with_tts_only_settings": (["{ws}/ref.wav", "--task", "stt", "--nar-temp", "0.5", "--audio-backend",
                                    "encodec"], "--audio-backend: text-to-speech only; --task stt would ignore them"),
    "stt_with_a_language_switch": (["{ws}/ref.wav", "--task", "stt", "--language-switch", "remove"],
                                   "--language-switch: text-to-speech only; --task stt would ignore it"),
    "stt_in_an_unknown_language": (["{ws}/ref.wav", "--task", "stt", "--language", "xx-nope"], "unknown language"),
    "no_prompt_and_a_reference": (["{ws}/ref.wav", "{ws}/new.wav", "--no-prompt"], "--no-prompt speaks without"),
    "no_prompt_and_the_output_as_reference": (["--no-prompt", "{ws}/new.wav"],
                                              "new.wav was read as REFERENCES (the arguments are TEXT REFERENCES "
                                              "OUT_PATH): give \"\" as REFERENCES, as in TEXT \"\" "),
    "unreadable_reference": (["{ws}/junk.wav", "{ws}/new.wav"], "could not read audio file"),
    "output_is_the_reference": (["{ws}/ref.wav", "{ws}/ref.wav"], "would destroy the reference audio"),
    "output_links_to_the_reference": (["{ws}/ref.wav", "{ws}/folder/../ref.wav"], "would destroy the reference"),
    "output_txt": (["{ws}/ref.wav", "{ws}/o.txt"], "must end in one of .wav"),
    "output_without_extension": (["{ws}/ref.wav", "{ws}/out"], "must end in one of .wav"),
    "output_folder_missing": (["{ws}/ref.wav", "{ws}/no/such/o.wav"], "cannot write the output file"),
    "output_is_a_folder": (["{ws}/ref.wav", "{ws}/folder"], "is a directory: give a file name"),
    # a folder not made yet: written as the file new.wav
    "output_is_a_new_folder": (["{ws}/ref.wav", "{ws}/new.wav/"], "new.wav/ names a folder (it ends in '/'): give a "
                                                                   "file name such as"),
    "no_output": (["{ws}/ref.wav"], "no output path"),
    "unknown_language": (["{ws}/ref.wav", "{ws}/new.wav", "--language", "xx-nope"], "unknown language"),
    "infinite_prompt_length": (["{ws}/ref.wav", "{ws}/new.wav", "--input-prompt-length", "inf"], "not allowed"),
    "infinite_prefix_silence": (["{ws}/ref.wav", "{ws}/new.wav", "--prefix-silence", "inf"], "not allowed"),
    "nan_temperature": (["{ws}/ref.wav", "{ws}/new.wav", "--ar-temp", "nan"], "not allowed"),
    "prompt_prefix_and_prefix_silence": (["{ws}/ref.wav", "{ws}/new.wav", "--input-prompt-prefix", "--prefix-silence",
                                          "0.5"], "--prefix-silence 0.5 is not allowed: it must be 0 with "
                                                  "input_prompt_prefix"),
    "unknown_flag": (["{ws}/ref.wav", "{ws}/new.wav", "--bogus"], "unrecognized arguments"),
    "misspelt_flag": (["{ws}/ref.wav", "{ws}/new.wav", "--ar-temperature=0.500000"],
                      "unrecognized arguments: --ar-temperature=0.500000 (did you mean --ar-temp?)"),
    "abbreviated_flag": (["{ws}/ref.wav", "{ws}/new.wav", "--ar-te=0.5"],  # argparse took it for --ar-temp
                         "unrecognized arguments: --ar-te=0.5 (did you mean --ar-temp?)"),
    "positional_given_as_an_option": (["{ws}/ref.wav", "--references", "{ws}/new.wav"],
                                      "--references (references is a positional argument: give its value alone, "
                                      "without --references)"),
    # OUT_PATH is a positional too, and --out-path its option
    "misspelt_output_flag": (["{ws}/ref.wav", "--out_path", "{ws}/new.wav"],
                             "unrecognized arguments: --out_path (did you mean --out-path?)"),
    "cuda_missing": (["{ws}/ref.wav", "{ws}/new.wav", "--device", "cuda"], "CUDA is not available"),
    "missing_model": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{ws}/no-model"], "model not found"),
    "model_folder_not_converted": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/not_a_model"],
                                   "not a converted model"),
    "model_without_tokenizer": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/no_tokenizer"],
                                "has no tokenizer.json"),
    "model_weights_truncated": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/truncated_weights"],
                                "truncated_weights cannot be read (Error while deserializing header"),
    "model_weights_empty": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/empty_weights"],
                            "empty_weights cannot be read"),
    "checkpoint_truncated": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/truncated.sft"],
                             "not a readable safetensors checkpoint"),
    "checkpoint_empty": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/empty.sft"], "not a readable"),
    "checkpoint_garbage": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/garbage.sft"], "not a readable"),
    "checkpoint_is_a_folder": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/folder.sft"], "is a directory"),
    "checkpoint_pickle": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{dmg}/pickle.pth"],
                          "reading it could run any code, so it is refused"),
    "wav_as_tokenizer": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{fx}", "--tokenizer", "{ws}/ref.wav"],
                         "is not a tokenizer.json"),
    "invalid_yaml": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "{fx}", "--yaml", "{dmg}/bad.yaml"],
                     "is not valid YAML"),
    "exit_layer_beyond_the_model": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "tiny-random", "--seed", "0",
                                     "--layer-skip", "--layer-skip-exit-layer", "99"], "--layer-skip-exit-layer 99"),
    "nar_levels_beyond_the_model": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "tiny-random", "--seed", "0",
                                     "--max-nar-levels", "99"], "--max-nar-levels 99 is not allowed"),
    # the model's rule in the flag's words: ids, not "a list" (a flag takes them comma-separated)
    "breakers_beyond_the_model": (["{ws}/ref.wav", "{ws}/new.wav", "--model", "tiny-random", "--seed", "0",
                                   "--dry-sequence-breakers", "2,99999"],
                                  "--dry-sequence-breakers 2,99999 is not allowed: it must be token ids in 0.."),
    "zero_ar_steps": (["{ws}/ref.wav", "{ws}/new.wav", "--max-ar-steps", "0"], "--max-ar-steps 0 is not allowed"),
    "unknown_device": (["{ws}/ref.wav", "{ws}/new.wav", "--device", "tpu"], "--device tpu: not a device"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_input_in_one_line(case, workspace, damaged, fixtures, capsys):
    from valle_hf.cli import main

    arguments, expected = CLI_CASES[case]
    values = {"ws": workspace, "dmg": damaged, "fx": fixtures.checkpoint}
    argv = ["Hello there.", *(argument.format(**values) for argument in arguments)]
    check_refused(main, argv, workspace, capsys, expected)


@pytest.mark.parametrize("language", ["ja", "auto"])
def test_cli_refuses_kanji_without_pykakasi_before_loading_a_model(language, workspace, capsys, monkeypatch):
    from valle_hf.cli import main

    monkeypatch.setattr(phonemes, "_kakasi", lambda: None)
    argv = ["今日は晴れ。", workspace / "ref.wav", workspace / "new.wav", "--language", language, "--model",
            workspace / "no-model"]  # the model would fail too: the text is checked first
    check_refused(main, argv, workspace, capsys, "pip install -e \".[ja]\" in valle-hf's folder")


def test_cli_refuses_japanese_text_read_as_english_before_loading_a_model(workspace, capsys):
    from valle_hf.cli import main

    argv = ["今日は晴れ。", workspace / "ref.wav", workspace / "new.wav", "--model", workspace / "no-model"]
    check_refused(main, argv, workspace, capsys, "give the language 'ja' (or 'auto')")


# ---------------------------------------------------------------------------------------------------- synthesis

SYNTHESIS_CASES = {
    # name: (arguments, the error's telling part); {ws} is the workspace, whose corpus.csv is a good manifest
    "missing_manifest": (["{ws}/nope.csv", "{ws}/corpus"], "not found"),
    "manifest_not_utf8": (["{ws}/ref.wav", "{ws}/corpus", "--manifest-format", "csv"], "is not UTF-8 text"),
    "manifest_without_columns": (["{ws}/notes.txt", "{ws}/corpus", "--manifest-format", "csv"],
                                 "has no id, text, prompt column"),
    "manifest_with_an_unknown_column": (["{ws}/unknown.csv", "{ws}/corpus"],
                                        "unknown column(s) ar_tmp (did you mean ar_temp?)"),
    "manifest_with_a_misspelt_column": (["{ws}/misspelt.csv", "{ws}/corpus"],
                                        "has no prompt column: a manifest needs id, text and prompt (rename its "
                                        "column promt (did you mean prompt?))"),
    # "extra" is close to "text" too, but "txt" is closer: one column is named for each missing one
    "manifest_with_a_misspelt_column_beside_another": (["{ws}/misspelt_beside.csv", "{ws}/corpus"],
                                                       "(rename its column txt (did you mean text?))"),
    "manifest_with_a_column_in_capitals": (["{ws}/capitals.csv", "{ws}/corpus"],
                                           "(rename its column ID (did you mean id?))"),
    "output_is_a_file": (["{ws}/corpus.csv", "{ws}/notes.txt"], "is a file"),
    "output_empty": (["{ws}/corpus.csv", ""], "argument out_dir: is empty"),  # an unset variable: wrote into .
    "output_under_a_file": (["{ws}/corpus.csv", "{ws}/notes.txt/out"], "notes.txt, which is a file: give a folder"),
    "flag_out_of_range": (["{ws}/corpus.csv", "{ws}/corpus", "--ar-temp", "nan"], "not allowed"),
    "batch_size_zero": (["{ws}/corpus.csv", "{ws}/corpus", "--batch-size", "0"],
                        "argument --batch-size: expected an integer >= 1, got '0'"),
    "zero_ar_steps": (["{ws}/corpus.csv", "{ws}/corpus", "--max-ar-steps", "0"], "--max-ar-steps 0 is not allowed"),
    "nar_levels_beyond_the_model": (["{ws}/corpus.csv", "{ws}/corpus", "--model", "tiny-random",
                                     "--max-nar-levels", "99"], "--max-nar-levels 99 is not allowed"),
    "column_twice": (["{ws}/twice.csv", "{ws}/corpus"], "names the column 'text' twice"),
    "header_only": (["{ws}/header.csv", "{ws}/corpus"], "has a header but no rows"),  # was a run of 0 rows
    "unknown_key_in_a_jsonl_line": (["{ws}/unknown.jsonl", "{ws}/corpus"],
                                     "unknown column(s) ar_tmp (did you mean ar_temp?) (first on line 2)"),
    "negative_seed": (["{ws}/corpus.csv", "{ws}/corpus", "--seed", "-1"], "expected an integer >= 0"),
    "unknown_language": (["{ws}/corpus.csv", "{ws}/corpus", "--language", "xx-nope"], "unknown language"),
    "unknown_flag": (["{ws}/corpus.csv", "{ws}/corpus", "--bogus"], "unrecognized arguments"),
    "misspelt_flag": (["{ws}/corpus.csv", "{ws}/corpus", "--batchsize", "4"],
                      "unrecognized arguments: --batchsize (did you mean --batch-size?) 4"),
    # argparse took an abbreviation for the option it starts: x.csv was refused as a --manifest-format
    "manifest_given_as_an_option": (["--manifest=x.csv", "{ws}/corpus"], "the following arguments are required: "
                                    "out_dir; unrecognized arguments: --manifest=x.csv (manifest is a positional "
                                    "argument: give its value alone, without --manifest) (see"),
    "abbreviated_flag": (["{ws}/corpus.csv", "{ws}/corpus", "--batch", "4"],
                         "unrecognized arguments: --batch (did you mean --batch-size?) 4"),
    "cuda_missing": (["{ws}/corpus.csv", "{ws}/corpus", "--device", "cuda"], "CUDA is not available"),
    "missing_model": (["{ws}/corpus.csv", "{ws}/corpus", "--model", "{ws}/no-model"], "model not found"),
}


@pytest.mark.parametrize("case", SYNTHESIS_CASES)
def test_synthesis_refuses_bad_input_in_one_line_and_writes_nothing(case, workspace, capsys):
    from valle_hf.synthesize import main

    (workspace / "corpus.csv").write_text("id,text,prompt\nr1,Hello there.,ref.wav\n", encoding="utf-8")
    (workspace / "unknown.csv").write_text("id,text,prompt,ar_tmp\nr1,Hello there.,ref.wav,0.5\n", encoding="utf-8")
    (workspace / "unknown.jsonl").write_text('{"id": "r1", "text": "Hi.", "prompt": "ref.wav"}\n'
                                             '{"id": "r2", "text": "Hi.", "prompt": "ref.wav", "ar_tmp": 0.5}\n',
                                             encoding="utf-8")
    (workspace / "misspelt.csv").write_text("id,text,promt\nr1,Hello there.,ref.wav\n", encoding="utf-8")
    (workspace / "misspelt_beside.csv").write_text("id,txt,prompt,extra\nr1,Hello.,ref.wav,x\n", encoding="utf-8")
    (workspace / "capitals.csv").write_text("ID,text,prompt\nr1,Hello.,ref.wav\n", encoding="utf-8")
    (workspace / "twice.csv").write_text("id,text,prompt,text\nr1,Hello.,ref.wav,Bye.\n", encoding="utf-8")
    (workspace / "header.csv").write_text("id,text,prompt\n", encoding="utf-8")
    arguments, expected = SYNTHESIS_CASES[case]
    argv = [argument.format(ws=workspace) for argument in arguments]
    check_refused(main, [*argv, "--no-progress"], workspace, capsys, expected)


# ---------------------------------------------------------------------------------------------------- the converter

CONVERTER_CASES = {
    "missing_checkpoint": (["--checkpoint", "{ws}/nope.sft"], "checkpoint not found"),
    "empty_checkpoint": (["--checkpoint", ""], "argument --checkpoint: is empty"),  # was read as the folder '.'
    "empty_codec": (["--checkpoint", "{fx}", "--codec", ""], "argument --codec: is empty"),
    "checkpoint_is_a_folder": (["--checkpoint", "{dmg}/folder.sft"], "is a directory"),
    "truncated": (["--checkpoint", "{dmg}/truncated.sft"], "not a readable safetensors checkpoint"),
    "empty": (["--checkpoint", "{dmg}/empty.sft"], "not a readable safetensors checkpoint"),
    "garbage": (["--checkpoint", "{dmg}/garbage.sft"], "not a readable safetensors checkpoint"),
    "pickle": (["--checkpoint", "{dmg}/pickle.pth"], "reading it could run any code, so it is refused"),
    # was "download it again"
    "pth_named_sft": (["--checkpoint", "{dmg}/torch_named.sft"], "is a torch .pth file (a zip archive), not "
                      "safetensors: rename it to end in .pth"),
    # the folder and its weights file sent the user to each other
    "converted_model": (["--checkpoint", "{dmg}/no_tokenizer"], "no_tokenizer is a converted model already, not an "
                        "original checkpoint: load it as it is (from_pretrained("),
    "converted_weights": (["--checkpoint", "{dmg}/no_tokenizer/model.safetensors"], "not an original checkpoint: its "
                          "folder"),
    # an empty entry is the original's defaults, not "no embedded config" in the checkpoint
    "empty_models_entry": (["--checkpoint", "{fx}", "--config", "{dmg}/empty_model.yaml"], "empty_model.yaml "
                           "describes a model valle-hf cannot run"),
    "nan_weights": (["--checkpoint", "{dmg}/nan.sft"], "holds NaN or infinite values"),
    "wav_as_tokenizer": (["--checkpoint", "{fx}", "--tokenizer", "{ws}/ref.wav"], "is not a tokenizer.json"),
    "missing_tokenizer": (["--checkpoint", "{fx}", "--tokenizer", "{ws}/nope.json"], "tokenizer file not found"),
    "invalid_yaml": (["--checkpoint", "{fx}", "--config", "{dmg}/bad.yaml"], "is not valid YAML"),
    "output_is_an_existing_file": (["--checkpoint", "{fx}", "--output-dir", "{ws}/notes.txt", "--overwrite"],
                                   "notes.txt is a file: give a folder"),
    "output_is_the_working_folder": (["--checkpoint", "{fx}", "--output-dir", "."],
                                     "is the working folder or holds it"),  # not 'holds tiny-random'
    "output_under_a_file": (["--checkpoint", "{fx}", "--output-dir", "{ws}/notes.txt/converted"],
                            "notes.txt, which is a file: give a folder"),
    "output_is_a_folder_with_files": (["--checkpoint", "{fx}", "--output-dir", "{ws}"], "already exists"),
    "no_checkpoint_given": (["--output-dir", "{ws}/converted"], "the following arguments are required"),
    "unknown_dtype": (["--checkpoint", "{fx}", "--dtype", "float8"], "invalid choice"),
    "misspelt_flag": (["--checkpoint", "{fx}", "--overwite"], "unrecognized arguments: --overwite (did you mean "
                                                              "--overwrite?)"),
    # argparse reports a missing required option before the options it did not recognize; an abbreviation ("--check",
    # which argparse took for --checkpoint) is one of them
    "misspelt_required_flag": (["--check", "{fx}", "--output_dir", "{ws}/converted"],
                               "the following arguments are required: --checkpoint, --output-dir; unrecognized "
                               "arguments: --check (did you mean --checkpoint?) --output_dir (did you mean "
                               "--output-dir?) (see"),
}


@pytest.mark.parametrize("case", CONVERTER_CASES)
def test_converter_refuses_bad_input_in_one_line_and_writes_nothing(case, workspace, damaged, fixtures, capsys):
    from valle_hf.conversion import main

    arguments, expected = CONVERTER_CASES[case]
    values = {"ws": workspace, "dmg": damaged, "fx": fixtures.checkpoint}
    argv = [argument.format(**values) for argument in arguments]
    if "--output-dir" not in argv and "--checkpoint" in argv:
        argv += ["--output-dir", str(workspace / "converted")]
    check_refused(main, [*argv, "--codec", "tiny-random", "--vocoder", "tiny-random"], workspace, capsys, expected)


# Installed as sitecustomize: $SIGNAL_AT ("INT:torch", "TERM:torch", "INT:after") sends that signal once as the
# program first imports torch (while the package loads), or at its first import after the package loaded (before
# the entry point takes over).
SIGNAL_AT = """
import builtins, os, signal, sys, time
real = builtins.__import__
name_of_signal, moment = os.environ["SIGNAL_AT"].split(":")
def due(name):
    return name == "torch" if moment == "torch" else hasattr(sys.modules.get("valle_hf"), "__version__")
def signalling(name, *args, **kwargs):
    if not getattr(signalling, "sent", False) and due(name):
        signalling.sent = True
        os.kill(os.getpid(), getattr(signal, "SIG" + name_of_signal))
        time.sleep(2)
    return real(name, *args, **kwargs)
builtins.__import__ = signalling
"""
COMMANDS = ["-m valle_hf", "-m valle_hf.app", "-m valle_hf.convert", "scripts/prepare_dataset.py",
            "scripts/make_example_prompt.py", "examples/tts.py", "examples/stt.py", "examples/finetune.py",
            "examples/pipeline_example.py", "app.py", "-m benchmarks"]


@pytest.mark.subprocess
@pytest.mark.parametrize("program, signal_at", [
    *((command, "INT:torch") for command in COMMANDS),
    *((command, "INT:after") for command in ("-m valle_hf", "-m valle_hf.app", "app.py", "examples/tts.py")),
    ("-m valle_hf", "TERM:torch"), ("-m valle_hf.app", "TERM:after"),
    ("user's program", "INT:torch"), ("user's module", "INT:torch"), ("user's program", "TERM:torch")])
def test_ctrl_c_or_sigterm_while_a_command_loads_ends_it_in_one_line(program, signal_at, tmp_path):
    """The package's commands, scripts, examples, app.py and the benchmarks end in one line with the shell's status
    when Ctrl-C or SIGTERM comes while they load: while the package loads torch and transformers, and after, until
    their entry point takes over (the scripts import valle_hf before torch). A traceback came from the libraries'
    imports or from the command's own modules, a SIGTERM ended in silence. A program or module of the user's that
    imports the package keeps its own handling."""
    (tmp_path / "sitecustomize.py").write_text(SIGNAL_AT)
    (tmp_path / "program.py").write_text("import valle_hf\n")
    (tmp_path / "usermodule").mkdir()
    (tmp_path / "usermodule" / "__init__.py").write_text("import valle_hf\n")
    (tmp_path / "usermodule" / "__main__.py").write_text("")
    argv = {"user's program": [str(tmp_path / "program.py")], "user's module": ["-m", "usermodule"]}.get(program) or (
        program.split() if program.startswith("-m") else [str(REPO / program)])
    env = dict(os.environ, SIGNAL_AT=signal_at, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO / "src"),
                                                                             str(REPO)]))
    result = subprocess.run([sys.executable, *argv, "--help"], env=env, capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    terminated = signal_at.startswith("TERM")
    if program.startswith("user's"):
        assert not result.stderr.startswith("interrupted"), result.stderr
        if terminated:
            assert result.returncode == -signal.SIGTERM, result.stderr  # the signal's own default action
        else:
            assert "KeyboardInterrupt" in result.stderr and result.returncode != 0, result.stderr
    else:
        assert result.returncode == (143 if terminated else 130) and result.stderr == "interrupted\n", result.stderr


@pytest.mark.parametrize("program, command", [
    ("scripts/prepare_dataset.py", True), ("examples/tts.py", True), ("benchmarks/__main__.py", True),
    ("app.py", True), (".venv/lib/python3.11/site-packages/pytest/__main__.py", False),
    (".venv/bin/ipython", False), ("my_script.py", False), ("scripts/old/tool.py", False), (None, False)])
def test_only_the_checkouts_own_programs_count_as_commands(program, command, monkeypatch):
    """Any program under the checkout counted: pytest, or IPython, installed in a .venv there (as the README sets it
    up) kept the loading handler for its whole run, and a Ctrl-C ended it with "interrupted", no summary, no
    teardown."""
    import types

    import valle_hf

    main = types.ModuleType("__main__")
    if program is not None:
        main.__file__ = str(REPO / program)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, str(REPO / program) if program else "-c"])
    assert valle_hf._loading_as_a_command() is command
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "valle_hf.app"])
    assert valle_hf._loading_as_a_command()  # whatever __main__ is while the package imports


@pytest.mark.subprocess
def test_converter_offline_names_the_codec_choices_at_once(tmp_path, fixtures):
    """The default EnCodec is downloaded from the Hub: with the Hub unreachable, the converter says so in one line,
    naming the offline choices, instead of retrying; the output directory is never created."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "VALLE_HF_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO / "src"))
    result = subprocess.run([sys.executable, "-m", "valle_hf.convert", "--checkpoint", str(fixtures.checkpoint),
                             "--output-dir", str(tmp_path / "converted")], env=env, capture_output=True, text=True,
                            timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "EnCodec" in lines[0] and "local copy of facebook/encodec_24khz, or tiny-random" in lines[0]
    assert "as --codec on the command line" in lines[0]
    assert [path.name for path in tmp_path.iterdir() if path.name != "hf"] == []  # no output, no staging folder


@pytest.mark.subprocess
@pytest.mark.parametrize("script, argv", [
    ("examples/pipeline_example.py", ["Hello.", "{ws}/ref.wav", "{ws}/speech.txt", "--model", "tiny-random"]),
    ("examples/finetune.py", ["--model", "tiny-random", "--data", "{ws}/no_data", "--output", "{ws}/run"]),
], ids=["pipeline_example", "finetune"])
def test_an_example_run_as_a_program_says_one_line_for_a_mistake(workspace, script, argv):
    """Run as programs, the examples that import transformers printed torchao's import-time messages for CUDA (four
    lines, where the [int8] extra is installed) before their one error line."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / script), *(arg.format(ws=workspace) for arg in argv)],
                            env=env, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# ---------------------------------------------------------------------------------------------------- the scripts


@pytest.fixture(scope="module")
def prepare():
    return load_script(REPO / "scripts" / "prepare_dataset.py")


@pytest.fixture(scope="module")
def finetune():
    return load_script(REPO / "examples" / "finetune.py")


DATASET_CASES = {
    "missing_data": (["{ws}/nope", "{ws}/prepared"], "is not a folder"),
    "empty_output": (["{ws}", ""], "argument output_dir: is empty"),
    "missing_metadata": (["{ws}", "{ws}/prepared", "--metadata", "{ws}/nope.csv"], "metadata file"),
    "unknown_language": (["{ws}", "{ws}/prepared", "--language", "xx-nope"], "unknown language"),
    "wav_as_tokenizer": (["{ws}", "{ws}/prepared", "--tokenizer", "{ws}/ref.wav"], "is not a tokenizer.json"),
    "missing_tokenizer": (["{ws}", "{ws}/prepared", "--tokenizer", "{ws}/nope.json"], "tokenizer file not found"),
    "metadata_not_utf8": (["{ws}", "{ws}/prepared", "--metadata", "{ws}/ref.wav"], "is not UTF-8 text"),
    "csv_without_header": (["{ws}", "{ws}/prepared", "--metadata", "{ws}/notes.txt", "--metadata-format", "csv"],
                           "needs a header"),
    "no_audio": (["{ws}/folder", "{ws}/prepared"], "no audio files found"),
    "nothing_usable": (["{ws}", "{ws}/prepared"], "none of the 3 input(s) could be prepared"),
    "unknown_format": (["{ws}", "{ws}/prepared", "--metadata-format", "xml"], "invalid choice"),
}


@pytest.mark.parametrize("case", DATASET_CASES)
def test_dataset_script_refuses_bad_input_in_one_line(case, workspace, prepare, tokenizer_file, capsys):
    arguments, expected = DATASET_CASES[case]
    argv = [argument.format(ws=workspace) for argument in arguments]
    if "--tokenizer" not in argv:
        argv += ["--tokenizer", str(tokenizer_file)]
    check_refused(prepare.main, [*argv, "--codec", "tiny-random", "--no-progress"], workspace, capsys, expected)


@pytest.fixture(scope="module")
def training_inputs(tmp_path_factory) -> dict[str, Path]:
    """A prepared data set of two utterances and a tiny model directory, for the finetune script's cases."""
    from valle_hf.dataset import PREPARE_CONFIG, append_manifest, save_utterance
    from valle_hf.modeling import VallEForConditionalGeneration
    from valle_hf.processing import VallEProcessor

    root = tmp_path_factory.mktemp("training")
    generator = torch.Generator().manual_seed(0)
    for index in range(2):
        frames = 80 + index
        utterance = f"spk/utt{index}"
        file = save_utterance(root / "data", utterance, torch.tensor([1, 5, 6, 2]),
                              torch.randint(0, 1024, (frames, 8), generator=generator))
        append_manifest(root / "data", {"id": utterance, "speaker": "spk", "frames": frames, "file": file})
    torch.manual_seed(0)
    VallEForConditionalGeneration(tiny_config()).save_pretrained(root / "model")
    shutil.copytree(root / "model", root / "damaged_model")
    weights = root / "damaged_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "empty").mkdir()
    (root / "trained" / "final").mkdir(parents=True)  # an earlier run's output
    shutil.copytree(root / "model", root / "model_with_tokenizer")
    VallEProcessor.from_tokenizer_file().save_pretrained(root / "model_with_tokenizer")
    shutil.copytree(root / "data", root / "foreign_data")  # prepared with another tokenizer
    (root / "foreign_data" / PREPARE_CONFIG).write_text(json.dumps({"tokenizer_sha256": "0" * 64}))
    return {"data": root / "data", "model": root / "model", "damaged": root / "damaged_model", "empty": root / "empty",
            "trained": root / "trained", "tokenized_model": root / "model_with_tokenizer",
            "foreign": root / "foreign_data"}


FINETUNE_CASES = {
    "no_data_given": (["--model", "{model}", "--output", "{ws}/run"], "the following arguments are required: --data"),
    "no_model_given": (["--data", "{data}", "--output", "{ws}/run"], "the following arguments are required: --model"),
    "missing_data": (["--model", "{model}", "--data", "{ws}/nope", "--output", "{ws}/run"], "not found"),
    "empty_output": (["--model", "{model}", "--data", "{data}", "--output", ""], "argument --output: is empty"),
    "empty_data": (["--model", "{model}", "--data", "{empty}", "--output", "{ws}/run"], "no usable utterances"),
    "no_utterance_in_range": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--duration-range",
                               "100", "200"], "none is left to train; widen the duration range"),
    "missing_model": (["--model", "{ws}/no-model", "--data", "{data}", "--output", "{ws}/run"], "model not found"),
    "model_folder_not_converted": (["--model", "{empty}", "--data", "{data}", "--output", "{ws}/run"],
                                   "not a converted model"),
    "damaged_model": (["--model", "{damaged}", "--data", "{data}", "--output", "{ws}/run"],
                      "cannot be read (Error while deserializing header"),
    "unknown_task": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--tasks", "tts,asr"],
                     "expected comma-separated tasks among tts, stt"),
    "learning_rate_nan": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--learning-rate", "nan"],
                          "--learning-rate nan is not allowed: it must be a number > 0"),
    "learning_rate_zero": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--learning-rate", "0"],
                           "--learning-rate 0 is not allowed: it must be a number > 0"),  # trained nothing, "saved"
    "no_epochs": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--epochs", "-1"],
                  "--epochs -1 is not allowed: it must be a number > 0"),
    "zero_batch": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--batch-size", "0"],
                   "--batch-size 0 is not allowed"),
    "lora_dropout_past_one": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--lora",
                               "--lora-dropout", "2"], "--lora-dropout 2 is not allowed: it must be a number in "
                                                       "[0, 1)"),
    "lora_rank_past_the_model": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--lora",
                                  "--lora-rank", "100000"], "LoRA rank 100000 is above"),
    # each ignored without a word: a full fine-tune ran without an adapter; the learning rate stayed constant
    "lora_options_without_lora": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--lora-rank", "4",
                                   "--lora-dropout", "0.5"], "--lora-rank, --lora-dropout shape a LoRA adapter, and "
                                                             "without --lora every weight is trained"),
    # the checkpoints and final/ were mixed into the data set's or the model's files
    "output_is_the_data": (["--model", "{model}", "--data", "{data}", "--output", "{data}"],
                           "--output {data} is the folder of --data {data}: the run's checkpoints"),
    "output_inside_the_model": (["--model", "{model}", "--data", "{data}", "--output", "{model}/run"],
                                "--output {model}/run is inside the folder of --model {model}"),
    "warmup_without_one": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--warmup-steps", "100"],
                           "--warmup-steps 100 does nothing with --lr-scheduler constant"),
    # trained 2 steps, ignoring --epochs; trained its one step at learning rate 0 and saved the model unchanged
    "epochs_with_max_steps": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--max-steps", "2",
                               "--epochs", "5"], "--epochs 5 does nothing with --max-steps 2, which sets the run's "
                                                 "length: drop one of the two"),
    "warmup_as_long_as_the_run": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--max-steps",
                                   "1", "--lr-scheduler", "linear", "--warmup-steps", "5"],
                                  "--warmup-steps 5 is not below --max-steps 1: the learning rate, which starts at 0"),
    "prompt_min_past_max": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--prompt-duration",
                             "5", "1"], "--prompt-duration 5 1: expected MIN MAX seconds"),
    "output_is_a_file": (["--model", "{model}", "--data", "{data}", "--output", "{data}/manifest.jsonl"],
                         "is a file: give a folder"),
    "output_under_a_file": (["--model", "{model}", "--data", "{data}", "--output", "{data}/manifest.jsonl/run"],
                            "manifest.jsonl, which is a file: give a folder"),
    "tiny_random_model": (["--model", "tiny-random", "--data", "{data}", "--output", "{ws}/run"],
                          "--model tiny-random is an installation check built in memory"),
    "data_of_another_tokenizer": (["--model", "{tokenized_model}", "--data", "{foreign}", "--output", "{ws}/run"],
                                  "was prepared with another phoneme tokenizer than"),
    "unknown_scheduler": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--lr-scheduler",
                           "cosin"], "argument --lr-scheduler: expected one of transformers' schedulers"),
    "unknown_report_to": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--report-to", "bogus"],
                          "--report-to bogus: not a reporting integration transformers knows"),
    "report_to_not_installed": (["--model", "{model}", "--data", "{data}", "--output", "{ws}/run", "--report-to",
                                 "none,dvclive"], "--report-to dvclive needs its package, which is not installed"),
    "output_holds_a_trained_model": (["--model", "{model}", "--data", "{data}", "--output", "{trained}"],
                                     "already holds a trained model"),
}


@pytest.mark.parametrize("case", FINETUNE_CASES)
def test_finetune_script_refuses_bad_input_in_one_line(case, workspace, finetune, training_inputs, capsys):
    arguments, expected = FINETUNE_CASES[case]
    argv = [argument.format(ws=workspace, **training_inputs) for argument in arguments]
    check_refused(finetune.main, argv, workspace, capsys, expected.format(ws=workspace, **training_inputs))


def test_finetune_refuses_more_workers_than_cpus(workspace, training_inputs, capsys, monkeypatch):
    """--num-workers past the CPUs the run may use ran each step ~30x slower under torch's warning; refused, read
    against the process's CPU affinity (here made one CPU)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    script = load_script(REPO / "examples" / "finetune.py")
    argv = ["--model", training_inputs["model"], "--data", training_inputs["data"], "--output", workspace / "run",
            "--num-workers", "2", "--max-steps", "1", "--save-steps", "0"]  # planted fault: a one-step run
    check_refused(script.main, argv, workspace, capsys, "--num-workers 2 is not allowed: it must be an integer from "
                                                         "0 to 1 (the CPUs this run may use)")


@pytest.mark.parametrize("value", ["1e3", "2.0", "2.5", "abc"])
def test_finetune_reads_integers_as_the_other_commands_do(value, finetune):
    """--max-steps 1e3 and --batch-size 2.0 were refused ("invalid int value") where the other commands read whole
    numbers so written (spreadsheets and config files write them that way); a fraction is still refused."""
    from valle_hf.cli import whole_number

    argv = ["--model", "m", "--data", "d", "--output", "o", f"--batch-size={value}"]
    try:
        expected = whole_number(value)
    except argparse.ArgumentTypeError as error:
        with pytest.raises(UsageError, match=re.escape(f"argument --batch-size: {error}")):
            finetune.parse_args(argv)
    else:
        assert finetune.parse_args(argv).batch_size == expected


@pytest.fixture(scope="module")
def upload_script():
    return load_script(REPO / "scripts" / "convert_and_upload.py")


UPLOAD_CASES = {
    "no_source": (["--repo-id", "me/x"], "one of the arguments --checkpoint --model-dir --released is required"),
    "empty_model_dir": (["--model-dir", "", "--repo-id", "me/x"], "argument --model-dir: is empty"),
    "not_a_model_folder": (["--model-dir", "{empty}", "--repo-id", "me/x"], "not a converted model directory"),
    "damaged_model": (["--model-dir", "{damaged}", "--tokenizer", "{tokenizer}", "--repo-id", "me/x"],
                      "model.safetensors is damaged"),
    "config_not_json": (["--model-dir", "{not_json}", "--repo-id", "me/x"], "cannot be read as JSON"),
    "missing_card": (["--model-dir", "{model}", "--repo-id", "me/x", "--card", "{ws}/no-card.md"],
                     "cannot read the card template"),
    "missing_checkpoint": (["--checkpoint", "{ws}/nope.sft", "--repo-id", "me/x"], "nope.sft"),
    # each was ignored without a word: the upload had the folder's float32 weights and its decoder
    "model_dir_dtype": (["--model-dir", "{model}", "--repo-id", "me/x", "--dtype", "float32"],
                        "--dtype applies to a --checkpoint's conversion; not to --model-dir (its folder holds"),
    # --vocoder was said to apply "when a --checkpoint is converted", though --released takes it too
    "model_dir_decoder_and_config": (["--model-dir", "{model}", "--repo-id", "me/x", "--vocoder", "none", "--config",
                                      "{ws}/c.yaml"], "--config applies to a --checkpoint's conversion; --vocoder "
                                                      "applies to a conversion (--checkpoint, or --released); not to "
                                                      "--model-dir (its folder holds its own weights and decoder): "
                                                      "drop --config, --vocoder"),
    "released_config": (["--released", "--repo-id", "me/x", "--config", "{ws}/c.yaml"],
                        "--config applies to a --checkpoint's conversion; not to --released (converted as released"),
    "released_half": (["--released", "--repo-id", "me/x", "--dtype", "float16"],
                      "--dtype applies to a --checkpoint's conversion (--released is converted in float32); not to "
                      "--released"),
}


@pytest.mark.parametrize("case", UPLOAD_CASES)
def test_upload_script_refuses_bad_input_in_one_line(case, workspace, upload_script, training_inputs, capsys,
                                                     tmp_path):
    not_json = tmp_path / "not_json"
    shutil.copytree(training_inputs["model"], not_json)
    (not_json / "config.json").write_text("{not json")
    arguments, expected = UPLOAD_CASES[case]
    from valle_hf.tokenization import packaged_tokenizer_file

    paths = dict(ws=workspace, not_json=not_json, tokenizer=packaged_tokenizer_file(), **training_inputs)
    argv = [argument.format(**paths) for argument in arguments]
    check_refused(upload_script.main, argv, workspace, capsys, expected)


def test_upload_script_names_its_own_sources_when_the_release_cannot_be_had(workspace, upload_script, capsys,
                                                                          monkeypatch, hub_unreachable, tmp_path):
    """It named Python calls (load_model_and_processor("DIR")) as the way out."""
    monkeypatch.setenv("VALLE_HF_CACHE", str(tmp_path / "cache"))
    check_refused(upload_script.main, ["--released", "--repo-id", "me/x"], workspace, capsys,
                  "give the checkpoint with --checkpoint path/to/fp32.sft, or a converted directory with --model-dir")


PROMPT_CASES = {
    "unknown_voice": (["--voice", "xx-nope", "--out", "{ws}/new.wav"], "--voice xx-nope: espeak-ng has no such voice"),
    "nothing_to_speak": (["--text", " ", "--out", "{ws}/new.wav"], "spoke nothing audible"),
    "not_a_wav": (["--out", "{ws}/new.txt"], "give a name ending in .wav"),
    "folder_is_a_file": (["--out", "{ws}/notes.txt/new.wav"], "notes.txt is a file: give a folder"),
    "out_is_a_folder": (["--out", "{ws}/folder.wav"], "folder.wav is a folder: give the WAV file's path"),
    "unknown_flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "empty_out": (["--out", ""], "argument --out: is empty"),  # was "--out .: ... give a name ending in .wav"
    "empty_voice": (["--voice", "", "--out", "{ws}/new.wav"], "argument --voice: is empty"),
    # what Python makes of a command-line argument that is not UTF-8: a UnicodeEncodeError traceback
    "text_not_utf8": (["--text", "caf\udce9", "--out", "{ws}/new.wav"],
                      "--text: the text is not valid UTF-8 after 'caf'"),
    "voice_not_utf8": (["--voice", "en\udcff", "--out", "{ws}/new.wav"], "--voice: the text is not valid UTF-8"),
}


@pytest.mark.parametrize("case", PROMPT_CASES)
def test_prompt_script_refuses_bad_input_in_one_line(case, workspace, capsys):
    script = load_script(REPO / "scripts" / "make_example_prompt.py")
    arguments, expected = PROMPT_CASES[case]
    (workspace / "folder.wav").mkdir()  # a folder named as the file (the other scripts' workspace has none)
    check_refused(script.main, [argument.format(ws=workspace) for argument in arguments], workspace, capsys, expected)


@pytest.mark.parametrize("argv, expected", [
    (["--size", "0", "list"], "argument --size: expected an integer >= 1, got '0'"),
    (["--minimum", "-1", "list"], "argument --minimum: expected an integer >= 0, got '-1'"),
    (["run", "--max-children", "x"], "argument --max-children: expected an integer >= 1, got 'x'"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["--max-children", "2", "run"], "--max-children 2: --max-children is an option of the run command: give it after "
                                     "the command (run --max-children 2)"),
    (["bogus", "--max-children", "2"], "invalid choice: 'bogus'"),
    (["run", "--max-childen=2"], "unrecognized arguments: --max-childen=2 (did you mean --max-children?)"),
    # each was "(did you mean --size?)", the very option given
    (["list", "--size", "3"], "unrecognized arguments: --size (an option of scripts/mutation_sample.py itself: give it "
                              "before the subcommand) 3"),
    (["report", "--max-children", "2"], "--max-children (an option of another subcommand, or of this one given before "
                                        "it: give it after its subcommand)"),
], ids=["no_sample", "negative_minimum", "no_children", "unknown_command", "subcommand_option_before_it",
        "unknown_command_and_an_option",
        "misspelt_subcommand_flag", "main_option_after_the_subcommand", "another_subcommands_option"])
def test_mutation_script_refuses_bad_input_in_one_line(argv, expected, workspace, capsys):
    """argparse's status 2 and usage for a mistyped command; a negative --minimum failed in random.sample."""
    script = load_script(REPO / "scripts" / "mutation_sample.py")
    check_refused(script.main, argv, workspace, capsys, expected)


def test_the_mutation_script_without_mutmut_says_how_to_install_it(workspace, capsys, monkeypatch):
    """Each command ended in a ModuleNotFoundError's traceback (mutmut is the dev extra, not installed by the test
    one)."""
    import importlib.util

    script = load_script(REPO / "scripts" / "mutation_sample.py")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "mutmut" else
                        find_spec(name, *args))
    check_refused(script.main, ["list"], workspace, capsys, 'needs mutmut: pip install -e ".[dev]"')


def test_a_bug_keeps_its_traceback(workspace, monkeypatch, capsys):
    """Only the package's own errors become one line: anything else is a bug, and the traceback is what fixes it."""
    from valle_hf import cli

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "prepare_inputs", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["Hello.", str(workspace / "ref.wav"), str(workspace / "new.wav")])


def test_a_long_message_is_cut_between_words_never_inside_an_address():
    """Messages quoted from other libraries are cut to a length; cut mid-word, one ended in "at 'https://"."""
    from valle_hf.errors import one_line

    error = OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in "
                    "the cached files.\nCheck your connection or see how to run the library in offline mode at "
                    "'https://huggingface.co/docs/transformers/installation#offline-mode'.")
    whole = one_line(error)
    assert "\n" not in whole and "  " not in whole and whole.endswith("offline-mode'.")
    cut = one_line(error, len(whole) - 20)
    assert cut == whole[:whole.index(" 'https://huggingface.co/docs")] + " …"
    assert one_line(error, len(whole)) == whole and one_line(OSError("x" * 50), 10) == "x" * 10 + " …"


def test_a_cut_keeps_a_word_that_ends_at_the_limit_and_no_separator_before_the_ellipsis():
    """A message is cut at the last space within `limit` + 1 characters (a word that fills the limit is whole), and
    ends on a word, not on the comma or bracket before the cut; one without words is named by its type."""
    from valle_hf.errors import one_line

    assert one_line(OSError("abc def ghi"), 7) == "abc def …"  # "def" ends at the limit
    assert one_line(OSError("abc def ghi"), 6) == "abc …"
    assert one_line(OSError("read a.wav, b.wav"), 12) == "read a.wav …"
    assert one_line(OSError("could not load: the file is gone"), 16) == "could not load …"
    assert one_line(RuntimeError(" \n ")) == "RuntimeError" and one_line(MemoryError()) == "MemoryError"


def test_running_out_of_memory_in_python_is_one_line_too(capsys):
    """Python's own MemoryError (a list or a numpy array too large) is the same mistake as torch's failed allocation:
    one line and status 1, not a traceback."""
    from valle_hf.errors import entry_point

    @entry_point()
    def main() -> int:
        raise MemoryError

    assert main() == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory (MemoryError): ask for less") and err.count("\n") == 1, err


def test_the_load_report_is_hidden_within_the_block_only():
    """The filter that hides transformers' LOAD REPORT table is removed when the block ends, an error included: left
    in place, every later load's report (of models the package does not check itself) was hidden too."""
    import logging

    from valle_hf.errors import without_load_report

    report = logging.getLogger("transformers.modeling_utils")
    before = list(report.filters)
    with without_load_report():
        assert len(report.filters) == len(before) + 1
    assert report.filters == before
    with pytest.raises(RuntimeError, match="failed"), without_load_report():
        raise RuntimeError("failed")
    assert report.filters == before


def test_each_error_type_is_the_builtin_exception_a_caller_expects():
    """`except ValueError`, `except OSError`, `except ImportError` keep working around the package's calls."""
    from valle_hf import errors

    expected = {errors.VallEValueError: ValueError, errors.VallETypeError: TypeError,
                errors.CheckpointError: ValueError, errors.ModelNotFoundError: OSError,
                errors.VallEFileNotFoundError: FileNotFoundError, errors.OutputError: OSError,
                errors.UsageError: ValueError, errors.MissingDependencyError: ImportError}
    for error_type, builtin in expected.items():
        assert issubclass(error_type, errors.VallEError) and issubclass(error_type, builtin), error_type


def test_a_message_of_several_lines_is_printed_as_one(capsys):
    """A package error that quotes another library's words (a YAML parser's, a tokenizer's) may hold newlines: the
    entry point prints it on one line all the same."""
    from valle_hf.errors import VallEValueError, entry_point

    @entry_point()
    def main() -> int:
        raise VallEValueError("config.yaml is not valid YAML:\n  line 2, column 3\n  expected ','")

    assert main() == 1
    assert capsys.readouterr().err == "error: config.yaml is not valid YAML: line 2, column 3 expected ','\n"


@pytest.mark.parametrize("dtype, integer", [
    (torch.bool, False), (torch.float16, False), (torch.bfloat16, False), (torch.float32, False),
    (torch.float64, False), (torch.complex64, False), (torch.complex128, False), (torch.int8, True),
    (torch.int16, True), (torch.int32, True), (torch.int64, True), (torch.uint8, True),
])
def test_an_integer_tensor_is_one_of_an_integer_dtype(dtype, integer):
    """The one rule by which ids, codes, levels and lengths are refused for their dtype (it was written out at each
    of nine checks): a bool or a float would be cast to an id, a complex one too (or crash the cast)."""
    from valle_hf.errors import is_integer_tensor

    for shape in ((), (0,), (2, 3)):
        assert is_integer_tensor(torch.zeros(shape, dtype=dtype)) is integer, (dtype, shape)


@pytest.mark.subprocess
def test_sigterm_ends_a_streamed_run_like_ctrl_c(tmp_path, prompt_wav):
    """`kill`, `timeout` and job schedulers send SIGTERM: the process died at once, in silence, and left the growing
    stream file beside the output. Now the run unwinds: one line, status 143, nothing half-written left."""
    shutil.copy(prompt_wav, tmp_path / "ref.wav")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    command = [sys.executable, "-m", "valle_hf", "Hello there.", str(tmp_path / "ref.wav"), str(tmp_path / "out.wav"),
               "--model", "tiny-random", "--stream", "--stream-chunk", "0.04", "--ar-temp", "0",
               "--max-ar-steps", "20000"]  # below the positions (22,500)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.wav.*.part")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()[1]  # still running, streaming into the partial file
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and sorted(path.name for path in tmp_path.iterdir()) == ["ref.wav"], err


def test_a_program_that_handles_sigterm_itself_keeps_its_handler_during_an_entry_point():
    """An entry point called from a program (or run where SIGTERM is ignored or handled outside Python) replaced its
    SIGTERM handling for the run, and one set outside Python could not be set back (restoring None is a TypeError)."""
    from valle_hf.errors import entry_point

    @entry_point()
    def main() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    received = []

    def handler(signum, frame):
        received.append(signum)

    before = signal.signal(signal.SIGTERM, handler)
    try:
        assert main() == 0 and received == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert main() == 143 and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # unwound, and set back


def test_a_second_ctrl_c_does_not_cut_the_clean_up_of_the_first(capsys):
    """A second Ctrl-C a moment after the first printed a traceback from the middle of the run's clean-up; after the
    run, Python's own handler is back, and a program's own handler is kept."""
    from valle_hf.errors import entry_point

    cleaned = []

    @entry_point(interrupted="interrupted")
    def main() -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the interrupt comes here
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during the clean-up
            time.sleep(0.05)
            cleaned.append(True)
        return 0

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main() == 130 and cleaned == [True]
        assert capsys.readouterr().err == "interrupted\n"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        own = []
        signal.signal(signal.SIGINT, lambda signum, frame: own.append(signum))
        cleaned.clear()
        assert main() == 0 and own == [signal.SIGINT, signal.SIGINT] and cleaned == [True]
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_entry_point_called_from_another_thread_runs_and_errs_in_one_line(capsys):
    """Signal handlers can be set in the main thread only: an entry point called from a worker thread (a notebook's, a
    server's) must run without its SIGTERM handling, not fail with Python's "signal only works in main thread"."""
    import threading

    from valle_hf.errors import UsageError, entry_point

    @entry_point()
    def main(fail: bool) -> int:
        if fail:
            raise UsageError("a mistake")
        return 0

    statuses = []
    worker = threading.Thread(target=lambda: statuses.extend([main(False), main(True)]))
    worker.start()
    worker.join()
    assert statuses == [0, 1] and capsys.readouterr().err == "error: a mistake\n"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("script", ["scripts/prepare_dataset.py", "examples/finetune.py"])
def test_help_states_the_description_once(script, capsys):
    """The epilog was the whole docstring, so --help printed its first paragraph twice."""
    module = load_script(REPO / script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out
    assert text.count(module.__doc__.split("\n\n")[0].strip().splitlines()[0]) == 1, text


@pytest.mark.subprocess
def test_a_file_size_limit_that_refuses_the_espeak_copy_is_one_error_line(tmp_path, prompt_wav):
    """phonemizer copies the espeak-ng library into a temporary folder for each backend: under a file-size limit
    below the library's size (`ulimit -f`) that copy failed with a traceback ("File too large")."""
    import resource

    import espeakng_loader

    limit = os.path.getsize(espeakng_loader.get_library_path()) // 2
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), TMPDIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "valle_hf", "Hello.", str(prompt_wav), str(tmp_path / "out.wav"), "--model",
         "tiny-random"], env=env, capture_output=True, text=True, timeout=240,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the espeak-ng library phonemizer runs could not be loaded (File too large: the file-size limit "
        f"(ulimit -f) is {limit} bytes): phonemizer copies it into the temporary folder {tmp_path}, so free space "
        "there, raise the file-size limit, or point TMPDIR at a folder that can take it"), result.stderr
    assert not (tmp_path / "out.wav").exists()


# A command that warns while it runs, and a program that warns after it.
WARNS = """
from valle_hf.errors import entry_point, get_logger
logger = get_logger("valle_hf.command")
main = entry_point()(lambda: logger.warning("the length limit was reached") or logger.warning("Warning: the Trainer's "
                                                                                          "own") or 0)
main()
logger.warning("after the command")
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("verbosity", ["", "detail"])
def test_a_command_warns_in_the_form_it_errs(verbosity):
    """Inside a command, warnings read `warning: <message>` as its `error:` lines do, not `[transformers] <message>`
    (the package logs through transformers' handler), a library's message that names its level ("Warning: ...", the
    Trainer's) without doubling it; the handler's own format comes back after it, and TRANSFORMERS_VERBOSITY=detail
    (file, line and time) is left alone."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), TRANSFORMERS_VERBOSITY=verbosity)
    result = subprocess.run([sys.executable, "-c", WARNS], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if verbosity == "detail":  # which logs transformers' debug lines too
        warned = [line for line in result.stderr.splitlines() if line.startswith("WARNING ")]
        assert len(warned) == 3 and all(line.startswith("WARNING [transformers.valle_hf.command:") for line in warned)
    else:
        expected = ["warning: the length limit was reached", "warning: the Trainer's own", "[transformers] after the "
                    "command"]
        assert result.stderr.splitlines() == expected


def test_a_callers_log_handlers_keep_their_format_through_a_command():
    """Only transformers' own handler takes the command's format: a caller's handler on transformers' logger read
    `warning: ...` inside a command (the tests' log capture too). A command that adds a handler there
    (`transformers.logging.add_handler`, as its Trainer's module does on SageMaker) or removes one ended in a
    ValueError after it had finished, its status lost; a command inside another, or beside it in another thread (one
    that ends after it), leaves the format to the outer or the first one."""
    import io
    import logging

    from transformers.utils import logging as transformers_logging

    from valle_hf.errors import _command_log_format, entry_point, get_logger

    mine, added, root = logging.StreamHandler(io.StringIO()), logging.StreamHandler(), transformers_logging.get_logger()
    mine.setFormatter(logging.Formatter("mine: %(message)s"))
    before = [(handler, handler.formatter) for handler in root.handlers]
    root.addHandler(mine)
    try:
        inner = entry_point()(lambda: get_logger("valle_hf.command").warning("inner") or 0)
        assert entry_point()(lambda: inner() or get_logger("valle_hf.command").warning("outer") or 2)() == 2
        assert mine.stream.getvalue().splitlines() == ["mine: inner", "mine: outer"]
        assert entry_point()(lambda: transformers_logging.add_handler(added) or 3)() == 3
        assert added.formatter is None
        assert entry_point()(lambda: transformers_logging.remove_handler(added) or 4)() == 4
    finally:
        root.removeHandler(added)
        root.removeHandler(mine)
    assert [(handler, handler.formatter) for handler in root.handlers] == before
    first, beside = _command_log_format(), _command_log_format()  # two threads' commands, the first ending first
    first.__enter__(), beside.__enter__(), first.__exit__(None, None, None), beside.__exit__(None, None, None)
    assert [(handler, handler.formatter) for handler in root.handlers] == before


def test_a_process_other_than_the_main_one_leaves_the_ctrl_c_line_to_it_and_says_its_own_error(monkeypatch, capsys):
    """Under a launcher Ctrl-C (or the launcher's stop) reaches every process, and each printed "interrupted": the
    main process alone says it now. An error is said by the process that found it (it may be its own data's)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")

    def refused():
        raise UsageError("--seed -1 is not allowed")

    def stopped():
        raise KeyboardInterrupt

    assert entry_point()(refused)() == 1 and entry_point()(stopped)() == 130
    assert capsys.readouterr().err == "error: --seed -1 is not allowed\n"
    monkeypatch.setenv("RANK", "0")
    assert entry_point()(stopped)() == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_upload_script_takes_the_released_models_own_dtype(upload_script):
    """`--released --dtype float32` was refused as a flag --released ignores, though float32 is what it converts in."""
    args = upload_script.build_parser().parse_args(["--released", "--repo-id", "me/x", "--dtype", "float32"])
    upload_script.check_source_flags(args)

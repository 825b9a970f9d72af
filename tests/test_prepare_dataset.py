"""scripts/prepare_dataset.py: metadata layouts read explicitly, every line prepared or reported, resumes that lose
nothing (a manifest line cut by a crash, settings that must not change), and one-line errors before any output."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import REPO, load_script, logged_warnings

from valle_hf.dataset import MANIFEST, PREPARE_CONFIG, read_manifest

IPA = "həlˈoʊ wˈɜːld."  # already IPA: passes through, so these tests do not depend on espeak's output


@pytest.fixture(scope="module")
def prepare():
    return load_script(REPO / "scripts" / "prepare_dataset.py")


def write_wav(path: Path, seconds: float = 0.2, frequency: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.arange(int(24000 * seconds)) / 24000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * samples)).astype(np.float32), 24000)
    return path


def folder_of_utterances(root: Path, count: int) -> Path:
    for index in range(count):
        write_wav(root / f"u{index}.wav", frequency=200.0 + 20 * index)
        (root / f"u{index}.txt").write_text(IPA, encoding="utf-8")
    return root


def run(prepare, capsys, data: Path, output: Path, *extra) -> tuple[int, str, str]:
    status = prepare.main([str(data), str(output), "--tokenizer", str(packaged_tokenizer()), "--codec", "tiny-random",
                           "--no-progress", *map(str, extra)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def packaged_tokenizer() -> Path:
    from valle_hf.tokenization import packaged_tokenizer_file

    return packaged_tokenizer_file()


def manifest_lines(output: Path) -> list[dict]:
    """Every line of the manifest, each of which must be a whole JSON record."""
    return [json.loads(line) for line in (output / MANIFEST).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("cut", ["partial", "no_newline"])
def test_a_resume_after_a_crash_mid_append_loses_no_record(prepare, capsys, tmp_path, cut):
    data, output = folder_of_utterances(tmp_path / "audio", 3), tmp_path / "prepared"
    assert run(prepare, capsys, data, output)[0] == 0
    manifest = output / MANIFEST
    content = manifest.read_text(encoding="utf-8")
    last = content.rstrip("\n").rsplit("\n", 1)[-1]
    # a crash in the middle of an append: half of the last record, or all of it without its newline
    kept = content[: len(content) - len(last) - 1] + (last[: len(last) // 2] if cut == "partial" else last)
    manifest.write_text(kept, encoding="utf-8")
    write_wav(data / "new.wav")
    (data / "new.txt").write_text(IPA, encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, output)
    assert status == 0, out
    records = manifest_lines(output)  # no record glued onto the cut line
    assert sorted(record["id"] for record in records) == ["new", "u0", "u1", "u2"]
    assert len(records) == 4 and len(read_manifest(output)) == 4


# id|text|normalized text: commas outnumber pipes, and quotes (even unbalanced ones) are part of the text
LJSPEECH = "".join(f"{utterance}|{text}|{normalized or text}\n" for utterance, text, normalized in (
    ("LJ001-0001", "Printing, in the only sense with which we are at present concerned, differs from most", None),
    ("LJ001-0002", 'He said "in being comparatively modern," and left.', None),
    ("LJ001-0003", '"A quote that never closes, in the text only', "A quote that never closes, in the text only"),
    ("LJ001-0004", "The line after it.", None),
))


def test_ljspeech_metadata_is_read_with_pipes_and_no_quoting(prepare, capsys, tmp_path):
    data = tmp_path / "LJSpeech"
    (data / "wavs").mkdir(parents=True)
    (data / "metadata.csv").write_text(LJSPEECH, encoding="utf-8")
    ids = [line.split("|")[0] for line in LJSPEECH.splitlines()]
    for utterance in ids:
        write_wav(data / "wavs" / f"{utterance}.wav")
    status, out, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "metadata.csv")
    assert status == 0 and not err.strip(), err
    records = {record["id"]: record for record in read_manifest(tmp_path / "out")}
    assert sorted(records) == ids
    assert records[ids[1]]["text"] == LJSPEECH.splitlines()[1].split("|")[2]  # quotes are text
    assert records[ids[3]]["text"] == LJSPEECH.splitlines()[3].split("|")[2]
    with open(data / "metadata.csv", "a", encoding="utf-8") as handle:  # a '|' inside the text: reported
        handle.write("LJ999-0001|Either this|or that|or that.\n")
    write_wav(data / "wavs" / "LJ999-0001.wav")
    status, out, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "metadata.csv")
    failed = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
    assert [record["id"] for record in failed] == ["LJ999-0001"]
    assert "4 '|'-separated columns where LJSpeech has 2 or 3" in failed[0]["error"]


def test_a_header_line_in_ljspeech_metadata_is_reported_as_one(prepare, capsys, tmp_path):
    """LJSpeech's metadata has no header: "id|text" was reported as a missing audio file, wavs/id.wav."""
    data = tmp_path / "LJSpeech"
    (data / "wavs").mkdir(parents=True)
    write_wav(data / "wavs" / "LJ001-0001.wav")
    (data / "metadata.csv").write_text(f"id|text\nLJ001-0001|{IPA}\n", encoding="utf-8")
    run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "metadata.csv")
    failed = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
    assert [record["id"] for record in failed] == ["id"]
    assert "metadata.csv line 1: 'id|text' looks like a header, which LJSpeech's metadata has none of" in \
        failed[0]["error"]
    assert [record["id"] for record in read_manifest(tmp_path / "out")] == ["LJ001-0001"]


def test_common_voice_tsv_with_an_unbalanced_quote_keeps_every_row(prepare, capsys, tmp_path):
    data = tmp_path / "cv"
    rows = [("alice", "a.wav", '"Hello, she said and left.'), ("bob", "b.wav", "Next row."), ("bob", "c.wav", "Last.")]
    for _, path, _ in rows:
        write_wav(data / "clips" / path)  # Common Voice keeps its audio in clips/
    lines = ["client_id\tpath\tsentence\tup_votes"] + [f"{who}\t{path}\t{text}\t2" for who, path, text in rows]
    (data / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "validated.tsv",
                         "--language", "en")
    assert status == 0, out
    records = {record["id"]: record for record in read_manifest(tmp_path / "out")}
    assert sorted(records) == ["a", "b", "c"] and records["a"]["text"] == rows[0][2]
    assert {record["speaker"] for record in records.values()} == {"alice", "bob"}


def test_every_csv_line_is_prepared_or_reported(prepare, capsys, tmp_path):
    data = tmp_path / "data"
    for name in ("a", "b", "c", "d", "e"):
        write_wav(data / f"{name}.wav")
    csv_text = (
        "file,text\n"
        f'a.wav,"{IPA}, quoted"\n'
        f'b.wav,"{IPA} with a quote that never closes\n'  # joins the lines after it into one record
        f"c.wav,{IPA}\n"
        "d.wav\n"  # too few columns
        f"e.wav,{IPA}\n"
    )
    (data / "meta.csv").write_text(csv_text, encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED
    prepared = [record["id"] for record in read_manifest(tmp_path / "out")]
    failed = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
    assert prepared == ["a"]
    assert len(failed) == 1 and "lines 3-6" in failed[0]["error"] and "a quote is unbalanced" in failed[0]["error"]
    assert failed[0]["audio"] == str((data / "meta.csv").absolute())  # the record read no audio: was DATA_DIR
    # without the unbalanced quote, the short row is reported by its line and the others are prepared
    missing = f"gone.wav,{IPA}\n"  # a line whose audio is missing: reported with its line too
    (data / "meta.csv").write_text(csv_text.replace(f'"{IPA} with a quote that never closes', IPA) + missing,
                                   encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, tmp_path / "out2", "--metadata", data / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED
    assert sorted(record["id"] for record in read_manifest(tmp_path / "out2")) == ["a", "b", "c", "e"]
    failed = [json.loads(line) for line in (tmp_path / "out2" / "failed.jsonl").read_text().splitlines()]
    assert [(entry["line"], entry["id"]) for entry in failed] == [("5", "d"), ("7", "gone")]
    assert "meta.csv line 5: 1 columns where the header has 2" in failed[0]["error"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("change", [("--language", "fr"), ("--language-switch", "remove"), ("--bandwidth", "3.0"),
                                    ("--codec", "facebook/encodec_24khz")])
def test_a_resume_with_other_settings_is_refused_and_changes_nothing(prepare, capsys, tmp_path, change):
    data, output = folder_of_utterances(tmp_path / "audio", 1), tmp_path / "prepared"
    assert run(prepare, capsys, data, output)[0] == 0
    write_wav(data / "more.wav")
    (data / "more.txt").write_text(IPA, encoding="utf-8")
    before = snapshot(output)
    status, _, err = run(prepare, capsys, data, output, *change)
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: ") and "was prepared with" in err
    assert snapshot(output) == before


@pytest.mark.parametrize("settings", ["[]", '"en"', "{"])
def test_a_resume_whose_settings_file_was_edited_into_no_settings_is_one_error_line(prepare, capsys, tmp_path,
                                                                                    settings):
    """A prepare_config.json edited into a JSON list or string was an AttributeError traceback ('list' object has no
    attribute 'get'); broken JSON was already named."""
    data, output = folder_of_utterances(tmp_path / "audio", 1), tmp_path / "prepared"
    assert run(prepare, capsys, data, output)[0] == 0
    (output / PREPARE_CONFIG).write_text(settings, encoding="utf-8")
    before = snapshot(output)
    status, _, err = run(prepare, capsys, data, output)
    assert status == 1 and err.count("\n") == 1 and err.startswith(f"error: {output / PREPARE_CONFIG} "), err
    assert snapshot(output) == before


def test_a_resume_names_the_same_codec_folder_from_another_working_folder(prepare, capsys, tmp_path, monkeypatch):
    """The codec folder was recorded as given: the same command with absolute paths (a job script), or from another
    folder, was refused as another codec."""
    from valle_hf.codec import tiny_random_codec

    tiny_random_codec().save_pretrained(tmp_path / "encodec")
    data, output = folder_of_utterances(tmp_path / "audio", 1), tmp_path / "prepared"
    tokenizer = ["--tokenizer", str(packaged_tokenizer()), "--no-progress"]
    monkeypatch.chdir(tmp_path)
    assert prepare.main([str(data), str(output), *tokenizer, "--codec", "encodec"]) == 0
    write_wav(data / "more.wav")
    (data / "more.txt").write_text(IPA, encoding="utf-8")
    monkeypatch.chdir(data)
    assert prepare.main([str(data), str(output), *tokenizer, "--codec", str(tmp_path / "encodec")]) == 0, \
        capsys.readouterr().err
    assert len(read_manifest(output)) == 2


def test_an_unknown_language_is_refused_once_before_any_output(prepare, capsys, tmp_path):
    data = folder_of_utterances(tmp_path / "audio", 2)
    status, out, err = run(prepare, capsys, data, tmp_path / "prepared", "--language", "xx-nope")
    assert status == 1 and err.count("\n") == 1 and "unknown language 'xx-nope'" in err and not out
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("flags, message", [
    (["--bandwidth", "0"], "--bandwidth 0 is not one of the codec's"), (["--bandwidth", "nan"], "--bandwidth nan"),
    (["--device", "meta"], "--device meta: a device without data"),
])
def test_a_bandwidth_or_device_that_cannot_run_is_refused_before_any_output(prepare, capsys, tmp_path, flags,
                                                                             message):
    data = folder_of_utterances(tmp_path / "audio", 1)
    status, out, err = run(prepare, capsys, data, tmp_path / "prepared", *flags)
    assert status == 1 and err.startswith(f"error: {message}") and err.count("\n") == 1 and not out, err
    assert not (tmp_path / "prepared").exists()


def test_ctrl_c_says_one_line_and_keeps_what_was_prepared(prepare, capsys, tmp_path, monkeypatch):
    data, output = folder_of_utterances(tmp_path / "audio", 3), tmp_path / "prepared"
    real, calls = prepare.prepare_one, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, "prepare_one", interrupted_on_the_second)
    status, _, err = run(prepare, capsys, data, output)
    assert status == 130 and err.count("\n") == 1 and "run the same command again to resume" in err
    assert [record["id"] for record in read_manifest(output)] == ["u0"]
    monkeypatch.setattr(prepare, "prepare_one", real)
    status, out, _ = run(prepare, capsys, data, output)
    assert status == 0 and "prepared 2 new utterance(s), 1 already done" in out


def test_a_model_folder_as_tokenizer_encodes_with_that_models_codec(prepare, capsys, tmp_path, converted_dir,
                                                                    hub_unreachable):
    """The codes a model reads are its own codec's: with --tokenizer MODEL_DIR and no --codec, that codec encodes
    (offline; EnCodec from the Hub before), the same as --codec MODEL_DIR, and not the default test codec."""
    import shutil

    from safetensors.torch import load_file

    from valle_hf.codec import codebook_fingerprint, tiny_random_codec
    from valle_hf.loading import load_model

    model_dir = tmp_path / "model"
    shutil.copytree(converted_dir, model_dir)
    model = load_model(str(model_dir))
    model.codec_model.load_state_dict(tiny_random_codec(seed=5).state_dict())  # a codec of its own
    model.save_pretrained(model_dir)
    data = folder_of_utterances(tmp_path / "data", 2)
    capsys.readouterr()

    def codes(output: Path, *codec: str) -> list:
        assert prepare.main([str(data), str(output), "--tokenizer", str(model_dir), *codec, "--no-progress"]) == 0
        assert "Loading weights" not in capsys.readouterr().err  # transformers' bar, loading the model's codec
        return [load_file(str(output / record["file"]))["codes"] for record in read_manifest(output)]

    own = codes(tmp_path / "own")
    assert json.loads((tmp_path / "own" / PREPARE_CONFIG).read_text())["codec"] == str(model_dir)
    named = codes(tmp_path / "named", "--codec", str(model_dir))
    tiny = codes(tmp_path / "tiny", "--codec", "tiny-random")
    assert all((a == b).all() for a, b in zip(own, named, strict=True))
    assert not all((a == b).all() for a, b in zip(own, tiny, strict=True))
    # each folder records its codec's codebooks, which fine-tuning checks against the model's codec
    recorded = {name: json.loads((tmp_path / name / PREPARE_CONFIG).read_text())["codec_codebooks_sha256"]
                for name in ("own", "named", "tiny")}
    assert recorded["own"] == recorded["named"] == codebook_fingerprint(model.codec_model)
    assert recorded["tiny"] == codebook_fingerprint(tiny_random_codec()) != recorded["own"]


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_an_output_folder_that_is_or_lies_under_a_file_is_refused_first(prepare, capsys, tmp_path, where):
    data = folder_of_utterances(tmp_path / "data", 1)
    (tmp_path / "notes.txt").write_text("mine")
    output = tmp_path / "notes.txt" / ("sub" if where == "under_a_file" else "")
    status, _, err = run(prepare, capsys, data, output)
    expected = "is a file" if where == "file" else f"is inside {tmp_path / 'notes.txt'}, which is a file"
    assert status == 1 and err.strip() == f"error: OUTPUT_DIR {output} {expected}: give a folder (it is created if " \
                                          "missing)"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_records_name_the_audio_by_an_absolute_path_whatever_the_working_folder(prepare, capsys, tmp_path,
                                                                               monkeypatch):
    folder_of_utterances(tmp_path / "data", 1)
    (tmp_path / "data" / "bad.wav").write_bytes(b"not audio")
    (tmp_path / "data" / "bad.txt").write_text(IPA, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    status, _, _ = run(prepare, capsys, Path("data"), Path("out"))
    assert status == prepare.SOME_ROWS_FAILED
    failed = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
    for record in [*read_manifest(tmp_path / "out"), *failed]:
        assert Path(record["audio"]).is_absolute() and Path(record["audio"]).is_file(), record


def test_a_clip_shorter_than_a_codec_frame_is_reported_not_prepared(prepare, capsys, tmp_path):
    data = folder_of_utterances(tmp_path / "data", 1)
    # "high": a few samples at 384 kHz, none left at 24 kHz
    for name, samples, rate in (("one", 1, 24000), ("short", 100, 24000), ("high", 5, 384000)):
        soundfile.write(data / f"{name}.wav", np.full(samples, 0.1, dtype=np.float32), rate)
        (data / f"{name}.txt").write_text(IPA, encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out")
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(tmp_path / "out")] == ["u0"]
    failed = {json.loads(line)["id"]: json.loads(line)["error"]
              for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()}
    assert sorted(failed) == ["high", "one", "short"]
    assert all("shorter than one codec frame" in error for error in failed.values())


def test_a_silent_recording_is_reported_not_prepared(prepare, capsys, tmp_path):
    """Silence was prepared (with a voice prompt's warning) and trained as the speech of its transcript."""
    from valle_hf.feature_extraction import SILENT_PEAK

    data = folder_of_utterances(tmp_path / "data", 1)
    for name, level in (("silent", 0.0), ("quiet", SILENT_PEAK / 2)):
        soundfile.write(data / f"{name}.wav", np.full(24000, level, dtype=np.float32), 24000, subtype="FLOAT")
        (data / f"{name}.txt").write_text(IPA, encoding="utf-8")
    with logged_warnings() as logged:
        status, _, _ = run(prepare, capsys, data, tmp_path / "out")
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(tmp_path / "out")] == ["u0"]
    failed = {record["id"]: record["error"] for record in failures(tmp_path / "out")}
    assert sorted(failed) == ["quiet", "silent"] and all("is silent" in error for error in failed.values())
    assert "random voice" not in logged.out  # the voice prompt's warning does not apply to a training utterance


def test_a_recording_cut_short_is_reported_not_prepared(prepare, capsys, tmp_path):
    """A WAV copy that stopped early was prepared as the part it holds, and trained as the speech of the whole
    transcript."""
    data = folder_of_utterances(tmp_path / "data", 2)
    whole = (data / "u1.wav").read_bytes()
    (data / "u1.wav").write_bytes(whole[:len(whole) * 2 // 3])
    status, _, _ = run(prepare, capsys, data, tmp_path / "out")
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(tmp_path / "out")] == ["u0"]
    failed = failures(tmp_path / "out")
    assert [record["id"] for record in failed] == ["u1"]
    assert "u1.wav is cut short: its header says" in failed[0]["error"]
    assert failed[0]["error"].endswith("(a copy that stopped early?): copy the file again")


def test_no_progress_quiets_the_codecs_loading_bar(prepare, capsys, tmp_path):
    """transformers' "Loading weights" bar came with --no-progress."""
    from valle_hf.codec import tiny_random_codec

    tiny_random_codec().save_pretrained(tmp_path / "codec")
    data = folder_of_utterances(tmp_path / "data", 1)
    capsys.readouterr()
    status, _, err = run(prepare, capsys, data, tmp_path / "out", "--codec", tmp_path / "codec")
    assert status == 0 and "Loading weights" not in err, err


def test_a_model_folder_without_weights_as_tokenizer_names_the_codec_flags(prepare, capsys, tmp_path):
    import shutil

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(packaged_tokenizer(), folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({"model_type": "valle"}))  # converted, then its weights lost
    data = folder_of_utterances(tmp_path / "data", 1)
    status = prepare.main([str(data), str(tmp_path / "out"), "--tokenizer", str(folder), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.startswith(f"error: the codec of the model folder {folder} cannot be loaded"), err
    assert err.endswith("give the codec with --codec DIR, or --codec tiny-random (a test codec)")
    assert "--model" not in err and len(err.splitlines()) == 1


def failures(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "failed.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_metadata_file_naming_an_audio_file_twice_reports_the_line_that_named_it_first(prepare, capsys, tmp_path):
    """The hint was "same name with another extension?" for two lines naming one file."""
    data = tmp_path / "data"
    for name in ("a", "b"):
        write_wav(data / f"{name}.wav")
    (data / "meta.csv").write_text(f"file,text\na.wav,{IPA}\nb.wav,{IPA}\na.wav,{IPA} again\n", encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED
    assert sorted(record["id"] for record in read_manifest(tmp_path / "out")) == ["a", "b"]
    failed = failures(tmp_path / "out")
    assert [(record["line"], record["id"]) for record in failed] == [("4", "a")]
    assert failed[0]["error"] == "duplicate utterance id 'a': line 2 names a.wav too"


def test_two_paths_to_one_recording_prepare_it_once(prepare, capsys, tmp_path):
    """A metadata file naming one recording by two paths (relative and absolute), and a link to a recording in a
    folder, prepared it twice under two ids: one recording trained on twice."""
    data = tmp_path / "data"
    for name in ("a", "b"):
        write_wav(data / f"{name}.wav")
    (data / "meta.csv").write_text(f"file,text\na.wav,{IPA}\nb.wav,{IPA}\n{data / 'a.wav'},{IPA}\n",
                                   encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED
    assert sorted(record["id"] for record in read_manifest(tmp_path / "out")) == ["a", "b"]
    failed = failures(tmp_path / "out")
    assert [record["line"] for record in failed] == ["4"]
    assert failed[0]["error"].endswith("the recording of 'a': line 2 names it too: keep one of the lines")

    folder = tmp_path / "folder"
    write_wav(folder / "a.wav")
    (folder / "a.txt").write_text(IPA, encoding="utf-8")
    (folder / "b.wav").symlink_to(folder / "a.wav")
    (folder / "b.txt").write_text(IPA, encoding="utf-8")
    status, _, _ = run(prepare, capsys, folder, tmp_path / "out2")
    assert status == prepare.SOME_ROWS_FAILED
    assert [record["id"] for record in read_manifest(tmp_path / "out2")] == ["a"]
    assert failures(tmp_path / "out2")[0]["error"].endswith("a link to it in the folder: remove one")
    # a set an earlier version prepared holds both: the second's record goes, not left beside its failure
    record = {**read_manifest(tmp_path / "out2")[0], "id": "b"}
    with (tmp_path / "out2" / "manifest.jsonl").open("a", encoding="utf-8") as manifest:
        manifest.write(json.dumps(record) + "\n")
    assert run(prepare, capsys, folder, tmp_path / "out2")[0] == prepare.SOME_ROWS_FAILED
    assert [record["id"] for record in read_manifest(tmp_path / "out2")] == ["a"]


def test_a_csv_read_as_jsonl_says_that_no_line_is_json(prepare, capsys, tmp_path):
    """It said "the jsonl layout needs a header naming an audio column ...; it has ''"."""
    data = tmp_path / "data"
    write_wav(data / "a.wav")
    (data / "meta.csv").write_text(f"file,text\na.wav,{IPA}\n", encoding="utf-8")
    status, _, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv",
                         "--metadata-format", "jsonl")
    assert status == 1 and "meta.csv: no line can be read (line 1: not JSON" in err, err
    # a JSON line with a fault of its own is that line's failure, not a file in another layout
    write_wav(data / "b.wav")
    (data / "meta.jsonl").write_text(f'{{"file": "a.wav", "text": "{IPA}", "text": "again"}}\n'
                                     f'{{"file": "b.wav", "text": "{IPA}"}}\n', encoding="utf-8")
    status, _, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.jsonl")
    assert status == prepare.SOME_ROWS_FAILED, err
    assert "the key text appears twice" in failures(tmp_path / "out")[0]["error"]
    (data / "meta.jsonl").write_text(f'{{"file": "a.wav", "text": "{IPA}", "text": "again"}}\n', encoding="utf-8")
    status, _, err = run(prepare, capsys, data, tmp_path / "out2", "--metadata", data / "meta.jsonl")
    assert status == 1 and err.strip().endswith("no line can be read (line 1: the key text appears twice; keep one)")


def test_a_metadata_file_with_a_header_only_is_named(prepare, capsys, tmp_path):
    """It was refused as "no audio files found in DATA_DIR", a folder that held them."""
    data = tmp_path / "data"
    write_wav(data / "a.wav")
    (data / "meta.csv").write_text("file,text\n", encoding="utf-8")
    status, _, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv")
    assert status == 1 and f"--metadata {data / 'meta.csv'} has no rows" in err, err


def test_a_resume_reports_a_duplicate_again_and_counts_what_the_manifest_holds(prepare, capsys, tmp_path,
                                                                               monkeypatch):
    """A resume dropped a duplicate id (u0.wav beside u0.flac) from failed.jsonl, its id being done, and counted it
    as done: "N already done" with N - 1 utterances in the manifest. Reporting it needs no codec."""
    data, output = folder_of_utterances(tmp_path / "audio", 3), tmp_path / "prepared"
    write_wav(data / "u0.flac")  # the same name, another extension
    assert run(prepare, capsys, data, output)[0] == prepare.SOME_ROWS_FAILED
    failed = failures(output)
    assert len(failed) == 1 and re.search(r"duplicate utterance id 'u0': u0\.(wav|flac) has it too \(the same name "
                                          r"with another extension\), and is the one prepared: keep one of them",
                                          failed[0]["error"])
    assert Path(failed[0]["audio"]).name not in failed[0]["error"]  # the other file is named, not itself
    monkeypatch.setattr(prepare, "load_codec_model", None)  # nothing left to encode: a call would fail
    status, out, _ = run(prepare, capsys, data, output)
    assert status == prepare.SOME_ROWS_FAILED and failures(output) == failed
    assert f"prepared 0 new utterance(s), {len(read_manifest(output))} already done" in out
    assert f"could not use {len(failed)} file(s)" in out


def test_a_jsonl_value_that_is_no_text_is_reported_by_its_line_not_spelt_as_python(prepare, capsys, tmp_path):
    """`"text": ["list", "text"]` was prepared as the transcript "['list', 'text']"; a number is text, as synthesis
    reads it."""
    data = tmp_path / "data"
    rows = [{"audio": "a.wav", "text": IPA}, {"audio": "b.wav", "text": ["list", "text"]},
            {"audio": ["c.wav"], "text": IPA}, {"audio": "d.wav", "text": IPA, "speaker": {"name": "d"}},
            {"audio": "e.wav", "text": IPA, "speaker": 7}, {"audio": "f.wav", "text": True}]
    for row in rows:
        write_wav(data / (row["audio"] if isinstance(row["audio"], str) else row["audio"][0]))
    (data / "meta.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.jsonl")
    assert status == prepare.SOME_ROWS_FAILED

    def no_text(value) -> bool:
        return isinstance(value, (list, dict, bool))

    refused = [(str(number), column, value) for number, row in enumerate(rows, start=1)
               for column, value in row.items() if no_text(value)]
    failed = failures(tmp_path / "out")
    assert [record["line"] for record in failed] == [line for line, _, _ in refused]
    for record, (line, column, value) in zip(failed, refused, strict=True):
        assert record["error"] == f"meta.jsonl line {line}: {column} is the JSON {json.dumps(value)}, not text"
    prepared = read_manifest(tmp_path / "out")
    kept = [row for row in rows if not any(map(no_text, row.values()))]
    assert sorted(record["audio"] for record in prepared) == sorted(str(data / row["audio"]) for row in kept)
    assert sorted(record["speaker"] for record in prepared) == sorted(str(row.get("speaker", "default"))
                                                                      for row in kept)


def test_a_language_column_reads_each_row_in_its_language_and_reports_an_unknown_one(prepare, capsys, tmp_path):
    """A metadata language column was ignored: a French row was phonemised as English and trained so."""
    from valle_hf.phonemes import phonemize

    data, text = tmp_path / "data", "Bonjour le monde."
    rows = [("a.wav", "en"), ("b.wav", "fr"), ("c.wav", ""), ("d.wav", "xx")]
    for path, _ in rows:
        write_wav(data / path)
    (data / "meta.csv").write_text("audio,text,language\n" + "".join(f"{path},{text},{language}\n"
                                                                      for path, language in rows), encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv", "--language", "de")
    assert status == prepare.SOME_ROWS_FAILED
    records = {record["id"]: record for record in read_manifest(tmp_path / "out")}
    expected = {"a": "en", "b": "fr", "c": "de"}  # a row without one gets --language
    assert {key: record["language"] for key, record in records.items()} == expected
    for key, language in expected.items():
        assert records[key]["phonemes"] == phonemize(text, language)
    failed = failures(tmp_path / "out")
    assert [(record["line"], record["id"]) for record in failed] == [("5", "d")]
    assert "unknown language 'xx'" in failed[0]["error"]


def test_a_resume_prepares_again_an_utterance_whose_transcript_or_speaker_was_edited(prepare, capsys, tmp_path):
    """A corrected transcript was counted as done: training kept the old text's ids."""
    from valle_hf.dataset import load_utterance
    from valle_hf.tokenization import load_phoneme_tokenizer, tokenize_phonemes

    data, output = tmp_path / "data", tmp_path / "out"
    for name in ("a", "b", "c"):
        write_wav(data / f"{name}.wav")
    edited = "hˈaɪ ðˈɛɹ."  # another IPA text
    rows = {"a": (IPA, "s1"), "b": (IPA, "s1"), "c": (IPA, "s1")}

    def prepare_rows() -> str:
        lines = "".join(f"{name}.wav,{text},{speaker}\n" for name, (text, speaker) in rows.items())
        (data / "meta.csv").write_text("audio,text,speaker\n" + lines, encoding="utf-8")
        status, out, _ = run(prepare, capsys, data, output, "--metadata", data / "meta.csv")
        assert status == 0
        return out

    prepare_rows()
    rows.update(a=(edited, "s1"), b=(IPA, "s2"))
    assert "prepared 2 new utterance(s), 1 already done; 3 in" in prepare_rows()
    records = {record["id"]: record for record in read_manifest(output)}
    assert {name: (record["text"], record["speaker"]) for name, record in records.items()} == rows
    ids = tokenize_phonemes(load_phoneme_tokenizer(packaged_tokenizer()), [edited], padding=False)["input_ids"][0]
    assert load_utterance(output, records["a"])["input_ids"].tolist() == ids


def test_a_folder_prepared_with_language_auto_before_rows_had_their_own_resumes_as_done(prepare, capsys, tmp_path):
    """Records kept --language as given ("auto"); they now keep the language resolved for the row, and the resume
    compared the two: every utterance of such a folder was prepared again."""
    data, output = tmp_path / "data", tmp_path / "out"
    for name in ("a", "b"):
        write_wav(data / f"{name}.wav")
        (data / f"{name}.txt").write_text(IPA, encoding="utf-8")
    assert run(prepare, capsys, data, output, "--language", "auto")[0] == 0
    manifest = output / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert {record["language"] for record in records} != {"auto"}  # resolved now
    manifest.write_text("".join(json.dumps({**record, "language": "auto"}) + "\n" for record in records),
                        encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, output, "--language", "auto")
    assert status == 0 and "prepared 0 new utterance(s), 2 already done" in out, out


def test_a_transcript_file_with_a_byte_order_mark_or_not_in_utf8(prepare, capsys, tmp_path):
    """A byte-order mark stayed at the head of the transcript; a Latin-1 file's error did not say how to fix it."""
    data = tmp_path / "data"
    transcripts = {"bom": IPA.encode("utf-8-sig") + b"\r\n", "latin": "café.".encode("latin-1")}
    for name, content in transcripts.items():
        write_wav(data / f"{name}.wav")
        (data / f"{name}.txt").write_bytes(content)
    assert run(prepare, capsys, data, tmp_path / "out")[0] == prepare.SOME_ROWS_FAILED
    assert [record["text"] for record in read_manifest(tmp_path / "out")] == [IPA]
    (failed,) = failures(tmp_path / "out")
    assert failed["id"] == "latin" and failed["error"].endswith("is not UTF-8 text (invalid continuation byte): "
                                                                "save it as UTF-8")


def test_a_transcript_whose_phonemes_the_tokenizer_cannot_read_is_reported(prepare, capsys, tmp_path):
    """Letters taken as IPA (a stray stress mark) were trained as <unk> under a warning that named no file."""
    from valle_hf.tokenization import load_phoneme_tokenizer, phoneme_ids

    data = folder_of_utterances(tmp_path / "data", 1)
    text = "Hello world.ˈ"
    unknown = phoneme_ids(load_phoneme_tokenizer(packaged_tokenizer()), text)[1]
    assert unknown and not phoneme_ids(load_phoneme_tokenizer(packaged_tokenizer()), IPA)[1]
    write_wav(data / "mixed.wav")
    (data / "mixed.txt").write_text(text, encoding="utf-8")
    assert run(prepare, capsys, data, tmp_path / "out")[0] == prepare.SOME_ROWS_FAILED
    assert [record["id"] for record in read_manifest(tmp_path / "out")] == ["u0"]
    (failed,) = failures(tmp_path / "out")
    assert failed["id"] == "mixed" and f"no id for ({', '.join(map(repr, unknown))})" in failed["error"]


def test_a_resume_with_the_language_code_spelled_otherwise_is_the_same_setting(prepare, capsys, tmp_path):
    """A resume with --language en after --language EN (the same code) was refused as another setting."""
    data, output = tmp_path / "data", tmp_path / "out"
    write_wav(data / "a.wav")
    (data / "a.txt").write_text("Hello there.", encoding="utf-8")
    assert run(prepare, capsys, data, output, "--language", "EN")[0] == 0
    status, out, err = run(prepare, capsys, data, output, "--language", "en")
    assert status == 0 and "0 new utterance(s), 1 already done" in out, err


@pytest.mark.parametrize("spelling", ["same", "dot", "link"])
def test_an_output_folder_that_is_the_data_folder_is_refused_first(prepare, capsys, tmp_path, spelling):
    """The prepared set (utterances/, manifest.jsonl, failed.jsonl) was written among the recordings."""
    data = folder_of_utterances(tmp_path / "data", 1)
    (tmp_path / "link").symlink_to(data)
    output = {"same": data, "dot": data / "." / "sub" / "..", "link": tmp_path / "link"}[spelling]
    status, _, err = run(prepare, capsys, data, output)
    assert status == 1
    assert err.strip() == f"error: OUTPUT_DIR {output} is DATA_DIR: the prepared set would be written among the " \
                          f"recordings; give a folder of its own (such as {output / 'prepared'})"
    assert sorted(path.name for path in data.iterdir()) == ["u0.txt", "u0.wav"]
    assert run(prepare, capsys, data, data / "prepared")[0] == 0  # a folder inside it is its own


def test_an_output_folder_inside_the_data_folder_that_holds_recordings_is_refused(prepare, capsys, tmp_path):
    """A speaker's folder given as OUTPUT_DIR got the prepared set among its recordings, which its message named as
    the way out (DATA_DIR/prepared)."""
    data = tmp_path / "data"
    folder_of_utterances(data / "spk1", 1)
    status, _, err = run(prepare, capsys, data, data / "spk1")
    assert status == 1 and err.strip() == (
        f"error: OUTPUT_DIR {data / 'spk1'} holds recordings to prepare ({data / 'spk1' / 'u0.wav'}): the prepared set "
        f"would be written among them; give a folder of its own (such as {data / 'prepared'})"), err
    assert sorted(path.name for path in (data / "spk1").iterdir()) == ["u0.txt", "u0.wav"]
    # a metadata file kept in OUTPUT_DIR is no recording, also where a row of it names no audio (it is reported by it)
    (data / "out").mkdir()
    (data / "out" / "meta.csv").write_text(f"file,text\nspk1/u0.wav,{IPA}\n,{IPA}\n", encoding="utf-8")
    status, _, err = run(prepare, capsys, data, data / "out", "--metadata", data / "out" / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED, err
    # DATA_DIR inside OUTPUT_DIR (corpus/wavs into corpus): the prepared set goes beside the recordings' folder
    assert run(prepare, capsys, data / "spk1", data)[0] == 0


def test_a_metadata_folder_is_named_as_a_folder_not_missing(prepare, capsys, tmp_path):
    data = folder_of_utterances(tmp_path / "data", 1)
    status, _, err = run(prepare, capsys, data, tmp_path / "out", "--metadata", data)
    assert status == 1 and err.strip() == f"error: --metadata {data} is a folder: give the metadata file in it (a " \
                                          ".csv, .tsv or .jsonl), or drop --metadata to read the transcript files " \
                                          "beside the audio"


@pytest.mark.parametrize("name", [MANIFEST, "failed.jsonl", PREPARE_CONFIG])
def test_metadata_the_run_would_overwrite_is_refused_first(prepare, capsys, tmp_path, name):
    data = write_wav(tmp_path / "data" / "u0.wav").parent
    output = tmp_path / "out"
    output.mkdir()
    metadata = output / name
    metadata.write_text(json.dumps({"audio": "u0.wav", "text": IPA}) + "\n", encoding="utf-8")
    status, _, err = run(prepare, capsys, data, output, "--metadata", metadata, "--metadata-format", "jsonl")
    assert status == 1
    assert err.strip() == f"error: --metadata {metadata} is the {name} this run writes in OUTPUT_DIR, which would " \
                          "overwrite it: move it, or give another OUTPUT_DIR"
    assert metadata.read_text(encoding="utf-8") == json.dumps({"audio": "u0.wav", "text": IPA}) + "\n"


@pytest.mark.parametrize("path", [".", "/"])
def test_an_audio_path_with_no_file_name_is_reported_by_its_line(prepare, capsys, tmp_path, path):
    """A metadata row naming a folder with no name ('.', '/') as its audio was a ValueError traceback (an id is the
    path without its extension, and pathlib has no extension to remove from a path without a name)."""
    data = tmp_path / "data"
    write_wav(data / "a.wav")
    (data / "meta.csv").write_text(f"file,text\n{path},{IPA}\na.wav,{IPA}\n", encoding="utf-8")
    status, _, _ = run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "meta.csv")
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(tmp_path / "out")] == ["a"]
    failed = failures(tmp_path / "out")
    assert [record["line"] for record in failed] == ["2"] and "is a directory, not an audio file" in failed[0]["error"]


def test_the_exit_status_says_whether_every_file_was_prepared(prepare, capsys, tmp_path):
    """A run that could not use some files exited 0, as a complete one did: a script that prepared and then trained
    went on with part of its data, whereas `synthesize` exits 3 for failed rows."""
    data = folder_of_utterances(tmp_path / "data", 2)
    transcript = (data / "u1.txt").read_text(encoding="utf-8")
    (data / "u1.txt").write_text("", encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, tmp_path / "out")
    assert status == prepare.SOME_ROWS_FAILED == 3 and "could not use 1 file(s)" in out
    (data / "u1.txt").write_text(transcript, encoding="utf-8")  # mended: the resume prepares it
    assert run(prepare, capsys, data, tmp_path / "out")[0] == 0


def test_an_edited_utterance_that_now_fails_leaves_the_manifest(prepare, capsys, tmp_path):
    """A transcript emptied since it was prepared was reported as failing, but its old record stayed in the manifest:
    training went on with the text the user had replaced. A duplicate of a prepared id, refused on every run, keeps
    the first one's record."""
    data, output = folder_of_utterances(tmp_path / "data", 3), tmp_path / "out"
    assert run(prepare, capsys, data, output)[0] == 0
    (data / "u1.txt").write_text("", encoding="utf-8")
    write_wav(data / "u2.flac")  # the id u2 twice: refused, as every run refuses it
    status, out, _ = run(prepare, capsys, data, output)
    assert status == prepare.SOME_ROWS_FAILED
    assert sorted(record["id"] for record in read_manifest(output)) == ["u0", "u2"], out
    assert "; 2 in" in out, out


def test_the_settings_file_is_written_whole_or_left_as_it_was(prepare, capsys, tmp_path, monkeypatch):
    """prepare_config.json was rewritten in place before each utterance: a write the disk refused ended in a
    traceback and left it cut short, and no run could resume the folder again."""
    data, output = folder_of_utterances(tmp_path / "data", 2), tmp_path / "out"
    assert run(prepare, capsys, data, output)[0] == 0
    before = (output / PREPARE_CONFIG).read_bytes()
    real_write = Path.write_text

    def full_disk(path, content, *args, **kwargs):
        real_write(path, content[:10], *args, **kwargs)  # what a full disk leaves
        if PREPARE_CONFIG in path.name:
            raise OSError(28, "No space left on device")

    write_wav(data / "u9.wav")
    (data / "u9.txt").write_text(IPA, encoding="utf-8")
    monkeypatch.setattr(Path, "write_text", full_disk)
    status, _, err = run(prepare, capsys, data, output)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"error: could not write {output / PREPARE_CONFIG} (No space left on device)"), err
    monkeypatch.undo()
    assert (output / PREPARE_CONFIG).read_bytes() == before
    assert run(prepare, capsys, data, output)[0] == 0  # and the folder resumes


@pytest.mark.parametrize("name", ["failed.jsonl", PREPARE_CONFIG])
def test_a_folder_where_the_run_writes_a_file_is_refused_first(prepare, capsys, tmp_path, name):
    data, output = folder_of_utterances(tmp_path / "data", 1), tmp_path / "out"
    (output / name).mkdir(parents=True)
    status, _, err = run(prepare, capsys, data, output)
    assert status == 1 and err == (f"error: {output / name} is a folder where this run writes its {name}: move it "
                                   "away, or give another OUTPUT_DIR\n")


def test_an_audio_file_whose_name_is_not_utf8_is_reported_as_such(prepare, capsys, tmp_path):
    """Its failure was told as an unreadable audio file, then writing failed.jsonl crashed (surrogates in JSON)."""
    data, output = folder_of_utterances(tmp_path / "data", 1), tmp_path / "out"
    write_wav(data / "cafe.wav")  # the audio libraries cannot write such a name either
    os.rename(data / "cafe.wav", os.fsencode(data) + b"/caf\xe9.wav")
    (data / os.fsdecode(b"caf\xe9.txt")).write_text(IPA, encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, output)
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(output)] == ["u0"]
    failed = [json.loads(line) for line in (output / "failed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(failed) == 1 and failed[0]["audio"].endswith("caf\\xe9.wav")
    assert "the file's name is not UTF-8 text" in failed[0]["error"]


def test_an_empty_normalized_column_in_ljspeech_metadata_reads_the_text_column(prepare, capsys, tmp_path):
    data = tmp_path / "data"
    write_wav(data / "wavs" / "a.wav")
    (data / "metadata.csv").write_text(f"a|{IPA}|\n", encoding="utf-8")
    assert run(prepare, capsys, data, tmp_path / "out", "--metadata", data / "metadata.csv")[0] == 0
    assert [record["text"] for record in read_manifest(tmp_path / "out")] == [IPA]


def test_a_converted_models_folder_as_output_is_refused_first(prepare, capsys, tmp_path, converted_dir):
    """The model folder given as --tokenizer and OUTPUT_DIR both: the prepared set (transcripts, local paths) went in
    among the model's files, and convert_and_upload.py would publish it with the model."""
    import shutil

    data, model = folder_of_utterances(tmp_path / "data", 1), tmp_path / "model"
    shutil.copytree(converted_dir, model)
    before = sorted(path.name for path in model.iterdir())
    status, _, err = run(prepare, capsys, data, model)
    assert status == 1 and err == (f"error: OUTPUT_DIR {model} is a converted model's folder: the prepared set would "
                                   f"be written among its files; give a folder of its own (such as "
                                   f"{model / 'prepared'})\n"), err
    assert sorted(path.name for path in model.iterdir()) == before


def test_an_utterance_whose_id_makes_too_long_a_file_name_is_reported_and_the_others_prepared(prepare, capsys,
                                                                                               tmp_path):
    """A name the folder takes but whose utterance file (.safetensors, a longer suffix) it does not stopped the whole
    run, on every rerun, as a write every file would fail."""
    data, output = folder_of_utterances(tmp_path / "data", 1), tmp_path / "out"
    long = "a" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4)  # long.wav fits, long.safetensors does not
    write_wav(data / f"{long}.wav")
    (data / f"{long}.txt").write_text(IPA, encoding="utf-8")
    status, out, _ = run(prepare, capsys, data, output)
    assert status == prepare.SOME_ROWS_FAILED and [record["id"] for record in read_manifest(output)] == ["u0"], out
    failed = [json.loads(line) for line in (output / "failed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [record["id"] for record in failed] == [long]
    assert "makes a file name longer than the file system takes: shorten its audio file's name" in failed[0]["error"]

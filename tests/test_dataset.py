"""Prepared training sets (valle_hf.dataset): utterance files, the manifest, and VallEDataset's items and prompts;
and scripts/prepare_dataset.py, which writes them."""

from __future__ import annotations

import collections
import json
import math
import os
import random
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, load_script

from valle_hf.dataset import (
    FRAME_RATE,
    MANIFEST,
    VallEDataset,
    append_manifest,
    load_utterance,
    read_manifest,
    save_utterance,
    utterance_path,
)

LEVELS = 8


def utterance_codes(tag: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Codes that name their source: level 0 holds `tag` (one per utterance), level 1 the frame index."""
    codes = torch.randint(0, 1024, (frames, LEVELS), generator=generator)
    codes[:, 0] = tag
    codes[:, 1] = torch.arange(frames)
    return codes


def write_dataset(root: Path, frames_per_speaker: dict[str, list[int]]) -> dict[str, dict]:
    """A prepared folder with one utterance per entry (tag = its index); returns the records by id."""
    generator = torch.Generator().manual_seed(0)
    records, tag = {}, 0
    for speaker, lengths in frames_per_speaker.items():
        for index, frames in enumerate(lengths):
            utterance = f"{speaker}/u{index}"
            text = torch.cat([torch.tensor([1]), torch.randint(3, 256, (4,), generator=generator), torch.tensor([2])])
            file = save_utterance(root, utterance, text, utterance_codes(tag, frames, generator))
            record = {"id": utterance, "speaker": speaker, "frames": frames, "file": file, "tag": tag}
            append_manifest(root, record)
            records[utterance] = record
            tag += 1
    return records


def pieces(prompt: torch.Tensor) -> list[tuple[int, int]]:
    """(tag, frames) of each piece of a joined prompt; each piece must be the start of its utterance."""
    starts = [index for index in range(len(prompt)) if prompt[index, 1] == 0]
    assert starts and starts[0] == 0, "every piece starts at the first frame of its utterance"
    found = []
    for start, end in zip(starts, [*starts[1:], len(prompt)], strict=True):
        piece = prompt[start:end]
        assert (piece[:, 0] == piece[0, 0]).all() and torch.equal(piece[:, 1], torch.arange(len(piece)))
        found.append((int(piece[0, 0]), len(piece)))
    return found


# ---------------------------------------------------------------------------------------------------- files


def test_utterances_round_trip_as_int16_files_written_atomically(tmp_path):
    generator = torch.Generator().manual_seed(1)
    text, codes = torch.tensor([1, 40, 300, 2]), utterance_codes(7, 12, generator)
    file = save_utterance(tmp_path, "spk/one", text, codes)
    assert file == "utterances/spk/one.safetensors" and (tmp_path / file) == utterance_path(tmp_path, "spk/one")
    assert [path.name for path in (tmp_path / "utterances" / "spk").iterdir()] == ["one.safetensors"]  # no .tmp
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / file).stat().st_mode & 0o777 == 0o666 & ~umask  # was owner-only, safetensors' mode
    loaded = load_utterance(tmp_path, {"file": file})
    assert loaded["input_ids"].dtype == loaded["audio_codes"].dtype == torch.long
    assert torch.equal(loaded["input_ids"], text) and torch.equal(loaded["audio_codes"], codes)
    from safetensors import safe_open

    with safe_open(str(tmp_path / file), framework="pt") as handle:  # on disk: int16, half of int32's bytes
        assert {key: handle.get_slice(key).get_dtype() for key in handle.keys()} == {"text_ids": "I16", "codes": "I16"}


def test_manifest_keeps_whole_lines_whose_files_exist(tmp_path):
    assert read_manifest(tmp_path) == []
    records = write_dataset(tmp_path, {"a": [5, 6], "b": [7]})
    append_manifest(tmp_path, {"id": "ghost", "speaker": "a", "frames": 3, "file": "utterances/ghost.safetensors"})
    redone = {**records["a/u1"], "frames": 99}  # a re-done utterance replaces its earlier line
    append_manifest(tmp_path, redone)
    with open(tmp_path / MANIFEST, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(records["b/u0"])[:20])  # the last line, cut off by a crash
    read = {record["id"]: record for record in read_manifest(tmp_path)}
    assert set(read) == {"a/u0", "a/u1", "b/u0"}
    assert read["a/u1"] == redone and read["b/u0"] == records["b/u0"]


def test_utterances_whose_files_are_gone_are_named_in_a_warning_when_training_reads_the_folder(tmp_path):
    from conftest import logged_warnings

    records = write_dataset(tmp_path, {"a": [80, 90], "b": [100]})
    with logged_warnings() as logged:
        VallEDataset(tmp_path)
    assert "have no file" not in logged.out
    Path(tmp_path / records["a/u1"]["file"]).unlink()
    with logged_warnings() as logged:
        dataset = VallEDataset(tmp_path)
    assert len(dataset) == len(records) - 1
    assert "1 utterance(s) of" in logged.out and "have no file and are left out (the first: 'a/u1')" in logged.out


# ---------------------------------------------------------------------------------------------------- items


def test_a_data_set_under_the_home_folder_is_found_by_its_tilde(tmp_path, monkeypatch):
    """A "~" in Python is no shell's to expand: "~/data" was looked for in a folder named "~"."""
    records = write_dataset(tmp_path / "data", {"a": [80, 90]})
    monkeypatch.setenv("HOME", str(tmp_path))
    dataset = VallEDataset("~/data", prompt_duration=(0.2, 0.6))
    assert dataset.root == tmp_path / "data" and len(dataset) == len(records)


def test_items_have_text_codes_and_a_prompt_from_the_same_speaker(tmp_path):
    records = write_dataset(tmp_path, {"a": [80, 90, 100], "b": [70, 85]})
    dataset = VallEDataset(tmp_path, prompt_duration=(0.2, 0.6))
    assert len(dataset) == 5 and [record["id"] for record in dataset.records] == sorted(records)
    tags = {record["tag"]: record for record in records.values()}
    prompts = []
    for index in range(len(dataset)):
        item = dataset[index]
        prompts.append(item["prompt_codes"])
        record = records[item["id"]]
        assert torch.equal(item["audio_codes"], load_utterance(tmp_path, record)["audio_codes"])
        assert item["input_ids"][0] == 1 and item["input_ids"][-1] == 2
        assert int(0.2 * FRAME_RATE) <= len(item["prompt_codes"]) <= int(0.6 * FRAME_RATE)
        for tag, _ in pieces(item["prompt_codes"]):
            assert tags[tag]["speaker"] == record["speaker"] and tag != record["tag"]
    again = VallEDataset(tmp_path, prompt_duration=(0.2, 0.6))  # the same seed: the same prompts
    assert all(torch.equal(again[index]["prompt_codes"], prompts[index]) for index in range(len(again)))
    assert "task" not in dataset[0]
    assert VallEDataset(tmp_path, task="tts")[0]["task"] == "tts"
    stt = VallEDataset(tmp_path, task="stt")[0]
    assert stt["task"] == "stt" and "prompt_codes" not in stt


def test_prompts_are_keyed_on_the_epoch_and_the_index_once_an_epoch_is_set(tmp_path):
    """With an epoch set (the collator's Trainer callback sets it), an item's prompt depends on (seed, epoch, index)
    only: not on the order items are read in or on the DataLoader workers (persistent ones see a new epoch too), so
    a resumed run reads the prompts of the run it continues; a new epoch draws anew."""
    write_dataset(tmp_path, {"a": [80, 90, 100, 95], "b": [70, 85, 75]})
    dataset = VallEDataset(tmp_path, prompt_duration=(0.2, 0.6), seed=4)
    assert dataset.epoch is None

    def prompts(source, order):
        return [source[index]["prompt_codes"].tolist() for index in order]

    dataset.set_epoch(2)
    expected = prompts(dataset, range(len(dataset)))
    assert len({len(prompt) for prompt in expected}) > 1  # each item draws its own length, not the epoch's one
    assert prompts(dataset, reversed(range(len(dataset)))) == expected[::-1]
    fresh = VallEDataset(tmp_path, prompt_duration=(0.2, 0.6), seed=4)
    fresh.set_epoch(2)
    assert prompts(fresh, [3, 1]) == [expected[3], expected[1]]  # a resumed run reads only the items left
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in (2, 3):
        dataset.set_epoch(epoch)
        assert [item["prompt_codes"].tolist() for item in loader] == prompts(dataset, range(len(dataset)))
    assert prompts(dataset, range(len(dataset))) != expected  # epoch 3 drew anew


def test_duration_range_filters_and_an_empty_folder_is_refused(tmp_path):
    """The utterances outside the range were left out in silence: a run trained on fewer than it was given."""
    from conftest import logged_warnings

    write_dataset(tmp_path, {"a": [FRAME_RATE // 2, 2 * FRAME_RATE, 5 * FRAME_RATE]})
    with logged_warnings() as logged:
        kept = VallEDataset(tmp_path, duration_range=(1.0, 4.0))
    assert [record["frames"] for record in kept.records] == [2 * FRAME_RATE]
    assert "2 of the 3 utterance(s)" in logged.out and "left out (the first: 'a/u0')" in logged.out
    with logged_warnings() as logged:
        VallEDataset(tmp_path, duration_range=(0.0, 5.0))
    assert "left out" not in logged.out
    bounds = VallEDataset(tmp_path, duration_range=(2.0, 5.0))  # both ends of the range are in it
    assert [record["frames"] for record in bounds.records] == [2 * FRAME_RATE, 5 * FRAME_RATE]
    with pytest.raises(ValueError, match="3 of the 3 utterance.* none is left to train; widen the duration range"):
        VallEDataset(tmp_path, duration_range=(10.0, 20.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable utterances"):
        VallEDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing is not a folder"):
        VallEDataset(tmp_path / "missing")
    (tmp_path / "empty" / MANIFEST).mkdir()  # it read as no utterances, the folder not named
    with pytest.raises(ValueError, match=f"empty.{MANIFEST} is a folder, not JSONL records: move it away"):
        VallEDataset(tmp_path / "empty")


def rewrite_record(root: Path, utterance: str, **changes) -> None:
    """Change (or, with None, drop) fields of one manifest record, in place."""
    lines = [json.loads(line) for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines()]
    for record in lines:
        if record["id"] == utterance:
            record.update(changes)
            for key in [key for key, value in changes.items() if value is None]:
                del record[key]
    (root / MANIFEST).write_text("".join(json.dumps(record) + "\n" for record in lines), encoding="utf-8")


# Each damage changes one record (or its file) and returns what the refusal must say about it.


def no_frames(root: Path, record: dict) -> str:
    rewrite_record(root, record["id"], frames=None)
    return "no 'frames'"


def frames_as_text(root: Path, record: dict) -> str:
    rewrite_record(root, record["id"], frames=str(record["frames"]))
    return f"'frames' \"{record['frames']}\""


def other_frames(root: Path, record: dict) -> str:
    rewrite_record(root, record["id"], frames=record["frames"] + 1)
    return f"where its record needs text_ids [n] and codes [{record['frames'] + 1}, levels]"


def cut_short(root: Path, record: dict) -> str:
    path = root / record["file"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy that stopped half-way
    return "is damaged (Error while deserializing header"


def no_codes(root: Path, record: dict) -> str:
    from safetensors.torch import save_file

    save_file({"text_ids": torch.tensor([1, 2], dtype=torch.int16)}, str(root / record["file"]))
    return f"holds {{'text_ids': [2]}} where its record needs text_ids [n] and codes [{record['frames']}, levels]"


def zero_frames(root: Path, record: dict) -> str:
    rewrite_record(root, record["id"], frames=0)
    return "'frames' 0, where a record has its number of codec frames"


def text_as_a_matrix(root: Path, record: dict) -> str:
    from safetensors.torch import load_file, save_file

    path = root / record["file"]
    tensors = load_file(str(path))
    save_file({**tensors, "text_ids": tensors["text_ids"][None].clone()}, str(path))
    return f"where its record needs text_ids [n] and codes [{record['frames']}, levels]"


def float_codes(root: Path, record: dict) -> str:
    from safetensors.torch import load_file, save_file

    path = root / record["file"]
    tensors = load_file(str(path))
    save_file({**tensors, "codes": tensors["codes"].float() + 0.5}, str(path))  # written by other means
    return "holds {'codes': 'F32'} where ids and codes are integers"


DAMAGES = {damage.__name__: damage for damage in (no_frames, frames_as_text, other_frames, cut_short, no_codes,
                                                  zero_frames, text_as_a_matrix, float_codes)}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_record_training_cannot_read_is_refused_by_its_line_when_the_dataset_is_built(tmp_path, damage):
    """A record without frames raised KeyError, and a file cut short SafetensorError in the middle of training."""
    from valle_hf.errors import VallEValueError

    records = write_dataset(tmp_path, {"a": [20, 21], "b": [22]})
    index = 1
    victim, line = list(records.values())[index], index + 1  # written in order, one line each
    found = DAMAGES[damage](tmp_path, victim)
    expected = (f"{tmp_path / MANIFEST} line {line} ({victim['id']}): ", found,
                f"; delete {tmp_path / victim['file']} and run scripts/prepare_dataset.py into {tmp_path} again")
    with pytest.raises(VallEValueError) as refused:
        VallEDataset(tmp_path)
    message = str(refused.value)
    assert message.startswith(expected[0]) and expected[1] in message and expected[2] in message, message


@pytest.mark.parametrize(("key", "value"), [("id", 7), ("file", 5), ("speaker", ["a"])])
def test_a_record_whose_id_file_or_speaker_is_no_text_is_refused_by_its_line(tmp_path, key, value):
    """A manifest edited by hand: a number as the file was a TypeError from `Path / int`, a number as the id one from
    sorting the records, a list as the speaker 'unhashable type: list'."""
    from valle_hf.errors import VallEValueError

    records = write_dataset(tmp_path, {"a": [20, 21], "b": [22]})
    index = 1
    rewrite_record(tmp_path, list(records.values())[index]["id"], **{key: value})
    with pytest.raises(VallEValueError, match=re.escape(f"{tmp_path / MANIFEST} line {index + 1}: '{key}' is "
                                                        f"{json.dumps(value)}, not text")):
        VallEDataset(tmp_path)


@pytest.mark.parametrize("record", [{}, {"file": "utterances/a.safetensors", "frames": 2}])
def test_a_record_without_an_id_is_refused_by_its_line(tmp_path, record):
    """A record edited by hand without its id was left out of training (and of the script's resume) without a word."""
    from valle_hf.errors import VallEValueError

    write_dataset(tmp_path, {"a": [20, 21]})
    with open(tmp_path / MANIFEST, "a", encoding="utf-8") as manifest:
        manifest.write(json.dumps(record) + "\n")
    lines = len((tmp_path / MANIFEST).read_text(encoding="utf-8").splitlines())
    with pytest.raises(VallEValueError, match=re.escape(f"{tmp_path / MANIFEST} line {lines}: no 'id'")):
        VallEDataset(tmp_path)


def test_the_rvq_levels_of_a_folder_are_those_every_utterance_holds(tmp_path):
    """Training can reach only the levels every utterance has: one utterance of fewer levels sets them."""
    from safetensors.torch import load_file, save_file

    records = write_dataset(tmp_path, {"a": [20, 21], "b": [22]})
    assert VallEDataset(tmp_path).rvq_levels == LEVELS
    path = tmp_path / records["b/u0"]["file"]
    tensors = load_file(str(path))
    save_file({**tensors, "codes": tensors["codes"][:, :3].clone()}, str(path))
    assert VallEDataset(tmp_path).rvq_levels == 3


def test_each_dataloader_worker_draws_prompts_from_a_stream_of_its_own(tmp_path):
    """Without an epoch, prompts come from one seeded stream per worker: workers seeded alike drew the same lengths
    for their first items."""
    write_dataset(tmp_path, {"a": [80, 90, 100, 95, 85, 88]})
    dataset = VallEDataset(tmp_path, prompt_duration=(0.2, 0.6), seed=4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    lengths = [len(item["prompt_codes"]) for item in loader]  # workers take items in turn: 0, 2, 4 and 1, 3, 5
    assert lengths[0::2] != lengths[1::2]


def test_an_utterance_file_that_cannot_be_read_is_named(tmp_path):
    from valle_hf.errors import VallEValueError

    record = next(iter(write_dataset(tmp_path, {"a": [20]}).values()))
    cut_short(tmp_path, record)
    with pytest.raises(VallEValueError, match=re.escape(f"utterance file {tmp_path / record['file']} cannot be read")):
        load_utterance(tmp_path, record)


# ---------------------------------------------------------------------------------------------------- prompts


def test_a_short_utterance_is_joined_with_others_of_its_speaker_and_cut_to_the_drawn_length(tmp_path):
    """The original's sample_prompts: utterances of the same speaker other than the target, each cut to the drawn
    length, joined until they reach it, then cut to it."""
    seconds = 1.0
    length = int(seconds * FRAME_RATE)
    short = [length // 3 + 1, length // 4 + 2, length // 3 + 3, length // 5 + 1]  # each shorter than the prompt
    records = write_dataset(tmp_path, {"short": short, "other": [3 * length, 4 * length]})
    dataset = VallEDataset(tmp_path, prompt_duration=(seconds, seconds), prompt_max_samples=8)
    tags = {record["tag"]: record for record in records.values()}
    joined = 0
    for index, record in enumerate(dataset.records):
        for draw in range(5):
            prompt = dataset.sample_prompt(index, random.Random(draw))
            assert len(prompt) == length  # exactly the drawn length
            found = pieces(prompt)
            for tag, frames in found:
                source = tags[tag]
                assert source["speaker"] == record["speaker"] and source["id"] != record["id"]
                assert frames <= source["frames"]
            assert all(frames == tags[tag]["frames"] for tag, frames in found[:-1])  # whole until the last
            joined += len(found) > 1
            if record["speaker"] == "other":
                assert len(found) == 1  # one long utterance is enough: cut, not joined
    assert joined >= 5 * len(short)  # every prompt of the short speaker is joined


def test_prompt_samples_cap_the_pieces_and_a_lone_utterance_prompts_itself(tmp_path):
    frames = 30
    records = write_dataset(tmp_path, {"duo": [frames, frames + 1], "solo": [frames + 2]})
    capped = VallEDataset(tmp_path, prompt_duration=(2.0, 2.0), prompt_max_samples=2)
    solo = next(index for index, record in enumerate(capped.records) if record["speaker"] == "solo")
    for index in range(len(capped)):
        found = pieces(capped.sample_prompt(index, random.Random(index)))
        assert len(found) == 2 and sum(length for _, length in found) < int(2.0 * FRAME_RATE)  # ran out of samples
        if index == solo:  # the speaker's only utterance: the target itself
            assert {tag for tag, _ in found} == {records["solo/u0"]["tag"]}
    unsampled = VallEDataset(tmp_path, prompt_duration=(2.0, 2.0), prompt_max_samples=0)  # still one utterance
    for index in range(len(unsampled)):
        assert len(pieces(unsampled.sample_prompt(index, random.Random(index)))) == 1
    whole = VallEDataset(tmp_path, prompt_duration=None)  # no length drawn: one whole other utterance
    for index, record in enumerate(whole.records):
        ((tag, length),) = pieces(whole.sample_prompt(index, random.Random(0)))
        source = next(other for other in records.values() if other["tag"] == tag)
        assert length == source["frames"] and (source["id"] != record["id"] or record["speaker"] == "solo")


@pytest.mark.parametrize("prompt_duration", [(0.0, 0.0), (0.0, 0.5 / FRAME_RATE), (2.0, 1.0), (-1.0, 1.0),
                                             (1.0, math.inf), (math.nan, 1.0)])
def test_a_prompt_duration_that_gives_no_prompt_is_refused(tmp_path, prompt_duration):
    """(0, 0) passed, then every TTS item failed at the first training step with an empty prompt."""
    from valle_hf.errors import VallEValueError

    write_dataset(tmp_path, {"a": [20, 21]})
    with pytest.raises(VallEValueError, match=r"prompt_duration .*: expected MIN MAX seconds, 0 <= MIN <= MAX, MAX at "
                                              r"least one codec frame"):
        VallEDataset(tmp_path, prompt_duration=prompt_duration)
    assert len(VallEDataset(tmp_path, prompt_duration=prompt_duration, task="stt")) == 2  # STT reads no prompt


def test_a_prompt_drawn_shorter_than_a_frame_is_one_frame_not_empty(tmp_path):
    write_dataset(tmp_path, {"a": [20, 21, 22]})
    dataset = VallEDataset(tmp_path, prompt_duration=(0.0, 1 / FRAME_RATE))  # nearly every draw is under a frame
    assert [len(dataset[index]["prompt_codes"]) for index in range(len(dataset))] == [1] * len(dataset)


# ---------------------------------------------------------------------------------------------------- the script


def write_wav(path: Path, seconds: float, frequency: float) -> None:
    samples = np.arange(int(24000 * seconds)) / 24000
    pcm = (0.3 * np.sin(2 * np.pi * frequency * samples) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(24000)
        handle.writeframes(pcm.tobytes())


def test_prepare_dataset_script(tmp_path, tokenizer_file, capsys):
    """Folder of WAVs + transcripts, one unreadable WAV and one without transcript: reported, skipped (exit
    status 3), resumable."""
    prepare = load_script(REPO / "scripts" / "prepare_dataset.py")
    audio = tmp_path / "audio"
    for speaker, text in (("anna", "həlˈoʊ wˈɜːld."), ("ben", "Good morning.")):  # IPA passes, English is phonemised
        (audio / speaker).mkdir(parents=True)
        for index in range(2):
            write_wav(audio / speaker / f"u{index}.wav", 0.4 + 0.1 * index, 200 + 50 * index)
            (audio / speaker / f"u{index}.txt").write_text(text)
    (audio / "ben" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    (audio / "ben" / "broken.txt").write_text("bɹˈoʊkən")
    write_wav(audio / "ben" / "untranscribed.wav", 0.3, 300)
    output = tmp_path / "prepared"
    argv = [str(audio), str(output), "--tokenizer", str(tokenizer_file), "--codec", "tiny-random", "--no-progress"]
    assert prepare.main(argv) == prepare.SOME_ROWS_FAILED
    report = capsys.readouterr().out
    assert "prepared 4 new utterance(s)" in report and "could not use 2 file(s)" in report
    assert "broken.wav" in report and "untranscribed.wav" in report
    failed = [json.loads(line) for line in (output / "failed.jsonl").read_text().splitlines()]
    assert {Path(entry["audio"]).name for entry in failed} == {"broken.wav", "untranscribed.wav"}
    records = read_manifest(output)
    assert {record["id"] for record in records} == {"anna/u0", "anna/u1", "ben/u0", "ben/u1"}
    assert {record["speaker"] for record in records} == {"anna", "ben"}
    first = next(record for record in records if record["id"] == "anna/u0")
    assert first["frames"] == math.ceil(0.4 * 24000 / 320)
    assert next(record for record in records if record["id"] == "ben/u1")["phonemes"] == "ɡˈʊd mˈɔːɹnɪŋ."

    (audio / "anna" / "u2.wav").write_bytes((audio / "anna" / "u0.wav").read_bytes())  # resume: only the new file
    (audio / "anna" / "u2.txt").write_text("həlˈoʊ.")
    assert prepare.main(argv) == prepare.SOME_ROWS_FAILED
    assert "prepared 1 new utterance(s), 4 already done" in capsys.readouterr().out

    dataset = VallEDataset(output, prompt_duration=(0.1, 0.2))
    item = dataset[0]
    assert item["audio_codes"].shape[1] == 8 and item["input_ids"][0] == 1 and item["input_ids"][-1] == 2
    assert 1 <= len(item["prompt_codes"]) <= 15
    csv_output = tmp_path / "from_csv"
    (tmp_path / "audio" / "metadata.csv").write_text(
        "file|text|speaker\nanna/u0.wav|həlˈoʊ wˈɜːld.|anna\nben/broken.wav|bɹˈoʊkən|ben\n")
    assert prepare.main([str(audio), str(csv_output), "--metadata", str(audio / "metadata.csv"), "--tokenizer",
                         str(tokenizer_file), "--codec", "tiny-random", "--no-progress"]) == prepare.SOME_ROWS_FAILED
    assert [record["id"] for record in read_manifest(csv_output)] == ["anna/u0"]
    assert "could not use 1 file(s)" in capsys.readouterr().out


def test_a_folder_prepared_with_another_codec_is_refused_for_a_model(tmp_path):
    """Its codes would stand for other sounds: fine-tuning trained on them without a word."""
    from valle_hf.codec import codebook_fingerprint, tiny_random_codec
    from valle_hf.dataset import PREPARE_CONFIG, check_codec
    from valle_hf.errors import VallEValueError

    codec, other = tiny_random_codec(seed=0), tiny_random_codec(seed=7)
    check_codec(tmp_path, codec, "model")  # a folder that records no codec: taken as it is
    (tmp_path / PREPARE_CONFIG).write_text(json.dumps({"codec": "tiny-random"}))
    check_codec(tmp_path, codec, "model")  # nor one prepared before its codebooks were recorded
    (tmp_path / PREPARE_CONFIG).write_text(json.dumps({"codec_codebooks_sha256": codebook_fingerprint(codec)}))
    check_codec(tmp_path, tiny_random_codec(seed=0), "model")  # the same codec, made again
    with pytest.raises(VallEValueError, match="prepared with another codec than model's: its codes would stand for "
                                              "other sounds; prepare it again with --tokenizer model"):
        check_codec(tmp_path, other, "model")


def test_a_folder_prepared_with_another_tokenizer_is_refused_for_a_model(tmp_path, tokenizer_file):
    from valle_hf.dataset import PREPARE_CONFIG, check_tokenizer
    from valle_hf.errors import VallEValueError
    from valle_hf.tokenization import load_phoneme_tokenizer, tokenizer_fingerprint

    tokenizer = load_phoneme_tokenizer(tokenizer_file)
    check_tokenizer(tmp_path, tokenizer, "model")  # a folder that records no tokenizer: taken as it is
    (tmp_path / PREPARE_CONFIG).write_text(json.dumps({"language": "en"}))
    check_tokenizer(tmp_path, tokenizer, "model")  # nor one whose settings do not name it
    (tmp_path / PREPARE_CONFIG).write_text(json.dumps({"tokenizer_sha256": tokenizer_fingerprint(tokenizer)}))
    check_tokenizer(tmp_path, tokenizer, "model")
    other = load_phoneme_tokenizer(tokenizer_file)
    other.add_tokens(["ʘ"])  # one symbol more: another vocabulary
    with pytest.raises(VallEValueError, match="prepared with another phoneme tokenizer than model's"):
        check_tokenizer(tmp_path, other, "model")


def test_the_utterances_are_read_once_per_config_they_are_checked_against(tmp_path, monkeypatch):
    """examples/finetune.py checks them, then the Trainer's callback does (`check_model`): every file was read twice
    before the first step. A config that differs reads them again, and so does a check that refused."""
    from valle_hf import dataset as dataset_module
    from valle_hf.configuration import VallEConfig
    from valle_hf.errors import VallEValueError

    write_dataset(tmp_path, {"anna": [20, 30], "ben": [25]})
    dataset = VallEDataset(tmp_path, prompt_duration=(0.1, 0.2))
    opened, real_open = [], dataset_module.safe_open
    monkeypatch.setattr(dataset_module, "safe_open", lambda *args, **kwargs: opened.append(1) or real_open(*args,
                                                                                                           **kwargs))
    config = VallEConfig()
    dataset.check_utterances(config)
    dataset.check_utterances(VallEConfig())  # the same settings, made again
    assert len(opened) == len(dataset)
    small = VallEConfig(text_vocab_size=5)
    for _ in range(2):  # refused each time: a refusal is not remembered as a pass
        with pytest.raises(VallEValueError, match="input_ids must lie in 0..4"):
            dataset.check_utterances(small)
    assert len(opened) == len(dataset) + 2
    dataset.check_utterances(config)  # the last config checked is the one remembered
    assert len(opened) == len(dataset) + 2


@pytest.mark.parametrize("arguments, message", [
    (dict(prompt_max_samples=2.5), "prompt_max_samples must be an integer >= 0 .*got 2.5"),
    (dict(prompt_max_samples=None), "prompt_max_samples must be an integer >= 0 .*got None"),
    (dict(prompt_max_samples="3"), "prompt_max_samples must be an integer >= 0 .*got '3'"),
    (dict(prompt_max_samples=True), "prompt_max_samples must be an integer >= 0 .*got True"),
    (dict(prompt_max_samples=-1), "prompt_max_samples must be an integer >= 0 .*got -1"),
    (dict(duration_range=5), r"duration_range must be \(MIN, MAX\): two numbers of seconds, got 5"),
    (dict(duration_range=(1, "12")), r"duration_range must be \(MIN, MAX\): two numbers of seconds"),
    (dict(duration_range=(1, 5, 12)), r"duration_range must be \(MIN, MAX\)"),
    (dict(duration_range=(12, 1)), "duration_range 12 1: expected MIN MAX seconds, 0 <= MIN <= MAX"),
    (dict(duration_range=(math.nan, 12)), "duration_range nan 12: expected MIN MAX seconds"),
    (dict(duration_range=(0, 10**400)), "duration_range 0 1e[+]400: expected MIN MAX seconds"),  # an OverflowError
    (dict(duration_range="1 12"), r"duration_range must be \(MIN, MAX\): two numbers of seconds, got '1 12'"),
    (dict(prompt_duration=5), r"prompt_duration must be \(MIN, MAX\): two numbers of seconds, got 5"),
    (dict(prompt_duration=(True, 2)), r"prompt_duration must be \(MIN, MAX\)"),
    (dict(task="TTS"), r"task must be None \(the collator draws it\) or one of \('tts', 'stt'\), got 'TTS'"),
])
def test_the_data_sets_settings_are_refused_when_it_is_made(tmp_path, arguments, message):
    """prompt_max_samples=2.5 failed at the first item, in the middle of training, with a bare TypeError; a number
    alone as a range with "cannot unpack non-iterable int object"; (12, 1) said to widen the range; NaN passed; an
    unknown task waited for the collator's first batch."""
    from valle_hf.errors import VallEValueError

    write_dataset(tmp_path, {"a": [20 * FRAME_RATE // 10, 30 * FRAME_RATE // 10]})
    with pytest.raises(VallEValueError, match=message):
        VallEDataset(tmp_path, **arguments)
    accepted = VallEDataset(tmp_path, prompt_max_samples=np.int64(2), duration_range=[0, 12], prompt_duration=[1, 2])
    assert len(accepted) == 2 and accepted[0]["prompt_codes"].shape[0] > 0
    for pair in (np.array([0.0, 12.0]), collections.UserList([0, 12]), (np.int64(0), np.float32(12))):  # any pair
        assert len(VallEDataset(tmp_path, duration_range=pair, prompt_duration=pair)) == 2


def test_an_utterance_the_file_system_refuses_is_one_output_error(tmp_path):
    """safetensors raises its own error for a write the file system refuses (not an OSError): a traceback where a
    full disk or a file-size limit should end the run in one line."""
    import resource

    from valle_hf.errors import OutputError

    text, codes = torch.tensor([1, 40, 2]), utterance_codes(0, 200, torch.Generator().manual_seed(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # Python ignores SIGXFSZ: the write fails with EFBIG
    try:
        with pytest.raises(OutputError, match=r"^could not write .*one\.safetensors \(File too large"):
            save_utterance(tmp_path, "one", text, codes)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not list((tmp_path / "utterances").iterdir())  # no partial file

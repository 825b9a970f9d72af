"""Turn audio + transcripts into a VALL-E training set: phoneme ids and EnCodec codes, computed once and cached.

    python scripts/prepare_dataset.py DATA_DIR OUTPUT_DIR --tokenizer tokenizer.json [--codec facebook/encodec_24khz]
    python scripts/prepare_dataset.py DATA_DIR OUTPUT_DIR --tokenizer MODEL_DIR --metadata DATA_DIR/metadata.csv

Inputs, either:

* a folder of audio files (wav, flac, ogg, mp3, ...), each with its transcript beside it in a text file of the
  same name (``a.wav`` + ``a.txt``, or ``a.normalized.txt`` / ``a.lab``); the speaker is the first sub-folder
  below DATA_DIR (LibriTTS-style ``speaker/chapter/file.wav``), or "default" for files directly in it; or
* a metadata CSV (``--metadata``): with a header naming an audio column (audio, file, path, filename, audio_file,
  wav) and a text column (text, transcript, transcription, sentence, normalized_text), optionally speaker
  (speaker, speaker_id, speaker_name); or without a header in the LJSpeech layout ``id|text[|normalized text]``
  with audio at ``wavs/<id>.wav`` (the last column is used). Delimiters ``|``, tab and ``,`` are recognised; audio
  paths are relative to DATA_DIR.

Transcripts are phonemised with espeak-ng in ``--language`` (text that is already IPA passes through) and tokenised
with the model's ``tokenizer.json``; audio is loaded at 24 kHz mono and encoded at 6 kbps (8 levels). See
`valle_hf.dataset` for the output layout; `valle_hf.dataset.VallEDataset` reads it.

The run is resumable: utterances already in OUTPUT_DIR's manifest are skipped, so an interrupted run (or one that
failed on some files) can simply be started again. A file that cannot be used (unreadable audio, missing or empty
transcript, ...) is reported and skipped; the run goes on. The failures are listed at the end and in
OUTPUT_DIR/failed.jsonl. Exit status: 0 if the output has at least one utterance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from valle_hf.dataset import MANIFEST, append_manifest, read_manifest, save_utterance

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif"}
TRANSCRIPT_SUFFIXES = (".txt", ".normalized.txt", ".lab", ".original.txt")
AUDIO_COLUMNS = ("audio", "file", "path", "filename", "file_name", "audio_file", "audio_path", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text", "normalized")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "speaker_name")
CONFIG_FILE = "prepare_config.json"
FAILED_FILE = "failed.jsonl"


def safe_id(name: str) -> str:
    """An utterance id usable as a relative path inside the output folder (no '..', no absolute paths)."""
    parts = [part for part in Path(name).as_posix().split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "utterance"


@dataclass
class Entry:
    """One utterance to prepare: its id (relative path without suffix), audio file, transcript or an error."""

    id: str
    audio: Path
    speaker: str
    text: str | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------------- discovery


def _transcript_for(audio: Path) -> Path | None:
    for suffix in TRANSCRIPT_SUFFIXES:
        candidate = audio.with_name(audio.name[: -len(audio.suffix)] + suffix)
        if candidate.is_file():
            return candidate
    return None


def entries_from_folder(root: Path) -> list[Entry]:
    entries = []
    for audio in sorted(path for path in root.rglob("*") if path.suffix.lower() in AUDIO_EXTENSIONS):
        relative = audio.relative_to(root)
        speaker = relative.parts[0] if len(relative.parts) > 1 else "default"
        entry = Entry(safe_id(relative.with_suffix("").as_posix()), audio, speaker)
        transcript = _transcript_for(audio)
        if transcript is None:
            entry.error = f"no transcript ({' / '.join('<name>' + s for s in TRANSCRIPT_SUFFIXES)}) next to it"
        else:
            try:
                entry.text = transcript.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                entry.error = f"transcript {transcript.name} unreadable: {error}"
        entries.append(entry)
    return entries


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {column.strip().lower(): column for column in header}
    return next((lowered[name] for name in names if name in lowered), None)


def entries_from_csv(root: Path, metadata: Path) -> list[Entry]:
    content = metadata.read_text(encoding="utf-8-sig")
    first = content.splitlines()[0] if content.strip() else ""
    delimiter = max(("|", "\t", ","), key=first.count)
    rows = list(csv.reader(io.StringIO(content), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise SystemExit(f"error: {metadata} is empty")
    audio_column = _pick(rows[0], AUDIO_COLUMNS)
    text_column = _pick(rows[0], TEXT_COLUMNS)
    entries = []
    if audio_column is not None and text_column is not None:
        header = rows[0]
        speaker_column = _pick(header, SPEAKER_COLUMNS)
        for number, row in enumerate(rows[1:], start=2):
            values = dict(zip(header, row, strict=False))  # a short row leaves its last columns empty
            path = (values.get(audio_column) or "").strip()
            audio = root / path
            name = Path(path).with_suffix("").as_posix() if path else f"line{number}"
            speaker = (values.get(speaker_column) or "").strip() if speaker_column else ""
            entry = Entry(safe_id(name), audio, speaker or "default")
            entry.text = (values.get(text_column) or "").strip()
            if not path:
                entry.error = f"{metadata.name} line {number}: no audio path"
            entries.append(entry)
        return entries
    # LJSpeech: id|text|normalized text, audio in wavs/<id>.wav
    for row in rows:
        utterance = row[0].strip()
        candidates = (root / "wavs" / f"{utterance}.wav", root / f"{utterance}.wav", root / utterance)
        audio = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
        entry = Entry(safe_id(utterance), audio, "default", text=row[-1].strip() if len(row) > 1 else "")
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------- processing


def load_tokenizer(path: Path):
    from valle_hf.tokenization import load_phoneme_tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    return load_phoneme_tokenizer(file)


def load_codec_model(name: str, device: str):
    from valle_hf.codec import load_codec, tiny_random_codec

    codec = tiny_random_codec() if name == "tiny-random" else load_codec(name)
    return codec.to(device).eval()


def prepare_one(
    entry: Entry, tokenizer, codec, language: str, bandwidth: float
) -> tuple[dict, torch.LongTensor, torch.LongTensor]:
    """Phoneme ids and codes of one utterance; raises with a readable message if it cannot be used."""
    from valle_hf.audio import load_audio
    from valle_hf.codec import encode
    from valle_hf.feature_extraction import VallEFeatureExtractor
    from valle_hf.phonemes import phonemize

    if entry.error:
        raise ValueError(entry.error)
    if not entry.text:
        raise ValueError("empty transcript")
    waveform = VallEFeatureExtractor().waveform(*load_audio(entry.audio), what=str(entry.audio))
    phonemes = phonemize(entry.text, language)
    text_ids = torch.tensor(tokenizer(phonemes)["input_ids"], dtype=torch.long)
    codes = encode(codec, waveform, bandwidth).cpu()
    if len(codes) == 0:
        raise ValueError("audio too short for one codec frame")
    record = {
        "id": entry.id,
        "speaker": entry.speaker,
        "audio": str(entry.audio),
        "text": entry.text,
        "phonemes": phonemes,
        "language": language,
        "frames": len(codes),
        "duration": round(waveform.numel() / 24000, 4),
    }
    return record, text_ids, codes


def check_config(output: Path, settings: dict) -> None:
    """An output folder holds one codec's codes and one tokenizer's ids: refuse to mix them on resume."""
    path = output / CONFIG_FILE
    if path.is_file():
        existing = json.loads(path.read_text())
        keys = ("codec", "bandwidth", "tokenizer_vocab_size")
        clashes = [key for key in keys if existing.get(key) != settings.get(key)]
        if clashes and read_manifest(output):
            raise SystemExit(
                f"error: {output} was prepared with {', '.join(f'{k}={existing.get(k)!r}' for k in clashes)}; "
                f"this run has {', '.join(f'{k}={settings.get(k)!r}' for k in clashes)}. Use a new output folder."
            )
    path.write_text(json.dumps(settings, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder with the audio (and transcripts)")
    parser.add_argument("output_dir", type=Path, help="where the prepared set goes (created; resumed if present)")
    parser.add_argument("--metadata", type=Path, help="metadata CSV instead of transcript files (see above)")
    parser.add_argument("--tokenizer", type=Path, required=True,
                        help="the model's tokenizer.json, or a converted model folder that has one")
    parser.add_argument("--codec", default="facebook/encodec_24khz",
                        help="EnCodec 24 kHz model id or folder ('tiny-random': a random test codec)")
    parser.add_argument("--language", default="en", help="espeak-ng language of the transcripts (default en)")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="codec bandwidth in kbps (6.0 = 8 levels)")
    parser.add_argument("--device", default="cpu", help="device for the codec (cpu, cuda, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if not args.data_dir.is_dir():
        parser.error(f"{args.data_dir} is not a folder")
    if args.metadata is not None and not args.metadata.is_file():
        parser.error(f"metadata file {args.metadata} not found")
    entries = entries_from_csv(args.data_dir, args.metadata) if args.metadata else entries_from_folder(args.data_dir)
    if not entries:
        print(f"no audio files found in {args.data_dir}", file=sys.stderr)
        return 1
    duplicates = len(entries) - len({entry.id for entry in entries})
    if duplicates:
        seen = set()
        for entry in entries:
            if entry.id in seen:
                entry.error = f"duplicate utterance id {entry.id!r} (same name with another extension?)"
            seen.add(entry.id)

    tokenizer = load_tokenizer(args.tokenizer)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    check_config(args.output_dir, {"codec": args.codec, "bandwidth": args.bandwidth, "language": args.language,
                                   "tokenizer_vocab_size": len(tokenizer)})
    done = {record["id"] for record in read_manifest(args.output_dir)}
    pending = [entry for entry in entries if entry.id not in done]
    failures = []
    codec = load_codec_model(args.codec, args.device) if pending else None
    progress = tqdm(pending, desc="preparing", unit="file", disable=args.no_progress or None)
    for entry in progress:
        try:
            record, text_ids, codes = prepare_one(entry, tokenizer, codec, args.language, args.bandwidth)
            record["file"] = save_utterance(args.output_dir, entry.id, text_ids, codes)
            append_manifest(args.output_dir, record)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - any bad input is reported and skipped, never fatal
            message = " ".join(str(error).split()) or type(error).__name__
            failures.append({"id": entry.id, "audio": str(entry.audio), "error": message})
            progress.write(f"skipped {entry.audio}: {message}")
    with open(args.output_dir / FAILED_FILE, "w", encoding="utf-8") as handle:
        for failure in failures:
            handle.write(json.dumps(failure, ensure_ascii=False) + "\n")

    total = len(read_manifest(args.output_dir))
    print(f"prepared {len(pending) - len(failures)} new utterance(s), {len(entries) - len(pending)} already done; "
          f"{total} in {args.output_dir / MANIFEST}")
    if failures:
        print(f"could not use {len(failures)} file(s) (listed in {args.output_dir / FAILED_FILE}):")
        for failure in failures:
            print(f"  {failure['audio']}: {failure['error']}")
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main())

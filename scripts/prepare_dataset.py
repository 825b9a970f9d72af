"""Turn audio + transcripts into a VALL-E training set: phoneme ids and EnCodec codes, computed once and cached.

    python scripts/prepare_dataset.py DATA_DIR OUTPUT_DIR --tokenizer MODEL_DIR --metadata DATA_DIR/metadata.csv
    python scripts/prepare_dataset.py DATA_DIR OUTPUT_DIR --tokenizer tokenizer.json [--codec facebook/encodec_24khz]

Inputs, either:

* a folder of audio files (wav, flac, ogg, mp3, ...), each with its transcript beside it in a text file of the
  same name (``a.wav`` + ``a.txt``, or ``a.normalized.txt`` / ``a.lab``); the speaker is the first sub-folder
  below DATA_DIR (LibriTTS-style ``speaker/chapter/file.wav``), or "default" for files directly in it; or
* a metadata file (``--metadata``), read by `valle_hf.manifest.read_table` in one of four explicit layouts
  (``--metadata-format``; "auto" picks ``jsonl`` for a .jsonl file, ``tsv`` for a .tsv file, ``ljspeech`` when the
  first line has a ``|``, ``csv`` otherwise):

  - ``ljspeech``: ``|``-separated, no quoting (quotes are part of the text). LJSpeech's ``id|text|normalized text``
    without a header, audio at ``wavs/<id>.wav`` (the last column is used); or a header naming the columns.
  - ``tsv``: tab-separated with a header, no quoting: Common Voice's ``path``, ``sentence`` and ``client_id`` (the
    speaker), audio at ``<path>`` or ``clips/<path>``.
  - ``csv``: comma-separated with a header and CSV quoting.
  - ``jsonl``: one JSON object per line, its keys naming the columns.

  A header names an audio column (audio, file, path, filename, audio_file, wav), a text column (text, transcript,
  transcription, sentence, normalized_text), optionally a speaker (speaker, speaker_id, speaker_name, client_id)
  and a language (language, lang, locale: an espeak-ng code or "auto", as ``--language``, which rows without one
  get; a row in a language espeak-ng does not know is reported). Audio paths are relative to DATA_DIR. Every line is
  either prepared or reported: a line with another number of columns than the header, (CSV) an unbalanced quote that
  would join the lines after it into one record, or (JSONL) a line that is not a JSON object or a value that is not
  text (a list), is reported with its line numbers.

Transcripts are phonemised with espeak-ng in their row's language or ``--language`` (checked once, up front; text
that is already IPA passes through) and tokenised with the model's ``tokenizer.json``; audio is loaded at 24 kHz mono
and encoded at 6 kbps (8 levels) by the codec of the model folder given as ``--tokenizer`` (the codes its model
reads), or by ``--codec``. See `valle_hf.dataset` for the output layout; `valle_hf.dataset.VallEDataset` reads it.

OUTPUT_DIR is a folder of its own: DATA_DIR itself is refused, and so is a --metadata file the run would overwrite.
The run is resumable: utterances already in OUTPUT_DIR's manifest are skipped (unless their transcript, speaker or
language was edited since: those are prepared again), so an interrupted run (even one killed in the middle of a
write) can simply be started again, with the same settings: a resume with another codec, bandwidth, tokenizer,
language or language-switch choice is refused. A file that cannot be used (unreadable or silent audio, missing or
empty transcript, phonemes the tokenizer has no id for, ...) is reported and skipped; the run goes on. The failures
are listed at the end and in OUTPUT_DIR/failed.jsonl. Exit status: 0 when every file was prepared (now or before); 3
when some could not be used (the others are prepared; a script that goes on to train sees that the data is short); 1
with one ``error:`` line for a bad argument (nothing is written then), or when none could be used (OUTPUT_DIR then
holds failed.jsonl alone, which the line names: it says why each failed); 130 after Ctrl-C (what was prepared is
kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# valle_hf first: while it loads torch and transformers, Ctrl-C ends the command in one line
import valle_hf  # noqa: F401

# isort: split
import torch
from tqdm.auto import tqdm

from valle_hf.cli import usable_device
from valle_hf.codec import codebook_fingerprint
from valle_hf.configuration import DEFAULT_CODEC
from valle_hf.conversion import is_converted_model
from valle_hf.dataset import (
    MANIFEST,
    PREPARE_CONFIG,
    append_manifest,
    drop_from_manifest,
    read_manifest,
    repair_manifest,
    save_utterance,
)
from valle_hf.errors import (
    SOME_ROWS_FAILED,
    ArgumentParser,
    CheckpointError,
    MissingDependencyError,
    ModelNotFoundError,
    OutputError,
    UsageError,
    VallEError,
    VallEValueError,
    entry_point,
    named,
    named_path,
    one_line,
)
from valle_hf.files import check_output_folder, system_reason, written_whole
from valle_hf.manifest import LAYOUTS, Row, read_table, write_jsonl
from valle_hf.phonemes import language_code
from valle_hf.tokenization import load_phoneme_tokenizer, tokenizer_fingerprint

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif"}
TRANSCRIPT_SUFFIXES = (".txt", ".normalized.txt", ".lab", ".original.txt")
AUDIO_COLUMNS = ("audio", "file", "path", "filename", "file_name", "audio_file", "audio_path", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text", "normalized")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "speaker_name", "client_id")
LANGUAGE_COLUMNS = ("language", "lang", "locale")
METADATA_FORMATS = LAYOUTS
FAILED_FILE = "failed.jsonl"


def safe_id(name: str) -> str:
    """An utterance id usable as a relative path inside the output folder (no '..', no absolute paths)."""
    parts = [part for part in Path(name).as_posix().split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "utterance"


@dataclass
class Entry:
    """One utterance to prepare: its id (relative path without suffix), audio file, transcript or an error, (with
    --metadata) the metadata file's line(s) it comes from and its row's language (None: --language's), and the id of
    another entry of the same recording (`find_entries`: refused, and its record of an earlier run dropped)."""

    id: str
    audio: Path
    speaker: str
    text: str | None = None
    error: str | None = None
    line: str | None = None
    language: str | None = None
    recording_of: str | None = None


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
            try:  # utf-8-sig: a byte-order mark (Windows' Notepad writes one) is not part of the text
                entry.text = transcript.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError as error:
                entry.error = f"transcript {transcript.name} is not UTF-8 text ({error.reason}): save it as UTF-8"
            except OSError as error:
                entry.error = f"transcript {transcript.name} unreadable: {one_line(error)}"
        entries.append(entry)
    return entries


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {column.strip().lower(): column for column in header}
    return next((lowered[name] for name in names if name in lowered), None)


def entries_from_metadata(root: Path, metadata: Path, requested: str = "auto") -> list[Entry]:
    """One entry per record of the metadata file (read by `valle_hf.manifest.read_table`; see the module docstring);
    a record it cannot use becomes an entry with its error, naming its line, so that every line is prepared or
    reported."""
    table = read_table(metadata, requested)
    audio_column, text_column = _pick(table.columns, AUDIO_COLUMNS), _pick(table.columns, TEXT_COLUMNS)
    if audio_column is None or text_column is None:
        if table.layout != "ljspeech":
            raise VallEValueError(
                f"{metadata}: the {table.layout} layout needs a header naming an audio column "
                f"({', '.join(AUDIO_COLUMNS)}) and a text column ({', '.join(TEXT_COLUMNS)}); it has "
                f"{', '.join(table.columns)[:80]!r}"
            )
        return [_ljspeech_entry(root, metadata, record.lines, record.cells) for record in table.records]
    columns = (audio_column, text_column, _pick(table.columns, SPEAKER_COLUMNS), _pick(table.columns, LANGUAGE_COLUMNS))
    return [_header_entry(root, metadata, row, columns) for row in table.rows]


def _header_entry(root: Path, metadata: Path, row: Row, columns: tuple[str | None, ...]) -> Entry:
    """The entry of one row, read in `columns`: audio, text, speaker and language (None: the table has none)."""
    (path, text, speaker, language), refused = _cells(row, columns)
    audio = root / path if path else metadata  # a row that names no audio (or cannot be read) is the metadata's
    if path and not audio.exists() and (root / "clips" / path).exists():  # Common Voice keeps its audio in clips/
        audio = root / "clips" / path
    entry = Entry(safe_id(_without_suffix(path) if path else f"line{row.lines}"), audio,
                  speaker or "default", text=text, line=row.lines, language=language or None)
    if row.error or refused:
        entry.error = f"{metadata.name} {row.error or refused}"
    elif not path:
        entry.error = f"{metadata.name} {row.where}: no audio path"
    return entry


def _without_suffix(path: str) -> str:
    """A metadata row's audio path without its extension (its utterance id); a path with no name ('.', '/') has none
    to remove, and is reported by its row when its audio is read."""
    return (Path(path).with_suffix("") if Path(path).name else Path(path)).as_posix()


def _cells(row: Row, columns: tuple[str | None, ...]) -> tuple[list[str], str | None]:
    """The row's cells in `columns` (None: no such column, "") as stripped text, and an error naming the first that
    holds no text or number: a JSONL list, object or true, whose Python spelling ("['a', 'b']") would otherwise
    become a transcript, a path or a speaker (synthesis refuses them alike)."""
    cells, refused = [], None
    for column in columns:
        value = row.values.get(column) if column else None
        if isinstance(value, (dict, list, bool)):
            refused = refused or f"{row.where}: {column} is the JSON {json.dumps(value)[:60]}, not text"
            value = None
        cells.append("" if value is None else str(value).strip())
    return cells, refused


def _ljspeech_entry(root: Path, metadata: Path, lines: str, cells: list[str]) -> Entry:
    """LJSpeech: id|text|normalized text, audio in wavs/<id>.wav (or <id>.wav, or <id> as a path)."""
    utterance = cells[0].strip()
    candidates = (root / "wavs" / f"{utterance}.wav", root / f"{utterance}.wav", root / utterance)
    audio = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
    # the normalized text where the row has it, else the text ("id|text|": an empty third column)
    text = next((cell.strip() for cell in reversed(cells[1:3]) if cell.strip()), "")
    entry = Entry(safe_id(utterance), audio, "default", text=text, line=lines)
    if len(cells) < 2:
        entry.error = f"{metadata.name} line {lines}: no '|' between the id and the text"
    elif not audio.is_file() and cells[1].strip().lower() in TEXT_COLUMNS:  # "id|text": a header LJSpeech has not
        entry.error = (f"{metadata.name} line {lines}: {'|'.join(cells)!r} looks like a header, which LJSpeech's "
                       f"metadata has none of: remove the line, or name its audio column ({', '.join(AUDIO_COLUMNS)}) "
                       "to read it as a header")
    elif len(cells) > 3:  # a '|' inside the text: which part is the transcript cannot be told
        entry.error = (f"{metadata.name} line {lines}: {len(cells)} '|'-separated columns where LJSpeech has 2 or 3 "
                       "(id|text|normalized text)")
    return entry


# ---------------------------------------------------------------------------------------------------- processing


def codec_name(args) -> str:
    """The codec the run encodes with: --codec, else the codec of the model folder given as --tokenizer (the codes
    its model was converted with), else EnCodec 24 kHz from the Hub."""
    if args.codec is not None:
        return args.codec
    return str(args.tokenizer) if is_converted_model(args.tokenizer) else DEFAULT_CODEC


def load_codec_model(name: str, device: str, progress: bool = True):
    """The EnCodec model `name` names (see `codec_name` and `load_codec_of`), in eval mode on `device`; `progress`:
    transformers' "Loading weights" bar too."""
    from valle_hf.conversion import load_codec_of
    from valle_hf.loading import no_progress_bars

    try:
        with contextlib.nullcontext() if progress else no_progress_bars():
            codec = load_codec_of(name)
    except (CheckpointError, ModelNotFoundError) as error:
        if not is_converted_model(Path(name)):
            raise
        # a model's folder, given as --tokenizer or --codec: named as the codec's source it was taken for
        raise VallEValueError(f"the codec of the model folder {name} cannot be loaded: {one_line(error)}; give "
                              "the codec with --codec DIR, or --codec tiny-random (a test codec)") from None
    return codec.to(device).eval()


def prepare_one(
    entry: Entry, tokenizer, codec, language: str, language_switch: str, bandwidth: float
) -> tuple[dict, torch.LongTensor, torch.LongTensor]:
    """Phoneme ids and codes of one utterance, its text read in its own language or else `language`; raises with a
    readable message if it cannot be used."""
    from valle_hf.audio import load_audio
    from valle_hf.codec import encode
    from valle_hf.feature_extraction import VallEFeatureExtractor
    from valle_hf.phonemes import phonemize, resolve_language
    from valle_hf.tokenization import phoneme_ids

    if entry.error:
        raise VallEValueError(entry.error)
    if not entry.text:
        raise VallEValueError("empty transcript: give the utterance's text")
    # the row's own language, as detected for "auto": what the phonemes are read in
    language = resolve_language(entry.text, entry.language or language)
    extractor = VallEFeatureExtractor()
    samples, rate = load_audio(entry.audio, whole=True)  # a cut-off copy is refused: its transcript says the whole
    waveform = extractor.check_reference(extractor.waveform(samples, rate, what=str(entry.audio)), str(entry.audio),
                                         refuse_silence=True)  # a voice prompt's, refusing silence
    phonemes = phonemize(entry.text, language, language_switch)
    ids, unknown = phoneme_ids(tokenizer, phonemes)
    if unknown:  # all trained as the one <unk> id, which says nothing of how they sound
        raise VallEValueError(f"its phonemes {phonemes!r:.60} hold symbols the phoneme tokenizer has no id for "
                              f"({', '.join(map(repr, unknown))}), which would all be trained as <unk>: text with an "
                              "IPA mark (ˈ, ə, ...) is taken as IPA as it is, so write it in plain letters or in the "
                              "tokenizer's symbols; a language whose sounds it lacks needs another tokenizer")
    text_ids = torch.tensor(ids)
    codes = encode(codec, waveform, bandwidth).cpu()
    record = {
        "id": entry.id,
        "speaker": entry.speaker,
        "audio": str(entry.audio.absolute()),  # wherever the run was started from
        "text": entry.text,
        "phonemes": phonemes,
        "language": language,
        "frames": len(codes),
        "duration": round(waveform.numel() / 24000, 4),
    }
    return record, text_ids, codes


def recorded_codec(codec: str) -> str:
    """A codec folder by its absolute path: the same folder named from another working folder is the same codec, and
    one relative name from two working folders can be two codecs. A Hub id or "tiny-random" as it is."""
    return str(Path(codec).resolve()) if Path(codec).is_dir() else codec


def run_settings(args, tokenizer) -> dict:
    """What makes a prepared folder's ids and codes what they are: a resume must use the same."""
    return {"codec": recorded_codec(args.codec), "bandwidth": args.bandwidth,
            "language": language_code(args.language),  # "EN" is "en": the same setting
            "language_switch": args.language_switch, "tokenizer_sha256": tokenizer_fingerprint(tokenizer)}


def check_resume(output: Path, settings: dict) -> None:
    """An output folder holds one codec's codes and one tokenizer's ids, in one language: refuse to mix them."""
    path = output / PREPARE_CONFIG
    if not path.is_file() or not read_manifest(output):
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise VallEValueError(f"{path} is unreadable ({one_line(error)}): use a new output folder") from None
    if not isinstance(existing, dict):  # edited by hand: no settings to compare
        raise VallEValueError(f"{path} holds no JSON object of settings: use a new output folder")
    if isinstance(existing.get("codec"), str):  # a folder recorded by a relative name, before names were absolute
        existing["codec"] = recorded_codec(existing["codec"])
    clashes = [key for key in settings if existing.get(key) != settings[key]]
    if clashes:
        raise UsageError(
            f"{output} was prepared with {', '.join(f'{k}={existing.get(k)!r}' for k in clashes)}; this run has "
            f"{', '.join(f'{k}={settings[k]!r}' for k in clashes)}: resume with the first run's settings, or use a "
            "new output folder"
        )


def prepared_from(record: dict | None, entry: Entry, language: str) -> bool:
    """Whether the manifest's `record` (None: none) was prepared from `entry` as it reads now, in its own language or
    else `language`: a transcript, speaker or language edited since is prepared again (its new line replaces the
    old one), where a resume would otherwise keep training the old one."""
    from valle_hf.phonemes import resolve_language

    if record is None:
        return False
    requested = entry.language or language
    try:
        resolved = resolve_language(entry.text or "", requested)
    except VallEError:  # prepared again, and reported there
        return False
    # Records written before rows had their own language hold --language as given ("auto" too), not as resolved.
    return ((record.get("text"), record.get("speaker")) == (entry.text, entry.speaker)
            and record.get("language") in (resolved, requested))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="scripts/prepare_dataset.py", description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=named_path, help="folder with the audio (and transcripts)")
    parser.add_argument("output_dir", type=named_path, help="where the prepared set goes (created; resumed if present)")
    parser.add_argument("--metadata", type=named_path,
                        help="metadata file instead of transcript files (see the layouts below)")
    parser.add_argument("--metadata-format", choices=METADATA_FORMATS, default="auto",
                        help="layout of --metadata (see the layouts below) [auto]")
    parser.add_argument("--tokenizer", type=named_path, required=True,
                        help="the model's tokenizer.json, or a converted model folder that has one")
    parser.add_argument("--codec", type=named, default=None,
                        help="EnCodec 24 kHz: a Hub id or folder, a converted VALL-E model folder (its codec), or "
                        f"'tiny-random' (a random test codec) [the codec of the model folder given as --tokenizer, "
                        f"else {DEFAULT_CODEC}]")
    parser.add_argument("--language", type=named, default="en",
                        help="espeak-ng language of the transcripts (default en)")
    parser.add_argument("--language-switch", choices=("keep", "remove"), default="keep",
                        help="espeak's '(en)...(fr)' markers for words in another language: keep, as the released "
                        "model was trained, or remove (mixed-language transcripts) [keep]")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="codec bandwidth in kbps (6.0 = 8 levels)")
    parser.add_argument("--device", type=named, default="cpu", help="device for the codec (cpu, cuda, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_apart(args) -> None:
    """Refuse (`UsageError`) an OUTPUT_DIR that is DATA_DIR (the prepared set would be written among the recordings)
    or a converted model's folder, a folder where the run writes its failures or settings, and a --metadata file the
    run would overwrite (OUTPUT_DIR's manifest, failures or settings)."""
    if os.path.realpath(args.output_dir) == os.path.realpath(args.data_dir):
        raise UsageError(f"OUTPUT_DIR {args.output_dir} is DATA_DIR: the prepared set would be written among the "
                         f"recordings; give a folder of its own (such as {args.output_dir / 'prepared'})")
    if is_converted_model(args.output_dir):  # an upload of the model would publish the transcripts and paths too
        raise UsageError(f"OUTPUT_DIR {args.output_dir} is a converted model's folder: the prepared set would be "
                         f"written among its files; give a folder of its own (such as {args.output_dir / 'prepared'})")
    for name in (FAILED_FILE, PREPARE_CONFIG):
        if (args.output_dir / name).is_dir():  # the manifest's reader refuses its own
            raise UsageError(f"{args.output_dir / name} is a folder where this run writes its {name}: move it away, "
                             "or give another OUTPUT_DIR")
    written = {os.path.realpath(args.output_dir / name): name for name in (MANIFEST, FAILED_FILE, PREPARE_CONFIG)}
    name = written.get(os.path.realpath(args.metadata)) if args.metadata is not None else None
    if name:
        raise UsageError(f"--metadata {args.metadata} is the {name} this run writes in OUTPUT_DIR, which would "
                         "overwrite it: move it, or give another OUTPUT_DIR")


def check_no_recordings_in_output(args, entries: list[Entry]) -> None:
    """Refuse (`UsageError`) an OUTPUT_DIR inside DATA_DIR that holds recordings to prepare (a speaker's folder): the
    prepared set would be written among them. A folder of its own inside DATA_DIR holds none."""
    output = Path(os.path.realpath(args.output_dir))
    if not output.is_relative_to(os.path.realpath(args.data_dir)):  # DATA_DIR inside it: its own files go beside
        return
    inside = next((entry.audio for entry in entries
                   if not entry.error and Path(os.path.realpath(entry.audio)).is_relative_to(output)), None)
    if inside is not None:
        raise UsageError(f"OUTPUT_DIR {args.output_dir} holds recordings to prepare ({inside}): the prepared set would "
                         f"be written among them; give a folder of its own (such as {args.data_dir / 'prepared'})")


def find_entries(args) -> list[Entry]:
    """Every input utterance, with an error on those that cannot be prepared (duplicates included)."""
    if not args.data_dir.is_dir():
        raise UsageError(f"{args.data_dir} is not a folder: give the folder with the audio")
    if args.metadata is not None and args.metadata.is_dir():
        raise UsageError(f"--metadata {args.metadata} is a folder: give the metadata file in it (a .csv, .tsv or "
                         ".jsonl), or drop --metadata to read the transcript files beside the audio")
    if args.metadata is not None and not args.metadata.is_file():
        raise UsageError(f"--metadata {args.metadata}: metadata file not found; check the path, or drop --metadata to "
                         "read the transcript files beside the audio")
    if args.metadata is not None:
        entries = entries_from_metadata(args.data_dir, args.metadata, args.metadata_format)
    else:
        entries = entries_from_folder(args.data_dir)
    if not entries and args.metadata is not None:
        raise VallEValueError(f"--metadata {args.metadata} has no rows (a header at most): give the metadata file "
                              "that lists the recordings")
    if not entries:
        raise VallEValueError(f"no audio files found in {args.data_dir} or its subfolders "
                              f"({', '.join(sorted(AUDIO_EXTENSIONS))}): give the folder that holds them")
    by_id: dict[str, Entry] = {}
    by_recording: dict[str, Entry] = {}
    for entry in entries:
        if not entry.error and not _is_text(str(entry.audio)):
            entry.error = (f"{_as_text(str(entry.audio))}: the file's name is not UTF-8 text, which the audio "
                           "reader cannot open: rename it")
        first = by_id.setdefault(entry.id, entry)
        if first is not entry and not entry.error:
            entry.error = f"duplicate utterance id {entry.id!r}: {_duplicate_of(first, entry)}"
        # two paths to one file ("a.wav" and "/data/a.wav", or a link): one recording would be trained on twice
        first = entry if entry.error else by_recording.setdefault(os.path.realpath(entry.audio), entry)
        if first is not entry:
            entry.error = f"{entry.audio} is {first.audio}, the recording of {first.id!r}: {_same_recording(first)}"
            entry.recording_of = first.id
    return entries


def _is_text(name: str) -> bool:
    """Whether `name` is text: a file name that is not UTF-8 holds what Python makes of its bytes (surrogates)."""
    return _as_text(name) == name


def _as_text(name: str) -> str:
    """`name` as text to print or write in JSON: the bytes of a name that is not UTF-8 as escapes ("caf\\xe9")."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _duplicate_of(first: Entry, entry: Entry) -> str:
    """Why `entry` has the id of the `first` entry: the metadata names its file twice, or two audio files differ only
    by their extension (an id is the file's path without it)."""
    if entry.audio == first.audio:
        return f"line {first.line} names {entry.audio.name} too"
    return (f"{first.audio.name} has it too (the same name with another extension), and is the one prepared: keep "
            "one of them")


def _same_recording(first: Entry) -> str:
    """How to leave out a second path to the recording of `first`: a second metadata line, or a link in the folder."""
    if first.line is None:
        return "a link to it in the folder: remove one"
    return f"line {first.line} names it too: keep one of the lines"


def write_settings(output: Path, settings: dict) -> None:
    """Write the run's settings (`PREPARE_CONFIG`) whole, or leave the file as it was: a file cut short (a full disk)
    made the folder one that no run could resume. Raises `OutputError`."""
    try:
        with written_whole(output / PREPARE_CONFIG) as temporary:
            temporary.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    except OSError as error:
        raise OutputError(f"could not write {output / PREPARE_CONFIG} ({system_reason(error)})") from None


def prepare_all(args, pending: list[Entry], tokenizer, codec, settings: dict) -> tuple[list[dict], set[str]]:
    """Prepare each pending entry into the output folder; returns the failures (metadata line, id, audio, error) of
    those it could not use, and the ids of those among them that were tried (not refused before: a duplicate id). The
    run's settings are written before its first utterance, so that a resume can be checked."""
    failures, tried, settings_written = [], set(), False
    progress = tqdm(pending, desc="preparing", unit="file", disable=args.no_progress or None)
    for entry in progress:
        try:
            record, text_ids, codes = prepare_one(entry, tokenizer, codec, args.language, args.language_switch,
                                                  args.bandwidth)
            if not settings_written:
                write_settings(args.output_dir, settings)
                settings_written = True
            record["file"] = save_utterance(args.output_dir, entry.id, text_ids, codes)
            append_manifest(args.output_dir, record)
        except (MissingDependencyError, OutputError):
            raise  # the environment, not this file: every other file would fail alike
        except VallEError as error:
            where = {} if entry.line is None else {"line": entry.line}  # the metadata file's, to find the record
            audio = _as_text(str(entry.audio.absolute()))
            failures.append({**where, "id": _as_text(entry.id), "audio": audio, "error": one_line(error)})
            if not entry.error:  # refused before its try (a duplicate id): not this id's record to drop
                tried.add(entry.id)
            progress.write(f"skipped {audio}: {one_line(error)}")
    return failures, tried


@entry_point(interrupted="interrupted: the utterances prepared so far are kept; run the same command again to resume")
def main(argv: list[str] | None = None) -> int:
    from valle_hf.phonemes import resolve_language

    args = build_parser().parse_args(argv)
    args.codec = codec_name(args)  # resolved first: a resume checks it against the first run's
    check_output_folder(args.output_dir, "OUTPUT_DIR")
    check_apart(args)
    resolve_language("", args.language)  # an unknown language would fail every line: refuse it once, up front
    usable_device(args.device)
    entries = find_entries(args)
    check_no_recordings_in_output(args, entries)
    tokenizer = load_phoneme_tokenizer(args.tokenizer)
    settings = run_settings(args, tokenizer)
    check_resume(args.output_dir, settings)
    done = {record["id"]: record for record in read_manifest(args.output_dir)}
    # An entry with an error is reported again on every run: a duplicate of a prepared id is not the input that was
    # prepared, and leaving it out would drop it from failed.jsonl and count it as done.
    pending = [entry for entry in entries if entry.error or not prepared_from(done.get(entry.id), entry, args.language)]
    to_encode = any(not entry.error for entry in pending)
    codec = load_codec_model(args.codec, args.device, not args.no_progress) if to_encode else None
    if codec is not None and args.bandwidth not in codec.config.target_bandwidths:
        raise UsageError(f"--bandwidth {args.bandwidth:g} is not one of the codec's: "
                         f"{', '.join(f'{b:g}' for b in codec.config.target_bandwidths)} kbps (6 = VALL-E's 8 levels)")
    if codec is not None:  # recorded, not compared on a resume: the codec's name is, and fine-tuning checks this
        settings = {**settings, "codec_codebooks_sha256": codebook_fingerprint(codec)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    repair_manifest(args.output_dir)
    failures, tried = prepare_all(args, pending, tokenizer, codec, settings)
    # An utterance edited since it was prepared that now fails is no longer one to train on: its old record goes, and
    # so does the record of a second path to a recording (an earlier version prepared both).
    drop_from_manifest(args.output_dir, (tried | {entry.id for entry in entries if entry.recording_of}) & done.keys())
    write_jsonl(args.output_dir / FAILED_FILE, failures)

    total = len(read_manifest(args.output_dir))
    print(f"prepared {len(pending) - len(failures)} new utterance(s), {len(entries) - len(pending)} already done; "
          f"{total} in {args.output_dir / MANIFEST}")
    if failures:
        print(f"could not use {len(failures)} file(s) (listed in {args.output_dir / FAILED_FILE}):")
        for failure in failures:
            print(f"  {failure['audio']}: {failure['error']}")
    if not total:
        raise VallEValueError(f"none of the {len(entries)} input(s) could be prepared (listed in "
                              f"{args.output_dir / FAILED_FILE})")
    return SOME_ROWS_FAILED if failures else 0


if __name__ == "__main__":
    sys.exit(main())

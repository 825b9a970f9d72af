"""`python -m valle_hf.synthesize MANIFEST OUT_DIR`: speak a whole table of texts, batched, resumable, and spread over
processes, GPUs and nodes by accelerate.

MANIFEST (CSV, TSV or JSONL, read by `valle_hf.manifest.read_table`) has one row per output WAV: `id` (the file's
name), `text`, `prompt` (the voice: an audio file, relative to the manifest's folder, or several joined by ';'), and
optionally `language`, `seed` and any sampler flag of the CLI by its name (`ar_temp`, `max_ar_steps`, `nar_temp`,
...), which overrides the command line's flag for that row. Each row gives the WAV that
``python -m valle_hf TEXT PROMPT OUT_DIR/ID.wav --language L --seed S [flags]`` gives: its text is split into
sentences, sentence i draws from seed S + i (`valle_hf.seeding`), and every draw comes from the row's own generators,
so batching changes nothing. A row without a seed takes `--seed` (a random one when not given, printed at the end).

How it runs: a row that cannot be spoken (missing prompt file, empty text, unknown language, a bad setting, a
duplicate id) is reported in failed.jsonl with its line number, and the run goes on (the summary at the end counts
them). The rows left are grouped by their settings, sorted by length and cut into batches of at most `--batch-size`
sentences (whole rows), so a batch wastes little padding; each batch is one `generate` call (AR, NAR, decoding), a
longer row a batch of its own spoken in calls of `--batch-size` sentences. A voice prompt is encoded once per process
and kept.
Under ``accelerate launch`` the batches are dealt out to the processes, each on its own device, each writing its
own files; the main process joins the records at the end.

OUT_DIR holds ``<id>.wav`` (each written under a temporary name and renamed when complete), ``done.jsonl`` (one
record per finished row: id, path, frames, seconds, stopped, seed, line, cells, run), ``failed.jsonl`` (the rows of
the last run that could not be spoken: line, id, error) and, while a run is going, ``parts/`` (each process's
records). A re-run skips the rows in done.jsonl whose WAV is there, as long as its record says, and whose cells,
model, settings, language, language switch and (when `--seed` is given) seed are those of this run, so a crash or a
kill loses at most the batches in flight. Exit status:
0 when every row is done, 3 when some rows failed (all in failed.jsonl), 1 (one ``error:`` line) for a usage or set-up
mistake, 130 after Ctrl-C, 143 after a SIGTERM. Under a launcher (accelerate launch, torchrun) each process exits 0
after a run that ended, failures or not, since the launcher would report any other status as a crash: read
failed.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import soundfile
import torch

from .audio import joined_sentences, reference_sources, save_audio
from .cli import (
    FLAG_NAMES,
    FLAG_SETTINGS,
    add_model_arguments,
    add_sampler_arguments,
    check_device,
    count_value,
    flag_actions,
    flag_refusal,
    generation_kwargs,
    load_model,
    model_identity,
    model_precision,
    parse_flag,
    resolved_name,
    run_seed,
    seed_value,
    whole_number,
)
from .configuration import SettingError
from .errors import (
    SOME_ROWS_FAILED,
    ArgumentParser,
    MissingDependencyError,
    UsageError,
    VallEError,
    VallEFileNotFoundError,
    VallEMemoryError,
    VallEValueError,
    entry_point,
    found_by_every_process,
    get_logger,
    hinted,
    named,
    named_path,
    one_line,
    out_of_memory,
)
from .files import check_output_folder
from .generation import row_names, setting_names
from .layout import pad
from .loading import no_progress_bars
from .manifest import LAYOUTS, Row, append_jsonl, numbered_jsonl, read_jsonl, read_table, write_jsonl
from .phonemes import LANGUAGE_SWITCH, check_text, resolve_language, split_sentences
from .seeding import sentence_seeds

__all__ = ["ProcessReport", "SynthesisPlan", "main", "plan_synthesis", "run_synthesis", "synthesize"]

logger = get_logger(__name__)

COLUMNS = ("id", "text", "prompt", "language", "seed")
DONE, FAILED, PARTS = "done.jsonl", "failed.jsonl", "parts"
RESUME = "the rows written so far are kept; run the same command again to resume"
# An id is a file name: `<id>.wav`, written as `.<id>.wav.<random>.part`, must stay within file systems' 255 bytes.
MAX_ID_BYTES = 200
# A process that finished its batches waits for the others at the end; batches are dealt out evenly, but a long corpus
# can leave one process waiting for hours, beyond torch.distributed's default 30 minutes.
PROCESS_GROUP_TIMEOUT = timedelta(days=7)


# ---------------------------------------------------------------------------------------------------- planning
@dataclass
class Job:
    """One manifest row, checked and ready to speak: its sentences, resolved prompt files, seed and `generate`
    settings (`settings_key` names them, for grouping), `cells`, a digest of the row's cells (`row_digest`), `run`, a
    digest of what the run adds to them: the model, the settings and the language (`run_digest`), and
    `cell_settings`, the settings its cells gave (by flag name, "beam_width"), which messages name as its columns."""

    id: str
    lines: str
    sentences: list[str]
    language: str
    prompt: tuple[str, ...]
    seed: int
    settings: dict
    cells: str
    run: str = ""
    cell_settings: frozenset[str] = frozenset()

    @property
    def cell_names(self) -> dict[str, str]:
        """The `generate` settings the row's cells gave, each with its column's name: {"num_beams": "beam_width"}."""
        return {FLAG_SETTINGS[flag]: flag for flag in self.cell_settings}

    @property
    def settings_key(self) -> str:
        """The settings, and which of them the row's cells gave: a batch's messages name them alike."""
        return json.dumps([self.settings, sorted(self.cell_settings)], sort_keys=True)


@dataclass
class SynthesisPlan:
    """What a run will do: `batches` of jobs (each one `generate` call), the rows that cannot be spoken (`failures`,
    with their line), how many rows earlier runs finished (`done`; rows edited since are spoken again, and counted in
    `edited`), the run's seed (rows without their own) and whether a row to speak takes it (`seed_used`)."""

    batches: list[list[Job]]
    failures: list[dict]
    done: int
    seed: int
    seed_used: bool = True
    edited: int = 0


def _text(values: dict, column: str, expected: str = "text") -> str:
    """A cell as text; a JSONL value that is no text or number (a list, an object, true) is refused, saying what the
    column takes (`expected`)."""
    value = values.get(column)
    if isinstance(value, (dict, list, bool)):
        raise VallEValueError(f"{column}: expected {expected}, got the JSON {json.dumps(value)[:60]}")
    return "" if value is None else str(value).strip()


def _with_decimal_points(row: Row) -> Row:
    """`row` with its number cells' decimal commas ("0,7") as points, the comma being the decimal mark of a
    semicolon-separated file. A count's only where the result is whole ("2,0"), so that a refused one is quoted as
    written ("1,5"); token ids ("1,2", a list) stay as they are."""
    def decimal(column: str, value):
        kind = flag_actions()[column].type if column in FLAG_SETTINGS else None
        if not isinstance(value, str) or kind not in (float, whole_number):
            return value
        pointed = re.sub(r"^(\s*[+-]?\d*),(\d+\s*)$", r"\1.\2", value)
        return pointed if kind is float or re.fullmatch(r"[^,]*,0+\s*", value) else value

    return dataclasses.replace(row, values={column: decimal(column, value) for column, value in row.values.items()})


def _failed_id(values: dict):
    """A failed row's id in failed.jsonl: as text, or as the manifest wrote it where it is no text (then that is the
    row's error, which reading it as text would raise again)."""
    try:
        return _text(values, "id")
    except VallEValueError:
        return values.get("id")


def _file_key(row_id: str) -> str:
    """What file systems that ignore case and Unicode forms (macOS's, Windows') read of an id: two ids with one key
    would write one WAV there, the second row's audio under both rows' records. They fold case one character for one
    (`_simple_fold`: "ς" is "σ", but "Straße" is "straße", never "strasse": `str.casefold` refused "strasse")."""
    return "".join(map(_simple_fold, unicodedata.normalize("NFC", row_id)))


def _simple_fold(char: str) -> str:
    """`char` case-folded one character for one (Unicode's simple case folding, as file systems fold names): its
    full folding where that is one character ("ς" → "σ", "ϐ" → "β"), else its lower case where that is, else itself
    ("ß" stays "ß", not "ss")."""
    return next((form for form in (char.casefold(), char.lower()) if len(form) == 1), char)


def _check_id(row_id: str, seen: dict[str, tuple[str, str]]) -> None:
    """An id names a file in OUT_DIR: refuse what is not a plain file name, and a second row with the same id (or
    with an id naming the same file on some file systems). `seen`: each `_file_key` taken, with its id and lines."""
    if not row_id:
        raise VallEValueError("no id: give the row an id (it names the row's WAV file)")
    if len(row_id.encode()) > MAX_ID_BYTES:
        raise VallEValueError(f"id {row_id[:40]!r}... is {len(row_id.encode())} bytes long: an id names a file, at "
                              f"most {MAX_ID_BYTES} bytes (UTF-8)")
    if any(char in row_id for char in "/\\\0") or row_id.startswith(".") or not row_id.isprintable():
        raise VallEValueError(f"id {row_id!r} is not a plain file name (no '/', '\\', leading '.', control characters "
                              "or invisible ones, such as a no-break or zero-width space)")
    other, lines = seen.get(_file_key(row_id), (None, None))
    if other == row_id:
        raise VallEValueError(f"id {row_id!r} is also the id of line {lines}: give each row an id of its own")
    if other is not None:
        raise VallEValueError(f"id {row_id!r} and the id {other!r} of line {lines} differ only in case or Unicode "
                              "form: they name one file on macOS and Windows; give this row another id")


def _prompt_files(values: dict, folder: Path, output: Path) -> tuple[str, ...]:
    """The row's reference files (';'-joined, or a JSON list), relative to the manifest's folder, each checked to
    exist and not to be the row's output; resolved, so that one file has one name in the prompt cache."""
    value = values.get("prompt")
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        other = next(item for item in value if not isinstance(item, str))
        raise VallEValueError(f"prompt: expected text or a list of texts, got the JSON {json.dumps(other)[:60]} in "
                              'its list: list the voice\'s audio files by name, e.g. ["a.wav", "b.wav"]')
    sources = reference_sources(value if isinstance(value, list) else _text(values, "prompt"))
    if not sources:
        raise VallEValueError("no prompt: give the voice's audio file in the prompt column")
    if any(isinstance(source, str) and "\0" in source for source in sources):  # no file name holds one; every
        raise VallEValueError("the prompt holds a NUL character: give the audio file's name")  # file call would fail
    files = tuple((folder / source).resolve() for source in sources)
    for file in files:
        if file.is_dir():
            raise VallEValueError(f"prompt {file} is a folder: give an audio file")
        if file.exists() and not file.is_file():
            raise VallEValueError(f"prompt {file} is not a regular file (a pipe or a device): give an audio file")
        if not file.is_file():
            raise VallEFileNotFoundError(f"prompt file not found: {file} (a relative path is read from the "
                                         "manifest's folder): check the prompt column")
        if output.exists() and os.path.samefile(file, output):
            raise VallEValueError(f"the prompt {file} is also this row's output: writing it would destroy the voice; "
                                  "give the row another id")
    return tuple(map(str, files))


def _job(row: Row, folder: Path, out: OutputFolder, flags: argparse.Namespace, language: str, seed: int,
         seen: dict[str, tuple[str, str]], model_name: str | None = None, language_switch: str = "keep") -> Job:
    """A row as a `Job`; raises the package's errors for a row that cannot be spoken. `seen`: the lines of the ids
    read so far (this row's is added)."""
    if row.error:
        raise VallEValueError(row.error)
    values = row.values
    row_id = _text(values, "id")
    _check_id(row_id, seen)
    seen[_file_key(row_id)] = (row_id, row.lines)  # taken, even if this row fails below
    text = check_text(_text(values, "text"))
    if "\n" in text or "\r" in text:  # a JSON string's "\n": refused as a CSV cell's line break is
        raise VallEValueError("text holds a line break (a text must be on one line): join its lines, or give each "
                              "its own row")
    language = _text(values, "language") or language
    sentences = split_sentences(text, language)
    for sentence in sentences:
        resolve_language(sentence, language)
    if out.wav(row_id).is_dir():
        raise VallEValueError(f"the row's output {out.wav(row_id)} is a folder: move it away, or give the row "
                              "another id")
    prompt = _prompt_files(values, folder, out.wav(row_id))
    if _text(values, "seed", "an integer >= 0"):
        try:
            seed = seed_value(_text(values, "seed"))
        except argparse.ArgumentTypeError as error:
            raise VallEValueError(f"seed: {error}") from None
    row_flags, cells = argparse.Namespace(**vars(flags)), set()
    for flag in FLAG_SETTINGS:
        value = parse_flag(flag, values.get(flag), cell=True)  # named as the manifest's column, not the flag
        if value is not None:
            setattr(row_flags, flag, value)
            cells.add(flag)
    settings = generation_kwargs(row_flags, cells=cells)
    return Job(row_id, row.lines, sentences, language, prompt, seed, settings, row_digest(row),
               run_digest(model_name, settings, language, language_switch), frozenset(cells))


def row_digest(row: Row) -> str:
    """A digest of a row's cells as the run reads them (as text, stripped; an empty cell is no cell), so that neither
    a column added empty nor another manifest format changes it. done.jsonl keeps it, so that a re-run speaks again a
    row whose text, prompt, seed or settings were edited since: its WAV is no longer what the row asks for."""
    cells = {column: str(value).strip() for column, value in row.values.items()
             if value is not None and str(value).strip()}
    text = json.dumps(cells, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def run_digest(model_name: str | None, settings: dict, language: str, language_switch: str = "keep") -> str:
    """A digest of what a run adds to a row's cells: the model's name (the command's `cli.model_identity`, the API's
    resolved `name_or_path`), the `generate` settings (the command's flags, then the row's), the language and the
    handling of words in other languages (`--language-switch`). done.jsonl keeps it, so that a re-run with another
    model or other flags speaks the rows again, where it kept the first run's WAVs without a word."""
    # the default switch adds nothing, so that folders written before it was digested still resume
    switch = [] if language_switch == "keep" else [language_switch]
    text = json.dumps([model_name, settings, language, *switch], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _unedited(record: dict, digest: str, run: str | None = None, seed: int | None = None) -> bool:
    """Whether a done.jsonl record was spoken from the cells of `digest` and, given, the run of `run` and the seed
    `seed` (a record written before records kept a digest counts as unedited)."""
    return (record.get("cells", digest) == digest and (run is None or record.get("run", run) == run)
            and (seed is None or record.get("seed", seed) == seed))


def _check_columns(table, manifest: Path) -> None:
    """Refuse a manifest whose columns cannot be read as meant: a column named twice, or one the run would not read (a
    misspelt setting must not be ignored in silence)."""
    columns = table.columns
    repeated = next((column for column in columns if columns.count(column) > 1), None)
    if repeated is not None:  # the reader lets it pass where a header is optional ('|'-separated): the last one won
        raise UsageError(f"{manifest}: the header names the column {repeated!r} twice; keep one")
    missing = [column for column in ("id", "text", "prompt") if column not in columns]
    unknown = [column for column in columns if column not in COLUMNS and column not in FLAG_SETTINGS]
    if missing:
        renames = _likely_renames(missing, unknown)
        how = (f"rename its column {', '.join(renames)}" if renames else "is it in another layout? name it .csv, .tsv "
               "or .jsonl, or give --manifest-format")
        raise UsageError(f"{manifest} has no {', '.join(missing)} column: a manifest needs id, text and prompt ({how})")
    if unknown:
        where = "" if table.layout != "jsonl" else next(
            f" (first on {row.where})" for row in table.rows if set(unknown) & set(row.values))
        named = ", ".join(hinted(column, [*COLUMNS, *FLAG_SETTINGS], _shown(column)) if column else "'' (a column "
                          "without a name: a separator at the start or end of the header?)" for column in unknown)
        raise UsageError(f"{manifest}: unknown column(s) {named}{where}: the columns are "
                         f"{', '.join(COLUMNS)} and the CLI's sampler flags by name ({', '.join(FLAG_SETTINGS)})")


def _likely_renames(missing: list[str], unknown: list[str]) -> list[str]:
    """For each missing column, the unknown one closest to it, in any case ("txt (did you mean text?)", "ID (did you
    mean id?)"): a column close to a missing one but not the closest ("extra" beside "txt") is no misspelling of it,
    nor is a header left whole by another layout's separator ("id,text,prompt" read as a TSV's one column)."""
    lowered = {column.lower(): column for column in unknown if not any(mark in column for mark in ",;\t|")}
    return [f"{_shown(lowered[close[0]])} (did you mean {column}?)" for column in missing
            if (close := difflib.get_close_matches(column, list(lowered), 1))]


def _shown(column: str) -> str:
    """`column` as a message names it: quoted, with its escapes, where it holds a character one cannot see
    ("te\\u200bxt", a zero-width space a copy from a web page left), which would name it as what it is not."""
    return column if column.isprintable() else repr(column)


def _batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Jobs with the same settings, sorted by length (longest sentence, then sentence count) and cut into batches of
    at most `batch_size` sentences (a row is never split; a longer row makes a batch of its own, which
    `speak_batch` speaks in calls of `batch_size` sentences)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.settings_key, []).append(job)
    batches = []
    for group in groups.values():
        group.sort(key=lambda job: (max(map(len, job.sentences)), len(job.sentences)))
        batch: list[Job] = []
        for job in group:
            if batch and sum(len(queued.sentences) for queued in batch) + len(job.sentences) > batch_size:
                batches.append(batch)
                batch = []
            batch.append(job)
        batches.append(batch)
    return batches


def _check_run_settings(language: str, seed, batch_size, language_switch: str = "keep") -> None:
    """The run-wide settings every row falls back on (the command's flags, the API's arguments); `UsageError` for a
    value no row could use."""
    if language_switch not in LANGUAGE_SWITCH:  # else every row would fail alike, each reported on its own
        raise UsageError(f"--language-switch (language_switch= in Python) must be one of "
                         f"{', '.join(LANGUAGE_SWITCH)}, got {language_switch!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size (batch_size= in Python) must be an integer >= 1, got {batch_size!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UsageError(f"--seed (seed= in Python) must be an integer >= 0 (or not given, for a random one), "
                         f"got {seed!r}")
    try:
        resolve_language("", language)
    except MissingDependencyError:
        raise  # this machine's (espeak-ng missing), not the command line's
    except VallEError as error:
        raise UsageError(f"--language {language}: {one_line(error)}") from None


def plan_synthesis(manifest: str | os.PathLike, out: OutputFolder, flags: argparse.Namespace, language: str = "en",
                   seed: int | None = None, batch_size: int = 8, layout: str = "auto",
                   model_name: str | None = None, language_switch: str = "keep") -> SynthesisPlan:
    """Read and check every row of `manifest` and plan the batches of those `out` does not hold yet (as they would be
    spoken now: by the model `model_name` names, with these flags, `language_switch` and, when given, `seed`); no
    model is needed, and nothing is written.

    `flags`: the CLI's sampler flags (a namespace with every `FLAG_SETTINGS` name, None for not given) that rows
    override. Raises `UsageError` for a manifest that cannot be used at all (missing, unreadable, without an id, text
    or prompt column, with an unknown column), a `batch_size` < 1, a bad `seed`, an unknown `language` or
    `language_switch`; a row that cannot be spoken is a failure of the plan, with its line.
    """
    manifest = Path(manifest).expanduser()
    _check_run_settings(language, seed, batch_size, language_switch)
    model_name = None if model_name is None else resolved_name(model_name)  # once, not per row: one folder, one name
    try:
        table = read_table(manifest, layout)
    except VallEError as error:
        raise UsageError(f"manifest: {one_line(error)}") from None
    _check_columns(table, manifest)
    if not table.rows:
        raise UsageError(f"manifest: {manifest} has a header but no rows: nothing to synthesize")
    # a seed given is one the WAVs must have been spoken with; a random one is none, so that a plain re-run resumes
    given_seed, seed, done_records = seed, run_seed(seed), out.done_records()
    jobs, failures, seen, done, edited, seed_used, voices = [], [], {}, 0, 0, False, {}
    for row in table.rows:
        if table.delimiter == ";":  # saved where the comma is the decimal mark: "0,7" is 0.7
            row = _with_decimal_points(row)
        try:
            job = _job(row, manifest.parent, out, flags, language, seed, seen, model_name, language_switch)
        except VallEError as error:
            if _done_before(row, done_records, seen):
                done += 1
            else:
                failures.append({"line": row.lines, "id": _failed_id(row.values), "error": one_line(error)})
            continue
        for file in job.prompt:
            voices.setdefault(file, job.lines)
        if job.id in done_records and _unedited(done_records[job.id], job.cells, job.run,
                                                None if given_seed is None else job.seed):
            done += 1
        else:
            edited += job.id in done_records
            jobs.append(job)
            seed_used = seed_used or not _text(row.values, "seed")
    jobs, clashes = _outputs_apart_from_prompts(jobs, out, voices)
    return SynthesisPlan(_batches(jobs, batch_size), failures + clashes, done, seed, seed_used, edited)


def _done_before(row: Row, done_records: dict[str, dict], seen: dict[str, tuple[str, str]]) -> bool:
    """Whether a row that cannot be spoken now was finished by an earlier run as it reads now (its id, taken by this
    row and no earlier one, is in done.jsonl with its WAV and its cells' digest): its WAV stands, so a prompt moved
    away since is no failure, and a row must not be both done and failed."""
    row_id = _failed_id(row.values)
    if row.error is not None or not isinstance(row_id, str) or row_id not in done_records:
        return False
    return _unedited(done_records[row_id], row_digest(row)) and seen.get(_file_key(row_id)) == (row_id, row.lines)


def _outputs_apart_from_prompts(jobs: list[Job], out: OutputFolder, voices: dict[str, str]) -> tuple[list[Job],
                                                                                                       list[dict]]:
    """The jobs whose WAV is none of the manifest's prompt files (`voices`: each file and the first line reading it,
    rows done by an earlier run included), and a failure for each of the others: writing it would replace a voice."""
    kept, clashes = [], []
    for job in jobs:
        line = voices.get(str(out.wav(job.id).resolve()))
        if line is None:
            kept.append(job)
        else:
            clashes.append({"line": job.lines, "id": job.id, "error": f"its output {out.wav(job.id)} is the prompt "
                            f"of line {line}: writing it would replace that voice; give this row another id, or move "
                            "the prompt out of OUT_DIR"})
    return kept, clashes


# ---------------------------------------------------------------------------------------------------- the output folder
class OutputFolder:
    """OUT_DIR: the WAVs, done.jsonl and failed.jsonl, and each process's records under parts/ while a run goes on.

    Only the main process folds the parts into done.jsonl and failed.jsonl (`fold_done`, `write_failures`); each
    process appends to its own part (`record_done`, `record_failure`).
    """

    def __init__(self, root: str | os.PathLike, rank: int = 0):
        self.root, self.rank = Path(root).expanduser(), rank
        self.parts = self.root / PARTS

    def wav(self, row_id: str) -> Path:
        return self.root / f"{row_id}.wav"

    def check(self) -> None:
        """Refuse, before any work, a folder that cannot be made or written (`check_output_folder`), or whose
        records' names are taken by folders (found only when the records are written, after every row)."""
        check_output_folder(self.root, "the output folder")
        for name in (DONE, FAILED, PARTS):
            path = self.root / name
            if path.exists() and path.is_dir() != (name == PARTS):
                raise UsageError(f"{path} is a {'file' if name == PARTS else 'folder'}: the run keeps its records "
                                 f"there; move it away or choose another output folder")

    def prepare(self) -> None:
        """Create the folder, remove the temporary files a killed run left, and fold its records into done.jsonl (a
        killed run's failures are dropped: those rows are tried again)."""
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create the output folder {self.root} ({one_line(error)})") from None
        for leftover in [*self.root.glob(".*.wav.*.part"), *self.root.glob(f".{DONE}.*.part"),
                         *self.root.glob(f".{FAILED}.*.part"), *self.parts.glob("failed.*.jsonl")]:
            leftover.unlink()
        self.fold_done()

    def done_records(self) -> dict[str, dict]:
        """The finished rows, by id: the records of done.jsonl and of every process's part (the latest per id) whose
        WAV is there whole (`holds_its_wav`)."""
        records, cut = {}, []
        for path in [self.root / DONE, *sorted(self.parts.glob("done.*.jsonl"))]:
            unusable = []
            for number, record in numbered_jsonl(path):
                if not self.names_its_wav(record):
                    unusable.append(number)
                elif self.wav(record["id"]).is_file():
                    if self.holds_its_wav(record):
                        records[record["id"]] = record
                    else:
                        cut.append(record["id"])
            if unusable:  # once: a run reads its records more than once (to plan, then to fold them)
                logger.warning_once(f"{path}: line(s) {', '.join(map(str, unusable[:10]))}"
                                    f"{', ...' if len(unusable) > 10 else ''} name no row's WAV (an id and its path "
                                    "<id>.wav; the file was edited?): left out, so those rows are spoken again")
        cut = [row_id for row_id in dict.fromkeys(cut) if row_id not in records]
        if cut:
            logger.warning_once(f"the WAV of row(s) {', '.join(map(repr, cut[:10]))}{', ...' if len(cut) > 10 else ''} "
                                f"in {self.root} is not the length its record says (cut short by a copy or a full "
                                "disk?): spoken again")
        return records

    def holds_its_wav(self, record: dict) -> bool:
        """Whether the WAV of a done record is there whole: readable, and as long as its record's `seconds` say (a
        record without them, as long as it is there). A run writes each WAV under a temporary name and renames it
        once complete; a WAV cut short since (by a copy, a full disk) was taken as done."""
        seconds = record.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            return True
        try:
            info = soundfile.info(str(self.wav(record["id"])))
        except (RuntimeError, OSError):  # soundfile's LibsndfileError is a RuntimeError
            return False
        return abs(info.frames / info.samplerate - seconds) <= 1e-4  # the record's seconds have 4 decimals

    def names_its_wav(self, record: dict) -> bool:
        """Whether a done.jsonl record names its row and WAV as the run wrote it: a record edited by hand without
        them must not make a WAV that happens to exist count as that row's."""
        row_id = record.get("id")
        return isinstance(row_id, str) and record.get("path") == self.wav(row_id).name == f"{row_id}.wav"

    def fold_done(self) -> int:
        """Join every record of the finished rows into done.jsonl, written whole; remove the parts. Returns the number
        of records."""
        records = self.done_records()
        write_jsonl(self.root / DONE, list(records.values()))
        for part in self.parts.glob("done.*.jsonl"):
            part.unlink()
        return len(records)

    def write_failures(self, failures: list[dict]) -> list[dict]:
        """failed.jsonl: `failures` (the plan's) and those every process recorded, by line; returns them all."""
        recorded = [record for part in sorted(self.parts.glob("failed.*.jsonl")) for record in read_jsonl(part)]
        everything = sorted(failures + recorded, key=lambda record: int(str(record["line"]).split("-")[0]))
        write_jsonl(self.root / FAILED, everything)
        for part in self.parts.glob("failed.*.jsonl"):
            part.unlink()
        if self.parts.is_dir() and not any(self.parts.iterdir()):
            self.parts.rmdir()
        return everything

    def record_done(self, record: dict) -> None:
        append_jsonl(self.parts / f"done.{self.rank}.jsonl", record)

    def record_failure(self, job: Job, error: str) -> None:
        append_jsonl(self.parts / f"failed.{self.rank}.jsonl", {"line": job.lines, "id": job.id, "error": error})


# ---------------------------------------------------------------------------------------------------- speaking
class PromptCache:
    """Each distinct voice prompt's codes `[frames, 8]`, encoded once (whole, as `generate` encodes a reference) and
    kept on the CPU as int16."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor
        self.codes: dict[tuple[str, ...], torch.Tensor] = {}

    def __call__(self, files: tuple[str, ...]) -> torch.LongTensor:
        if files not in self.codes:
            waveforms = self.processor.feature_extractor.load(list(files))
            codes = self.model.prompt_rows(None, None, [waveforms], 1, None)[0]
            self.codes[files] = codes.to("cpu", torch.int16)
        return self.codes[files].long()


@dataclass
class Spoken:
    """A row's audio (its sentences joined) and what the record says of it."""

    job: Job
    audio: torch.Tensor
    frames: int
    stopped: bool


def _inputs(job: Job, model, processor, prompts: PromptCache, language_switch: str) -> tuple[list, torch.Tensor]:
    """The phoneme ids of each of the job's sentences, and its prompt codes, refused (`VallEValueError`) where a
    sentence or the prompt as spoken is longer than the model's positions: refused in the batch's `generate` call,
    it would fail every row of the batch."""
    batch = processor(job.sentences, language=job.language, language_switch=language_switch)
    texts = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
    codes = prompts(job.prompt)
    with row_names(_row_names([(job, texts, None)])), setting_names(job.cell_names):
        model.check_segments_fit(texts, [codes] * len(texts), **job.settings)
    return texts, codes


def _as_cells(error: VallEError, settings: dict) -> VallEError:
    """A setting of the rows refused by the model (their cells were checked before it loaded, the command's flags
    against it) in the words of the manifest's column (``max_nar_levels 12``, not generate's ``max_levels=12``)."""
    if not isinstance(error, SettingError) or error.setting not in settings:
        return error
    return flag_refusal(error, cell=True)


def _row_names(ready: list) -> list[str]:
    """What `generate`'s warnings call each row of a batch: its manifest id, and the sentence for a row of several."""
    return [f"id {job.id!r}" + (f" (sentence {k + 1} of {len(sentences)})" if len(sentences) > 1 else "")
            for job, sentences, _ in ready for k in range(len(sentences))]


def speak_batch(model, processor, jobs: list[Job], prompts: PromptCache, language_switch: str = "keep",
                max_sentences: int | None = None) -> tuple[list[Spoken], list[tuple[Job, str]]]:
    """Speak a batch of jobs (same settings), every sentence a row with its own seed: one `generate` call, or one
    per `max_sentences` sentences (None: no limit), so that a row longer than the batch size is spoken in calls of
    that size (its sentences' seeds and generators are their own, so its audio is the same).

    Returns the jobs spoken, and those that could not be (their text, prompt or settings refused), with the error.
    """
    ready, failed = [], []
    for job in jobs:
        try:
            ready.append((job, *_inputs(job, model, processor, prompts, language_switch)))
        except MissingDependencyError:
            raise  # the environment, not this row: every row would fail alike
        except VallEError as error:
            failed.append((job, one_line(error)))
    if not ready:
        return [], failed
    rows = [(text, codes, seed) for job, sentences, codes in ready
            for text, seed in zip(sentences, sentence_seeds(job.seed, len(sentences)), strict=True)]
    names, step = _row_names(ready), max_sentences or len(rows)
    try:
        out = [result for start in range(0, len(rows), step)
               for result in _generate(model, rows[start:start + step], names[start:start + step], jobs[0])]
    except VallEMemoryError as error:  # a call the device cannot hold
        if error.setting not in jobs[0].cell_names:
            raise  # the command's flags or the batch's size: every batch of its size would fail alike
        return [], failed + [(job, one_line(error)) for job, _, _ in ready]  # these rows' cells ask for too much
    except MissingDependencyError:
        raise
    except VallEError as error:  # the settings the rows share: every row of the batch fails alike
        message = one_line(_as_cells(error, jobs[0].settings))
        return [], failed + [(job, message) for job, _, _ in ready]
    spoken, start = [], 0
    for job, sentences, _ in ready:
        audio, lengths, stopped = zip(*out[start:start + len(sentences)], strict=True)
        start += len(sentences)
        try:
            spoken.append(Spoken(job, joined_sentences(audio, job.sentences), int(sum(lengths)), all(stopped)))
        except VallEValueError as error:
            failed.append((job, one_line(error)))
    return spoken, failed


def _generate(model, rows: list[tuple], names: list[str], job: Job) -> list[tuple[torch.Tensor, int, bool]]:
    """One `generate` call for `rows` (a sentence's phoneme ids, its prompt codes `[frames, 8]` and its seed, each)
    with `job`'s settings (those of the batch), named in warnings by `names`; each row's audio, frame count and
    whether it emitted its stop token."""
    texts, prompt_rows, seeds = zip(*rows, strict=True)
    input_ids, attention_mask = (tensor.to(model.device) for tensor in pad(list(texts), 0, side="right"))
    prompt_codes, prompt_mask = (tensor.to(model.device) for tensor in pad(list(prompt_rows), 0, side="right"))
    with row_names(names), setting_names(job.cell_names):
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, prompt_codes=prompt_codes,
                             prompt_attention_mask=prompt_mask, seeds=list(seeds), return_dict_in_generate=True,
                             **job.settings)
    return [(out.audio[row], int(out.lengths[row]), bool(out.stopped[row])) for row in range(len(seeds))]


def _speak_in_memory(model, processor, jobs: list[Job], prompts: PromptCache, language_switch: str,
                     batch_size: int | None) -> tuple[list[Spoken], list[tuple[Job, str]]]:
    """`speak_batch`, where running out of the device's memory ends the run in one line: the batch size is the
    user's setting to lower, not a bug (and every later batch of that size would run out alike). So does `generate`'s
    refusal of a call its device cannot hold (`VallEMemoryError`), which names the setting to lower."""
    try:
        return speak_batch(model, processor, jobs, prompts, language_switch, batch_size)
    except VallEMemoryError as error:
        raise VallEMemoryError(f"{one_line(error)} (a lower --batch-size); {RESUME}") from None
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(error):
            raise
        sentences = sum(len(job.sentences) for job in jobs)
        sentences = min(sentences, batch_size or sentences)  # a long row's batch runs in calls of batch_size
        raise VallEValueError(f"out of memory on {model.device} speaking a batch of {sentences} sentence(s) "
                              f"({one_line(error, 100)}): lower --batch-size, or split the longest texts; {RESUME}"
                              ) from None


@dataclass
class ProcessReport:
    """What one process did: rows written and failed, seconds of audio written, seconds it took (model loading not
    counted), and its throughput in seconds of audio per second."""

    process: int
    rows: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds else 0.0


def run_synthesis(batches: list[list[Job]], model, processor, out: OutputFolder, language_switch: str = "keep",
                  progress: bool | None = None, process: int = 0, batch_size: int | None = None) -> ProcessReport:
    """Speak `batches` into `out`: each row's WAV, then its record in this process's part of done.jsonl (a row is done
    only once both are written); failures go to its part of failed.jsonl (none is printed: the command's summary
    counts them). `progress`: a progress bar of rows and seconds of audio (None: when stderr is a terminal).
    `batch_size`: the most sentences of one `generate` call (a batch of one longer row is spoken in several; None: one
    call per batch). A setting that does nothing without its switch is warned about once for the whole run, named by
    its flag."""
    from tqdm.auto import tqdm

    report, started = ProcessReport(process), time.perf_counter()
    if not batches:  # nothing left for this process (and no model loaded for it)
        return report
    prompts, rate = PromptCache(model, processor), model.config.sampling_rate
    total = sum(len(batch) for batch in batches)
    with tqdm(total=total, unit="row", desc=f"process {process}", position=process, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar, setting_names(FLAG_NAMES):
        for batch in batches:
            spoken, failed = _speak_in_memory(model, processor, batch, prompts, language_switch, batch_size)
            for row in spoken:
                try:
                    path = save_audio(out.wav(row.job.id), row.audio, rate)
                except VallEValueError as error:  # audio no file holds (empty, NaN): this row fails, the run goes on
                    failed.append((row.job, one_line(error)))
                    continue
                seconds = row.audio.numel() / rate
                out.record_done({"id": row.job.id, "path": path.name, "frames": row.frames,
                                 "seconds": round(seconds, 4), "stopped": row.stopped, "seed": row.job.seed,
                                 "line": row.job.lines, "cells": row.job.cells, "run": row.job.run})
                report.rows += 1
                report.audio_seconds += seconds
            for job, error in failed:  # listed in failed.jsonl, counted at the end, as the plan's failures are
                out.record_failure(job, error)
            report.failed += len(failed)
            bar.update(len(batch))
            bar.set_postfix_str(f"{report.audio_seconds:.1f} s of audio")
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------------------------- the Python API
def synthesize(manifest: str | os.PathLike, out_dir: str | os.PathLike, model, processor, *, language: str = "en",
               language_switch: str = "keep", seed: int | None = None, batch_size: int = 8, layout: str = "auto",
               progress: bool | None = None, **flags) -> tuple[SynthesisPlan, ProcessReport]:
    """Speak every row of `manifest` not yet done into `out_dir`, in this process (see the module docstring).

    `flags`: the CLI's sampler flags by name (``ar_temp=0.5``, ``max_ar_steps=300``; `valle_hf.cli.FLAG_SETTINGS`)
    for the rows that do not set them. Returns the plan (its `failures` are the rows that could not be read) and
    what was done (`ProcessReport`: rows written, rows failed while speaking, seconds of audio, throughput); both kinds
    of failure are in `out_dir`/failed.jsonl. Raises `UsageError` for an unknown flag, a value outside its range, or
    a manifest that cannot be used at all.
    """
    unknown = sorted(set(flags) - set(FLAG_SETTINGS))
    if unknown:
        raise UsageError(f"unknown sampler flag(s) {', '.join(unknown)}: use the CLI's names "
                         f"({', '.join(FLAG_SETTINGS)})")
    namespace = argparse.Namespace(task="tts", **{flag: flags.get(flag) for flag in FLAG_SETTINGS})
    generation_kwargs(namespace, model)  # before any row
    out = OutputFolder(out_dir)
    out.check()
    plan = plan_synthesis(manifest, out, namespace, language, seed, batch_size, layout,
                          model_name=getattr(model, "name_or_path", None) or None,  # one built in memory has none
                          language_switch=language_switch)
    out.prepare()
    report = run_synthesis(plan.batches, model, processor, out, language_switch, progress, batch_size=batch_size)
    out.fold_done()
    out.write_failures(plan.failures)
    return plan, report


# ---------------------------------------------------------------------------------------------------- the command
def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m valle_hf.synthesize", description=__doc__.split("\n\n")[0],
                            epilog="Rows of MANIFEST: id, text, prompt (an audio path), and optionally language, seed "
                            "and the sampler flags below by name (ar_temp, ...), which override the command line's.")
    add = parser.add_argument
    add("manifest", type=named_path,
        help="CSV, TSV or JSONL of rows: id, text, prompt [, language, seed, sampler flags]")
    add("out_dir", type=named_path, help="where the WAVs, done.jsonl and failed.jsonl go (created; a re-run resumes)")
    add("--manifest-format", choices=[layout for layout in LAYOUTS if layout != "ljspeech"], default="auto",
        help="layout of MANIFEST: auto (by extension: .jsonl, .tsv, else CSV), csv, tsv, jsonl [auto]")
    add("--batch-size", type=count_value, default=8,
        help="sentences per generate call (a longer row is spoken alone, in several calls) [8]")
    add("--language", type=named, default="en", help="language of rows without one: espeak code or 'auto' [en]")
    add("--language-switch", default="keep", choices=["keep", "remove"],
        help="espeak's markers for words read in another language: keep (as the model was trained) or remove [keep]")
    add("--seed", type=seed_value, default=None, help="seed of rows without one, an integer >= 0: sentence i of a row "
        "draws from seed + i (random when not given, printed at the end)")
    add("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    add_sampler_arguments(parser)
    return parser


def _process_state(args):
    """accelerate's view of this process (one of `num_processes`, on its own device), and the device the model goes
    to: the process's own under a launcher with several processes, else what --device says (as the CLI)."""
    from accelerate import PartialState

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    cpu = args.device == "cpu" or use_cpu or (args.device is None and not torch.cuda.is_available())
    state = PartialState(cpu=cpu, timeout=PROCESS_GROUP_TIMEOUT)
    if state.num_processes == 1 and use_cpu and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        logger.warning("accelerate started one process: its --cpu launcher starts several only through MPI "
                       "(--mpirun_hostfile); for several CPU processes run `accelerate launch --multi_gpu "
                       "--num_processes N -m valle_hf.synthesize ... --device cpu`")
    if state.num_processes > 1:
        args.device = "cpu" if state.device.type == "cpu" else str(state.device)
    return state


def _broadcast(state, value):
    """The main process's `value`, on every process."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _on_main(state, work):
    """`work()`, run by the main process, and its result on every process. Where it raises the package's error, the
    main process raises it (one `error:` line for the run) and the others end with status 1 and nothing printed,
    instead of waiting for a result that never comes (and printing a lost connection's traceback)."""
    if state.num_processes == 1:
        return work()
    result, error = None, None
    if state.is_main_process:
        try:
            result = work()
        except VallEError as failure:
            error = failure
    result, failed = _broadcast(state, (result, error is not None))
    if error is not None:
        raise error
    if failed:
        raise SystemExit(1)
    return result


def _load_together(state, load):
    """`load()` in every process, and its result; where it raises the package's error in one process or more (a
    --model not found, a device it cannot use), every process ends, with one `error:` line for the run: the main
    process prints it, naming the processes that failed unless it failed alike itself. Before, a process that failed
    left the others waiting for it, and they printed a lost connection's traceback."""
    if state.num_processes == 1:
        return load()
    result, error = None, None
    try:
        result = load()
    except VallEError as failure:
        error = failure
    failed = {}  # an error's message: the processes that raised it
    for index, message in _gather(state, (state.process_index, error and one_line(error))):
        if message:
            failed.setdefault(message, []).append(index)
    if not failed:
        return result
    if not state.is_main_process:
        raise SystemExit(1)
    if error is not None and len(failed) == 1:  # every process that failed failed alike, the main one too
        raise error
    raise VallEError("; ".join(f"process {', '.join(map(str, indices))}: {message}"
                               for message, indices in failed.items()))


def _run_precision(state, args, batches: list[list[Job]]):
    """The run's precision (`hardware.Precision`), chosen by the main process (with --dtype auto it measures the
    machine, at the rows of the run's widest `generate` call: a --batch-size of 100000 measured that many rows for a
    manifest of two) and used by every process: a process choosing for itself could choose another dtype (a busy CPU,
    its own thread count) and speak its rows differently."""
    widest = max(min(sum(len(job.sentences) for job in batch), args.batch_size) for batch in batches)
    return _on_main(state, lambda: model_precision(args, widest))


def _gather(state, value) -> list:
    """Every process's `value`, in the order of the processes, on every process."""
    if state.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def _print_report(reports: list[ProcessReport], wall: float, plan: SynthesisPlan, failures: list[dict], out: Path,
                  seed_given: bool) -> None:
    rows = sum(report.rows for report in reports)
    audio = sum(report.audio_seconds for report in reports)
    lines = [f"{'process':>9} {'rows':>6} {'audio s':>9} {'wall s':>8} {'audio s/s':>10}"]
    lines += [f"{report.process:>9} {report.rows:>6} {report.audio_seconds:>9.1f} {report.seconds:>8.1f} "
              f"{report.speed:>10.2f}" for report in reports]
    lines.append(f"{'all':>9} {rows:>6} {audio:>9.1f} {wall:>8.1f} {audio / wall if wall else 0.0:>10.2f}")
    if rows:  # a run with nothing to speak (all done before, or every row failed) has no throughput to show
        print("\n".join(lines), file=sys.stderr)
    edited = (f", {plan.edited} spoken again: their cells, the model, its settings or the seed changed since"
              if plan.edited else "")
    print(f"wrote {rows} row(s) into {out} ({plan.done} done before{edited}); {len(failures)} failed"
          + (f" (listed in {out / FAILED})" if failures else ""), file=sys.stderr)
    if not seed_given and plan.seed_used and rows:
        print(f"seed: {plan.seed} (--seed {plan.seed} repeats the rows without a seed)", file=sys.stderr)


@entry_point(interrupted=f"interrupted: {RESUME}")
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    with found_by_every_process():
        args = build_parser().parse_args(argv)
    with no_progress_bars() if args.no_progress else contextlib.nullcontext():  # transformers' "Loading weights" too
        return _synthesize(args)


def _synthesize(args) -> int:
    """The command's run, with the parsed arguments; returns the exit status."""
    check_device(args)
    flags = argparse.Namespace(task="tts", **{flag: getattr(args, flag) for flag in FLAG_SETTINGS})
    with found_by_every_process():  # in every process, before any waits for another
        generation_kwargs(flags)
        _check_run_settings(args.language, args.seed, args.batch_size, args.language_switch)
    OutputFolder(args.out_dir).check()
    state = _process_state(args)
    out = OutputFolder(args.out_dir, state.process_index)
    plan = _on_main(state, lambda: plan_synthesis(args.manifest, out, flags, args.language, args.seed,  # one plan,
                                                  args.batch_size, args.manifest_format,  # everywhere
                                                  model_identity(args), args.language_switch))
    mine = plan.batches[state.process_index:: state.num_processes]
    # with nothing to speak (all done before), nothing to choose: --dtype auto measures, and the model is not loaded
    precision = _run_precision(state, args, plan.batches) if plan.batches else None

    def load():
        if not mine:
            return None, None, precision
        loaded = load_model(args, precision)
        generation_kwargs(flags, loaded[0])  # against this model
        return loaded

    model, processor, precision = _load_together(state, load)
    if state.is_main_process:  # nothing is written before the model is loaded
        out.prepare()
    state.wait_for_everyone()
    started = time.perf_counter()
    report = run_synthesis(mine, model, processor, out, args.language_switch, False if args.no_progress else None,
                           state.process_index, args.batch_size)
    state.wait_for_everyone()
    wall = time.perf_counter() - started
    reports = _gather(state, report)
    failures = []
    if state.is_main_process:
        out.fold_done()
        failures = out.write_failures(plan.failures)
        _print_report(reports, wall, plan, failures, args.out_dir, args.seed is not None)
        if precision is not None:  # once it ran, so that a failed run still says one line only
            print(precision.describe(), file=sys.stderr)
    some_failed = plan.failures or any(report.failed for report in reports)
    _end_together(state)
    return _exit_status(bool(some_failed), state.num_processes)


def _end_together(state) -> None:
    """Under a launcher, wait for every process, then take the process group down: a process that left while the
    main one still wrote its report tore the group down at the interpreter's exit, and once aborted there ("terminate
    called without an active exception"), which the launcher reported as a crash of the run."""
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()


def _exit_status(some_failed: bool, processes: int) -> int:
    """`SOME_ROWS_FAILED` after failed rows, but 0 where a launcher started this process: one of several processes
    (torchrun, `accelerate launch --multi_gpu`, srun, mpirun) reports any other status as a crash, torchrun with one
    process too, and accelerate's launcher of one process (`--cpu`, or one GPU) as a traceback of its own;
    failed.jsonl lists the failed rows."""
    launched = processes > 1 or "TORCHELASTIC_RUN_ID" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ
    return SOME_ROWS_FAILED if some_failed and not launched else 0


if __name__ == "__main__":
    sys.exit(main())

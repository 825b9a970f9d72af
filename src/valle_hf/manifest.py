"""Tables of inputs (CSV, TSV, LJSpeech, JSONL) read into rows that keep their line numbers, and JSONL records written
line by line so that a crash loses at most the line being written.

One reader serves every command that takes a table (`scripts/prepare_dataset.py --metadata`, `python -m
valle_hf.synthesize`), so a file reads the same everywhere and every line is either used or reported by its number.
Layouts (`read_table`; "auto" picks `jsonl` for a .jsonl file, `tsv` for a .tsv file, `ljspeech` when the first line
has a ``|``, `csv` otherwise):

* ``csv``: comma-separated with a header and CSV quoting; a record quoted over several lines keeps their numbers
  ("3-5") and is reported, as an unbalanced quote is the usual cause, and so is a quoted cell with text after its
  closing quote (csv would drop the quotes and keep the rest). A quote inside a cell that does not start with one is
  text. A header without a comma but with a semicolon (what spreadsheets write where the comma is the decimal mark)
  or a tab makes that the delimiter.
* ``tsv``: tab-separated with a header, no quoting (Common Voice's files, whose text holds quotes).
* ``ljspeech``: ``|``-separated, no quoting; the header may be missing (LJSpeech's ``metadata.csv``).
* ``jsonl``: one JSON object per line; the columns are its keys.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError, VallEFileNotFoundError, VallEValueError, get_logger, one_line
from .files import written_whole

__all__ = ["LAYOUTS", "Record", "Row", "Table", "append_jsonl", "numbered_jsonl", "read_jsonl", "read_table",
           "repair_jsonl", "table_layout", "write_jsonl"]

LAYOUTS = ("auto", "ljspeech", "tsv", "csv", "jsonl")
logger = get_logger(__name__)


@dataclass
class Record:
    """One record as the file holds it: `lines` ("3", or "3-5" for a CSV record quoted over several lines) and its
    `cells` (the split line; for JSONL the decoded value, or None with `error` when the line is not JSON)."""

    lines: str
    cells: list[str] | dict | None
    error: str | None = None


@dataclass
class Row:
    """One row of a table: `values` by column name, and `error` (naming its line) when it cannot be used as read."""

    lines: str
    values: dict
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{'lines' if '-' in self.lines else 'line'} {self.lines}"


@dataclass
class Table:
    """A table as read: its `layout`, its `columns` (the header; for JSONL every key, in order of appearance), its
    `rows` (every record after the header), all its `records` (header included, for headerless layouts), and its
    cells' `delimiter` (None for JSONL; ";" for a CSV saved where the comma is the decimal mark)."""

    layout: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    delimiter: str | None = None


def table_layout(path: str | os.PathLike, first_line: str, requested: str = "auto") -> str:
    """The layout `path` is read in: `requested`, or for "auto" the one its name and first line show."""
    if requested != "auto":
        return requested
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".tsv"):
        return suffix[1:]
    return "ljspeech" if "|" in first_line else "csv"


def _newlines(content: str) -> str:
    """`content`, read without newline translation, with its line breaks as "\n": carriage returns before a "\n"
    ("\r\n", Windows'; "\r\r\n", Python's csv writer on Windows in text mode) or at the end, and, in a file whose lines
    end with "\r" (classic Mac OS, Excel's "CSV (Macintosh)", where a "\n" is a line break inside a quoted cell),
    every "\r". Any other "\r" is no line break but a character in a cell (a spreadsheet's line break inside a cell),
    left for the reader to report (`_CR_IN_A_CELL`): Python's text mode took it for one, which cut its row in two and
    shifted every later line number."""
    content = re.sub(r"\r+(?=\n)|\r+\Z", "", content)
    return content.replace("\r", "\n") if content.count("\r") > content.count("\n") else content


def _lines(content: str) -> list[str]:
    """The lines of text whose newlines are "\n" (`_newlines`): split there only, since `str.splitlines` also splits
    at characters that may stand inside a value ("\r", U+2028, form feeds, ...), which would cut a JSON line in two and
    shift every later line number."""
    return content.split("\n")


# The error of a delimited record with a carriage return in a cell: a line break inside a text, which must be one line
_CR_IN_A_CELL = "a cell holds a carriage return (a line break inside a text; a text must be on one line): remove it"


def _delimited_record(lines: str, cells: list[str]) -> Record:
    """A record of a delimited layout, with its error where a cell holds a carriage return (`_CR_IN_A_CELL`)."""
    crossed = any("\r" in cell for cell in cells)
    return Record(lines, cells, f"line {lines}: {_CR_IN_A_CELL}" if crossed else None)


def _csv_delimiter(header: str) -> str:
    """A CSV file's delimiter, read from its `header` line: a comma, or where the header holds none, a semicolon or a
    tab."""
    return next((mark for mark in (",", ";", "\t") if mark in header), ",")


def _blank(cells: list[str]) -> bool:
    """Whether a delimited line is a blank one (spaces at most): a line of delimiters only (",,,", what spreadsheets
    write for an emptied row) is a record of empty cells, reported as such rather than lost."""
    return len(cells) <= 1 and not "".join(cells).strip()


def _records(content: str, layout: str, first_line: str) -> list[Record]:
    """The file's records, blank lines left out. `ljspeech` and `tsv` split each line on its delimiter, quotes
    included; `csv` uses CSV quoting (`_csv_records`), with the delimiter its header (`first_line`) shows; `jsonl`
    decodes each line."""
    if layout == "jsonl":
        return [_json_record(str(number), line) for number, line in enumerate(_lines(content), start=1)
                if line.strip()]
    if layout in ("ljspeech", "tsv"):
        delimiter = "|" if layout == "ljspeech" else "\t"
        split = [(str(number), line.split(delimiter)) for number, line in enumerate(_lines(content), start=1)]
        return [_delimited_record(number, cells) for number, cells in split if not _blank(cells)]
    return _csv_records(content, _csv_delimiter(first_line))


def _csv_records(content: str, delimiter: str) -> list[Record]:
    """The records of a CSV file, each numbered by its lines ("3", or "3-5" when quoted over several), with an error
    (`_quoting_error`) where its quoting cannot be read as written. csv reads in strict mode: by default it dropped the
    quotes of a quoted cell followed by text and kept the rest ('a,"Hi," she said' read as 'Hi, she said'), and read
    the end of the file as the end of a quote left open."""
    records, reader, last = [], csv.reader(io.StringIO(content), delimiter=delimiter, strict=True), 0
    with _field_size_limit(len(content) + 1):
        while True:
            first, refusal = last + 1, None
            try:
                cells = next(reader)
            except StopIteration:
                return records
            except csv.Error as error:  # the reader goes on at the next line
                cells, refusal = [], str(error)
            last = reader.line_num
            lines = str(first) if first == last else f"{first}-{last}"
            if refusal or first != last:
                records.append(Record(lines, cells, _quoting_error(lines, refusal, delimiter)))
            elif not _blank(cells):
                records.append(_delimited_record(lines, cells))


def _quoting_error(lines: str, refusal: str | None, delimiter: str) -> str:
    """The error of the CSV record on `lines` ("3" or "3-5") that csv refused (`refusal`, its message) or read over
    several lines (None), with the fix; a tab-separated file named .csv is often one whose quotes are text (Common
    Voice's), read as such in the tsv layout."""
    fix = "fix the quoting" + ("; or, if its quotes are text, rename the file .tsv or give the tsv format, which "
                               "reads no quoting" if delimiter == "\t" else "")
    where = f"line{'s' if '-' in lines else ''} {lines}"
    if refusal == "unexpected end of data":
        return f"{where}: the file ends inside a quoted cell (a quote is unbalanced); {fix}"
    if refusal is not None and refusal.startswith("new-line character seen in unquoted field"):
        return f"{where}: {_CR_IN_A_CELL}"
    if refusal is not None:  # csv's message holds the delimiter itself, a tab among them
        return f"{where}: a quoted cell goes on after its closing quote (text after it, before the next cell); {fix}"
    return (f"{where} are one record: a quoted cell holds a line break (a text must be on one line), or a quote is "
            f"unbalanced; {fix}")


@contextlib.contextmanager
def _field_size_limit(size: int):
    """csv's limit on the length of one cell raised to `size` for one read, then put back (it is process-wide). A
    quote left open makes one cell of every line up to the next quote: under the default limit (128 KiB) a large file
    stopped the read with `csv.Error`, where a file of any size must report that record by its lines (`_row`)."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, size))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple]) -> dict:
    """`json.loads`' object hook: an object that names a key twice is refused (JSON would keep the last in silence)."""
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise _RepeatedKey(repeated)
    return dict(pairs)


def _json_record(lines: str, line: str) -> Record:
    try:
        value = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        return Record(lines, None, f"line {lines}: not JSON ({error.msg}, column {error.colno})")
    except _RepeatedKey as error:
        return Record(lines, None, f"line {lines}: the key {error} appears twice; keep one")
    if not isinstance(value, dict):
        return Record(lines, None, f"line {lines}: a JSON {type(value).__name__}, not an object with named fields")
    try:  # JSON's \u escapes can make half a surrogate pair, which no file name, text or record can hold
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        return Record(lines, None, f"line {lines}: the escape \\u{ord(error.object[error.start]):04x} is half of a "
                                   "surrogate pair, no character: write the character itself, or the whole pair")
    return Record(lines, value)


def _row(record: Record, header: list[str]) -> Row:
    """A delimited record read against the header: one its reader refused (a quote, `_csv_records`), or one with
    another number of cells (an unquoted comma in the text, a missing column), is kept with its error."""
    row = Row(record.lines, dict(zip(header, record.cells, strict=False)), record.error)
    if record.error:
        return row
    if len(record.cells) != len(header):
        row.error = f"{row.where}: {len(record.cells)} columns where the header has {len(header)}"
    return row


def read_table(path: str | os.PathLike, layout: str = "auto") -> Table:
    """Read a table of inputs in `layout` (see the module docstring); the first record of a delimited layout is its
    header. Every record comes back, as a row or as a row with its error, so that none is lost silently.

    Raises `VallEFileNotFoundError` for a missing file, `VallEValueError` for a folder, a pipe, a file that cannot be
    read or is not UTF-8 text, an unknown layout, a file without any record, a JSONL file none of whose lines can be
    read (saying why), or a header (CSV, TSV) that names a column twice or whose quoting cannot be read.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise VallEValueError(f"unknown table layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if path.is_dir():
        raise VallEValueError(f"{path} is a folder: give the table file in it")
    if path.exists() and not path.is_file():  # a pipe blocks until written to, and is read once only
        raise VallEValueError(f"{path} is not a regular file (a pipe or a device): save the table to a file")
    if not path.is_file():
        raise VallEFileNotFoundError(f"{path} not found: check the path")
    try:
        # a byte order mark is no text; a tool that adds one to a file that had one leaves two
        with path.open(encoding="utf-8-sig", newline="") as file:
            content = _newlines(file.read()).lstrip("\ufeff")
    except UnicodeDecodeError:
        raise VallEValueError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    except OSError as error:  # no read permission, an I/O error: the user's file, not a bug
        raise VallEValueError(f"could not read {path} ({one_line(error)}): check that it is readable") from None
    first_line = next((line for line in _lines(content) if line.strip()), "")
    layout = table_layout(path, first_line, layout)
    records = _records(content, layout, first_line)
    if not records:
        raise VallEValueError(f"{path} has no records (no line with content): write one record per line")
    if layout == "jsonl" and all(record.error for record in records):  # no columns to name: say what is wrong
        other_layout = all(": not JSON (" in record.error for record in records)
        fix = (': write one JSON object per line ({"column": "value", ...}), or read the file in its own layout (CSV, '
               'TSV)') if other_layout else ""
        raise VallEValueError(f"{path}: no line can be read ({records[0].error}){fix}")
    if layout == "jsonl":
        columns = list(dict.fromkeys(key for record in records if record.cells for key in record.cells))
        rows = [Row(record.lines, record.cells or {}, record.error) for record in records]
        return Table(layout, columns, rows, records)
    if records[0].error:  # a header csv cannot read gives no columns to read the rows by
        raise VallEValueError(f"{path}: the header, {records[0].error}")
    header = [column.strip() for column in records[0].cells]
    if layout != "ljspeech":  # LJSpeech's first line may be a row, with its text twice or an empty last column
        _check_header(path, records[0].lines, header)
    delimiter = {"ljspeech": "|", "tsv": "\t"}.get(layout) or _csv_delimiter(first_line)
    return Table(layout, header, [_row(record, header) for record in records[1:]], records, delimiter)


def _check_header(path: Path, lines: str, header: list[str]) -> None:
    """Refuse a header that names a column twice (a reader could not tell which one it reads). A column without a
    name (pandas' index, a separator at the end of the header) is read as the column ''."""
    repeated = next((column for column in header if header.count(column) > 1), None)
    if repeated is not None:
        raise VallEValueError(f"{path}: the header (line {lines}) names the column {repeated!r} twice; keep one")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a line of JSON, flushed at once; `OutputError` when it cannot be written (a line cut
    short by a crash is repaired by `repair_jsonl` and skipped by `read_jsonl`)."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
    except OSError as error:
        raise OutputError(f"could not append to {path} ({one_line(error)})") from None


def repair_jsonl(path: str | os.PathLike) -> None:
    """Make a JSONL file end with a whole line, so that the next append does not glue its record onto a partial one.

    A crash in the middle of `append_jsonl` leaves a last line without its newline: a record that is complete gets
    its newline back, anything else is cut off.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            complete = isinstance(json.loads(data[start:]), dict)
        except ValueError:  # a cut-off record: not JSON, or not UTF-8 any more
            complete = False
        if complete:
            handle.write(b"\n")
        else:
            handle.truncate(start)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL file written by `append_jsonl`, in order; a line cut off by a crash is left out, and a
    missing file has none."""
    return [record for _, record in numbered_jsonl(path)]


def numbered_jsonl(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """`read_jsonl`'s records, each with the number of its line (so that a record found unusable later can be
    named by it). Other lines than a last one cut by a crash (no newline) that hold no record (a file edited by hand)
    are left out with a warning naming them (once per process for the same lines): what they held is lost to the
    reader. A missing file has none; `VallEValueError` for a folder or another file that is no regular one, or a file
    that cannot be read."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():  # a folder of its name would read as no records: as if none were written
        raise VallEValueError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file'}, not JSONL "
                              "records: move it away")
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:  # no read permission, an I/O error
        raise VallEValueError(f"could not read {path} ({one_line(error)}): check that it is readable") from None
    lines, records, broken = _lines(content), [], []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append((number, record))
        elif line.strip():
            broken.append(number)
    if broken and not content.endswith("\n") and broken[-1] == len(lines):
        broken.pop()  # the record an append cut short: written again when its work is done again
    if broken:  # once: a run reads its records more than once (corpus synthesis: to plan, then to fold them)
        logger.warning_once(f"{path}: line(s) {', '.join(map(str, broken[:10]))}{', ...' if len(broken) > 10 else ''} "
                            "hold no JSON object (the file was edited?): left out")
    return records


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Write `records` as a whole JSONL file: under a temporary name beside it, renamed into place when complete, so
    the file is always the old one or the new one. Raises `OutputError` when it cannot be written."""
    path = Path(path)
    try:
        with written_whole(path) as temporary, open(temporary, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    except OSError as error:
        raise OutputError(f"could not write {path} ({one_line(error)}); it was left as it was") from None

"""valle_hf.manifest: one reader for CSV, TSV, LJSpeech and JSONL tables (every line a row or a reported error, by
its number), and JSONL records that survive a crash in the middle of a write."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest
from conftest import logged_warnings

from valle_hf.errors import OutputError, VallEValueError
from valle_hf.manifest import append_jsonl, numbered_jsonl, read_jsonl, read_table, repair_jsonl, write_jsonl

CR_IN_A_CELL = "a cell holds a carriage return (a line break inside a text; a text must be on one line): remove it"
ROWS = [  # a line separator and a form feed inside a text split no line (str.splitlines would split there)
    {"id": "a", "text": 'She said "hi",\u2028then\x0cleft.', "prompt": "a.wav"},
    {"id": "b", "text": "Plain.", "prompt": "b.wav"},
]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, content", [
    ("m.csv", 'id,text,prompt\na,"She said ""hi"",\u2028then\x0cleft.",a.wav\n\nb,Plain.,b.wav\n'),
    ("m.tsv", 'id\ttext\tprompt\na\tShe said "hi",\u2028then\x0cleft.\ta.wav\n\nb\tPlain.\tb.wav\n'),
    ("m.txt", 'id|text|prompt\na|She said "hi",\u2028then\x0cleft.|a.wav\n\nb|Plain.|b.wav\n'),
    ("m.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" + ("\n" if index == 0 else "")
                        for index, row in enumerate(ROWS))),
])
def test_every_layout_reads_the_same_rows_with_their_line_numbers(tmp_path, name, content):
    table = read_table(write(tmp_path / name, content))
    assert table.layout == {"m.csv": "csv", "m.tsv": "tsv", "m.txt": "ljspeech", "m.jsonl": "jsonl"}[name]
    assert table.columns == ["id", "text", "prompt"]
    assert [row.values for row in table.rows] == ROWS
    header = 0 if table.layout == "jsonl" else 1
    assert [row.lines for row in table.rows] == [str(1 + header), str(3 + header)]  # a blank line is skipped
    assert all(row.error is None for row in table.rows)


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.txt", "m.jsonl"])
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_a_carriage_return_in_a_cell_is_reported_on_its_line_and_one_alone_ends_the_lines_of_old_macs(tmp_path, name,
                                                                                                       newline):
    """Python's text mode read a lone carriage return as a line break: a text holding one ("Old mac\rbreak.", a
    spreadsheet's line break inside a cell) was cut into two rows, the second a row made up from the rest, and every
    later line number was one off. In a file of other line breaks it is the cell's (its record reported, as a quoted
    line break is); in a file of carriage returns only (classic Mac OS) it ends the lines."""
    delimiter = {"m.csv": ",", "m.tsv": "\t", "m.txt": "|"}.get(name)
    rows = [{"id": "a", "text": "One.", "prompt": "a.wav"}, {"id": "b", "text": "Old mac\rbreak.", "prompt": "b.wav"},
            {"id": "c", "text": "Three.", "prompt": "c.wav"}]
    if delimiter is None:
        lines = [json.dumps(row).replace("\\r", "\r") for row in rows]  # a raw one: no JSON
    else:
        lines = [delimiter.join(rows[0]), *(delimiter.join(row.values()) for row in rows)]
    if newline == "\r":  # no carriage return but the line breaks
        lines = [line.replace("\r", " ") for line in lines]
    (tmp_path / name).write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    table = read_table(tmp_path / name)
    header = 0 if delimiter is None else 1
    assert [row.lines for row in table.rows] == [str(line + header) for line in (1, 2, 3)]
    assert [row.values for row in table.rows][::2] == rows[::2]
    if newline == "\r":
        assert table.rows[1].values == {**rows[1], "text": "Old mac break."} and table.rows[1].error is None
    else:
        assert table.rows[1].error is not None and table.rows[1].error.startswith(f"line {2 + header}: ")
        if delimiter is not None:
            assert "a cell holds a carriage return (a line break inside a text" in table.rows[1].error
    if name == "m.csv" and newline != "\r":  # quoted, csv reads it as the cell's
        write(tmp_path / name, newline.join(["id,text", 'a,"Old mac\rbreak."', "b,Two."]))
        assert [(row.lines, row.error) for row in read_table(tmp_path / name).rows] == [
            ("2", f"line 2: {CR_IN_A_CELL}"), ("3", None)]


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.txt"])
def test_carriage_returns_that_end_lines_are_line_ends_in_every_writers_form(tmp_path, name):
    """"\r\r\n" (Python's csv writer on Windows in text mode), a last line ended by "\r" alone in a file of "\r\n",
    and a classic Mac file with a line break ("\n") in a quoted cell were refused whole, or their last row, as cells
    holding a carriage return, once lone ones were read as the cells' (they had been read)."""
    delimiter = {"m.csv": ",", "m.tsv": "\t", "m.txt": "|"}[name]
    lines = [delimiter.join(["id", "text"]), delimiter.join(["a", "One."]), delimiter.join(["b", "Two."])]
    for ending, last in (("\r\r\n", "\r\r\n"), ("\r\n", "\r"), ("\r\n", "")):
        (tmp_path / name).write_bytes((ending.join(lines) + last).encode())
        rows = read_table(tmp_path / name).rows
        assert [(row.lines, row.values, row.error) for row in rows] == [
            ("2", {"id": "a", "text": "One."}, None), ("3", {"id": "b", "text": "Two."}, None)], (ending, last)
    if name == "m.csv":  # Excel's "CSV (Macintosh)": lines end with "\r", a cell's line break is "\n"
        (tmp_path / name).write_bytes(b'id,text\ra,"One\nmore"\rb,Two.\r')
        rows = read_table(tmp_path / name).rows
        assert [row.values["id"] for row in rows] == ["a", "b"] and rows[1].error is None
        assert "a quoted cell holds a line break" in rows[0].error


@pytest.mark.parametrize("name, content, layout", [
    ("m.csv", " id , text \na,Hi.\n", "csv"),
    ("m.tsv", " id\t text \na\tHi.\n", "tsv"),
    ("m.txt", "\n\nid | text\na|Hi.\n", "ljspeech"),  # "auto" looks at the first line with content
])
def test_a_header_is_read_without_the_spaces_around_its_names_and_past_blank_lines(tmp_path, name, content, layout):
    table = read_table(write(tmp_path / name, content))
    assert table.layout == layout and table.columns == ["id", "text"]
    assert [(row.lines, row.values, row.error) for row in table.rows] == [
        (str(content.count("\n")), {"id": "a", "text": "Hi."}, None)]


def test_a_line_that_cannot_be_read_as_the_header_says_is_reported_by_its_number(tmp_path):
    table = read_table(write(tmp_path / "m.csv", 'id,text\na,"unbalanced\nb,x\nc\nd,x,extra\ne,fine\n'))
    errors = {row.lines: row.error for row in table.rows}
    # it swallows the lines after it, up to the end of the file, which is what the error says
    assert errors["2-6"] == "lines 2-6: the file ends inside a quoted cell (a quote is unbalanced); fix the quoting"
    for content in ('id,text\na,"two\nlines"\nb,x\n', 'id,text\na,"two\nlines"'):  # closed, last or not
        table = read_table(write(tmp_path / "m.csv", content))
        assert table.rows[0].error.startswith("lines 2-3 are one record: a quoted cell holds a line break")
        assert all(row.error is None for row in table.rows[1:])
    table = read_table(write(tmp_path / "m.csv", 'id,text\na,"fine ""quoted"" text"\nb,"never closed'))
    assert table.rows[0].error is None  # a quote written twice inside a quoted cell is no open quote
    assert table.rows[1].error == "line 3: the file ends inside a quoted cell (a quote is unbalanced); fix the quoting"
    for name, header in (("m.csv", "id,text,text"), ("m.tsv", "id\ttext\ttext")):
        with pytest.raises(VallEValueError, match="names the column 'text' twice"):
            read_table(write(tmp_path / name, header + "\n" + header.replace("id", "a") + "\n"))
    table = read_table(write(tmp_path / "m.csv", "id,text\nc\nd,x,extra\ne,fine\n"))
    assert [row.error for row in table.rows] == ["line 2: 1 columns where the header has 2",
                                                 "line 3: 3 columns where the header has 2", None]
    table = read_table(write(tmp_path / "m.jsonl", '{"id": "a"}\n[1, 2]\n{"id": \n{"id": "b", "seed": 3}\n'))
    assert [row.error for row in table.rows][:3] == [None, "line 2: a JSON list, not an object with named fields",
                                                     "line 3: not JSON (Expecting value, column 8)"]
    assert table.rows[3].values == {"id": "b", "seed": 3} and table.columns == ["id", "seed"]  # JSON types kept


def test_an_unbalanced_quote_in_a_file_past_csvs_cell_limit_is_reported_by_its_lines(tmp_path):
    """csv stops at a cell longer than its limit (csv.Error, a traceback): a quote left open early in a large file
    makes such a cell of every line after it."""
    limit = csv.field_size_limit()
    row = f"b,{'x' * 99}\n"
    count = limit // len(row) + 2  # together longer than the limit
    table = read_table(write(tmp_path / "m.csv", 'id,text\na,"never closed\n' + row * count))
    assert [(found.lines, found.error is not None) for found in table.rows] == [(f"2-{2 + count}", True)]
    assert "a quote is unbalanced" in table.rows[0].error
    assert csv.field_size_limit() == limit  # the process-wide limit is put back


@pytest.mark.parametrize("name, header", [("m.csv", "id,text,prompt,"), ("m.tsv", "id\ttext\tprompt\t"),
                                          ("m.csv", ",id,text,prompt")])
def test_a_header_column_without_a_name_is_read_and_synthesis_names_it(tmp_path, name, header):
    """pandas' index column and a separator at the end of the header make a column named '': read (data preparation
    ignores it), and named readably where a message lists it (it showed as nothing)."""
    from valle_hf import synthesize

    table = read_table(write(tmp_path / name, header + "\n" + header.replace("id", "a") + "\n"))
    assert "" in table.columns and table.rows[0].values["id"] == "a"
    with pytest.raises(VallEValueError, match="unknown column\\(s\\) '' \\(a column without a name"):
        synthesize._check_columns(table, tmp_path / name)


def test_files_that_are_no_table_are_refused_in_one_line(tmp_path):
    with pytest.raises(VallEValueError, match="has no records"):
        read_table(write(tmp_path / "empty.csv", "\n\n"))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(VallEValueError, match="is not UTF-8 text"):
        read_table(tmp_path / "binary.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_table(tmp_path / "missing.csv")
    # a folder and a pipe (a shell's <(...)) were "not found (or not a file)"
    with pytest.raises(VallEValueError, match="is a folder: give the table file in it"):
        read_table(tmp_path)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(VallEValueError, match=r"is not a regular file \(a pipe or a device\): save the table"):
        read_table(tmp_path / "pipe.csv")


def test_a_table_that_cannot_be_read_is_refused_in_one_line(tmp_path, monkeypatch):
    """No read permission (root reads anything, so the refusal is simulated): a traceback ended the command."""
    path = write(tmp_path / "m.csv", "id,text,prompt\na,Hi.,a.wav\n")

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "open", refused)
    with pytest.raises(VallEValueError, match=f"could not read {path} .*Permission denied.*readable"):
        read_table(path)


@pytest.mark.parametrize("field", ["id", "text", "prompt", "key"])
def test_a_jsonl_escape_making_half_a_surrogate_pair_is_reported_by_its_line(tmp_path, field):
    """Such a string cannot be encoded: synthesis stopped on it with a traceback (as an id, a text, a file name)."""
    row = {"id": "a", "text": "Hi.", "prompt": "a.wav"}
    if field == "key":
        row["x\ud800"] = 1
    else:
        row[field] += "\udc80"
    lines = ['{"id": "ok", "text": "Fine.", "prompt": "a.wav"}', json.dumps(row)]  # ASCII: the escape as written
    table = read_table(write(tmp_path / "m.jsonl", "\n".join(lines) + "\n"))
    assert [row.error for row in table.rows][0] is None
    assert re.fullmatch(r"line 2: the escape \\u(d800|dc80) is half of a surrogate pair.*", table.rows[1].error)
    json.dumps(table.rows[1].values).encode("utf-8")  # what a report of the row holds can be written


@pytest.mark.parametrize("cut", ["partial", "no_newline"])
def test_a_jsonl_line_cut_by_a_crash_is_repaired_before_the_next_append(tmp_path, cut):
    path = tmp_path / "done.jsonl"
    for index in range(3):
        append_jsonl(path, {"id": f"r{index}", "text": "été"})
    content = path.read_bytes()
    path.write_bytes(content[:-10] if cut == "partial" else content[:-1])  # the crash: mid-record, or before "\n"
    assert [record["id"] for record in read_jsonl(path)] == ["r0", "r1"] + (["r2"] if cut == "no_newline" else [])
    repair_jsonl(path)
    append_jsonl(path, {"id": "r3"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["r0", "r1"] + (["r2"] if cut == "no_newline" else []) + ["r3"]


@pytest.mark.parametrize("last", ["[1, 2]", '"text"', "12"])
def test_a_last_line_of_json_that_is_no_object_is_cut_off_not_completed(tmp_path, last):
    """Only an object is a whole record: a number may be cut short ("12" of "123"), and a list or a string is no
    record at all, so the next append must not land after it."""
    path = tmp_path / "done.jsonl"
    path.write_bytes(b'{"id": "r0"}\n' + last.encode())
    repair_jsonl(path)
    assert path.read_bytes() == b'{"id": "r0"}\n'


def test_an_explicit_layout_is_read_whatever_the_name_and_first_line_say(tmp_path):
    """A tab-separated file named .txt, or a "|" in a CSV header: "auto" would guess csv and ljspeech."""
    tsv = read_table(write(tmp_path / "m.txt", "id\ttext\na\tOne, two.\n"), layout="tsv")
    assert tsv.layout == "tsv" and [row.values for row in tsv.rows] == [{"id": "a", "text": "One, two."}]
    csv_ = read_table(write(tmp_path / "m.txt", "id,te|xt\na,One.\n"), layout="csv")
    assert csv_.layout == "csv" and [row.values for row in csv_.rows] == [{"id": "a", "te|xt": "One."}]


def test_written_files_get_the_mode_of_a_plain_open(tmp_path):
    """Outputs are written under a temporary name (private to its owner) and renamed: they must still get the mode
    the umask gives, or a shared output folder would hold files only their writer can read."""
    umask = os.umask(0o022)
    os.umask(umask)
    write_jsonl(tmp_path / "records.jsonl", [{"id": "a"}])
    assert (tmp_path / "records.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_jsonl_file_is_written_whole_or_left_as_it_was(tmp_path):
    path = tmp_path / "failed.jsonl"
    write_jsonl(path, [{"id": "a"}, {"id": "b"}])
    write_jsonl(path, [{"id": "c", "text": "été"}])  # replaced, not appended to
    assert read_jsonl(path) == [{"id": "c", "text": "été"}]
    with pytest.raises(TypeError):  # a record that is not JSON: a bug, and the old file stays whole
        write_jsonl(path, [{"id": "d", "value": object()}])
    assert read_jsonl(path) == [{"id": "c", "text": "été"}] and [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(OutputError, match="could not write"):
        write_jsonl(tmp_path / "missing" / "failed.jsonl", [])


@pytest.mark.parametrize("marks", [1, 2])
@pytest.mark.parametrize("name, content", [("m.csv", "id,text\na,Hi.\n"), ("m.jsonl", '{"id": "a", "text": "Hi."}\n')])
def test_a_byte_order_mark_is_no_part_of_the_first_column(tmp_path, name, content, marks):
    """Spreadsheets save UTF-8 with a byte order mark: read as a character, the first column would be '\\ufeffid'. A
    tool that adds one to a file that had one leaves two."""
    path = tmp_path / name
    path.write_text("\ufeff" * (marks - 1) + content, encoding="utf-8-sig")
    table = read_table(path)
    assert table.columns == ["id", "text"] and table.rows[0].values == {"id": "a", "text": "Hi."}


def test_a_tsv_or_jsonl_name_in_capitals_picks_its_layout(tmp_path):
    tsv = read_table(write(tmp_path / "M.TSV", "id\ttext\na\tOne, two.\n"))
    assert [row.values for row in tsv.rows] == [{"id": "a", "text": "One, two."}]
    jsonl = read_table(write(tmp_path / "M.JSONL", '{"id": "a", "text": "One, two."}\n'))
    assert [row.values for row in jsonl.rows] == [{"id": "a", "text": "One, two."}]


def test_jsonl_records_are_objects_numbered_by_their_line(tmp_path):
    """Lines that hold no record are left out, with a warning naming them (what they held is lost to the reader),
    except a last line a crash cut short (no newline), which its writer writes again."""
    path = write(tmp_path / "done.jsonl", '{"id": "a"}\n[1, 2]\n"text"\n\n{"id": "b"}\n{"id": "c", "te\n')
    with logged_warnings() as logged:
        assert numbered_jsonl(path) == [(1, {"id": "a"}), (5, {"id": "b"})]
    assert f"{path}: line(s) 2, 3, 6 hold no JSON object" in logged.out, logged.out
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b"}]
    cut = write(tmp_path / "cut.jsonl", '{"id": "a"}\n{"id": "b", "te')
    with logged_warnings() as logged:
        assert read_jsonl(cut) == [{"id": "a"}]
    assert logged.out == "", logged.out


@pytest.mark.parametrize("delimiter, header", [
    (";", ["id", "text", "prompt"]), ("\t", ["id", "text", "prompt"]), (",", ["id", "text", "prompt;\tvoice"])])
def test_a_csv_whose_header_has_no_comma_is_split_at_its_semicolons_or_tabs(tmp_path, delimiter, header):
    # what a spreadsheet saves as "CSV" where the comma is the decimal mark: ';' between cells, quotes as in CSV
    lines = [header, ["a", f'She said "hi"{delimiter} then 2,5 more.', "a.wav"], ["b", "Plain.", "b.wav"]]
    path = tmp_path / "m.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file, delimiter=delimiter).writerows(lines)
    table = read_table(path)
    assert table.layout == "csv" and table.columns == lines[0]
    assert [row.values for row in table.rows] == [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert all(row.error is None for row in table.rows)


@pytest.mark.parametrize("delimiter", [",", "\t"], ids=["comma", "tab"])
def test_a_quote_csv_cannot_read_as_written_is_reported_and_one_inside_a_cell_is_text(tmp_path, delimiter):
    """csv dropped the quotes of a quoted cell with text after it ('"Hi," she said.' read as 'Hi, she said.', no
    error), which a tab-separated .csv whose quotes are text meets at once; and a quote inside a cell on the last line
    was reported as the file ending inside a quote. The tab-separated file's error offers the tsv layout."""
    header, *rows = [["id", "text"], ["a", '"Hi," she said.'], ["b", 'He said "hi'], ["c", '6" tall']]
    path = write(tmp_path / "m.csv", "\n".join(delimiter.join(line) for line in [header, *rows]))  # no last newline
    first, *rest = read_table(path).rows
    assert first.lines == "2" and first.error.startswith("line 2: a quoted cell goes on after its closing quote")
    assert ("rename the file .tsv or give the tsv format" in first.error) == (delimiter == "\t")
    assert [(row.values, row.error) for row in rest] == [(dict(zip(header, line, strict=True)), None)
                                                         for line in rows[1:]]
    if delimiter == "\t":  # the fix offered reads every row as written
        assert [row.values for row in read_table(path, "tsv").rows] == [dict(zip(header, line, strict=True))
                                                                     for line in rows]
    with pytest.raises(VallEValueError, match="^" + re.escape(f"{path}: the header, line 1: a quoted cell goes on")):
        read_table(write(path, f'"id" x{delimiter}text\na{delimiter}b\n'))


@pytest.mark.parametrize("name, delimiter", [("m.csv", ","), ("m.tsv", "\t"), ("m.txt", "|")])
def test_a_line_of_delimiters_only_is_a_row_of_empty_cells_and_a_blank_line_none(tmp_path, name, delimiter):
    """A spreadsheet's emptied row (",,") was skipped as a blank line: a row lost without a word."""
    lines = delimiter.join(["id", "text", "prompt"]), "a", "", " ", delimiter * 2, "b"
    table = read_table(write(tmp_path / name, "\n".join(lines) + "\n"))
    assert [(row.lines, row.values) for row in table.rows if row.lines == "5"] == [
        ("5", {"id": "", "text": "", "prompt": ""})]
    assert [row.lines for row in table.rows] == ["2", "5", "6"]

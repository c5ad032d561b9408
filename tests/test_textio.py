"""The input policy for text files: empty lines, invalid UTF-8, .gz, truncated .gz."""

from __future__ import annotations

import gzip

import pytest

from potstill.textio import InputError, read_lines

BAD_LINES = b"first line\n\xff\xfe not utf-8\n  third  \n"


def test_lines_are_stripped_and_empty_lines_skipped_and_counted(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("a cat\n\n   \n\tb dog \r\n\n\u00e9t\u00e9\n".encode())
    texts, stats = read_lines(f)
    assert texts == ["a cat", "b dog", "\u00e9t\u00e9"]
    assert stats.read == 3 and stats.skipped == {"empty": 3}
    assert stats.summary() == "3 texts, 3 skipped (empty)"


def test_invalid_utf8_names_the_file_and_line_and_the_fix(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(BAD_LINES)
    with pytest.raises(InputError) as e:
        read_lines(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:2: invalid UTF-8") and "--skip-invalid" in msg and "\n" not in msg


def test_skip_invalid_skips_and_counts(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(BAD_LINES + b"\n\xc3\n")
    texts, stats = read_lines(f, skip_invalid=True)
    assert texts == ["first line", "third"]
    assert stats.skipped == {"invalid UTF-8": 2, "empty": 1}
    assert stats.summary() == "2 texts, 1 skipped (empty), 2 skipped (invalid UTF-8)"


def test_gz_is_read_transparently(tmp_path):
    f = tmp_path / "t.txt.gz"
    lines = [f"sentence number {i}" for i in range(5000)]
    f.write_bytes(gzip.compress(("\n".join(lines) + "\n\n").encode()))
    texts, stats = read_lines(f)
    assert texts == lines and stats.skipped == {"empty": 1}
    g = tmp_path / "bad.gz"
    g.write_bytes(gzip.compress(BAD_LINES))
    with pytest.raises(InputError, match=r"bad\.gz:2: invalid UTF-8"):
        read_lines(g)


def test_a_truncated_gz_is_a_clear_error(tmp_path):
    data = gzip.compress(("\n".join(f"line {i} with some words" for i in range(20000)) + "\n").encode())
    f = tmp_path / "cut.txt.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_lines(f)
    assert str(e.value).startswith(f"cannot read {f}:")


def test_a_file_that_is_not_gzip_is_a_clear_error(tmp_path):
    f = tmp_path / "plain.gz"
    f.write_bytes(b"not gzip at all\n")
    with pytest.raises(InputError, match=r"cannot read .*plain\.gz: Not a gzipped file"):
        read_lines(f)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"nope\.txt does not exist"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a folder; pass a text file"):
        read_lines(tmp_path)

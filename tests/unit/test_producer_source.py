"""Reading data files: plain or gzip, header skipped, blank lines counted, exact line bytes."""

from __future__ import annotations

import gzip

import pytest

from services.producer.source import Line, LineSource, source_name
from shared.errors import StreamerError

TEXT = b"h1,h2\r\n1,a\r\n\r\n2,b\n   \n\n3,\xc3\xa9t\xc3\xa9\n4,d"


def read_all(source: LineSource) -> list[Line]:
    with source:
        return list(source)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("kddcup.data_10_percent.gz", "kddcup.data_10_percent"),
        ("/data/kdd-cup-99/kddcup.data_10_percent.gz", "kddcup.data_10_percent"),
        ("x.csv", "x"),
        ("data/x.csv.gz", "x"),
        ("multiclass_classification_kdd_cup_99.csv", "multiclass_classification_kdd_cup_99"),
        ("readings.TXT", "readings"),
        ("no_extension", "no_extension"),
        (".csv", ".csv"),
    ],
)
def test_source_name_drops_folder_and_extensions(path, name):
    assert source_name(path) == name


def test_lines_keep_their_physical_number_and_lose_only_their_line_ending(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(TEXT)
    source = LineSource(path)
    assert read_all(source) == [
        Line(1, b"h1,h2"),
        Line(2, b"1,a"),
        Line(4, b"2,b"),
        Line(7, "3,été".encode()),
        Line(8, b"4,d"),  # no newline at the end of the file
    ]
    assert source.blank_lines == 3
    assert source.invalid_utf8 == 0


def test_the_header_line_is_skipped_but_still_counted_in_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(TEXT)
    lines = read_all(LineSource(path, skip_header=True))
    assert [line.number for line in lines] == [2, 4, 7, 8]


def test_gzip_files_read_like_plain_ones_whatever_their_name(tmp_path):
    plain, packed, unnamed = tmp_path / "d.csv", tmp_path / "d.csv.gz", tmp_path / "d.bin"
    plain.write_bytes(TEXT)
    packed.write_bytes(gzip.compress(TEXT))
    unnamed.write_bytes(gzip.compress(TEXT))
    expected = read_all(LineSource(plain, skip_header=True))
    compressed = LineSource(packed, skip_header=True)
    assert compressed.compressed
    assert read_all(compressed) == expected
    assert compressed.blank_lines == 3
    assert read_all(LineSource(unnamed, skip_header=True)) == expected


def test_read_returns_chunks_and_progress_reaches_the_end(tmp_path):
    path = tmp_path / "d.csv.gz"
    rows = b"".join(b"%d,%d\n" % (i, i * 7919 % 100_003) for i in range(100_000))
    path.write_bytes(gzip.compress(rows))
    with LineSource(path) as source:
        fractions, sizes = [source.fraction_read()], []
        while chunk := source.read(30_000):
            sizes.append(len(chunk))
            fractions.append(source.fraction_read())
        assert sizes == [30_000, 30_000, 30_000, 10_000]
        assert fractions[0] < 0.5
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0


def test_a_utf8_bom_is_not_part_of_the_first_value(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfa,1\nb,2\n")
    assert read_all(LineSource(path)) == [Line(1, b"a,1"), Line(2, b"b,2")]


def test_lines_that_are_not_utf8_are_sent_as_they_are_and_counted(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"ok\n\xff\xfe bad\nok again\n")
    source = LineSource(path)
    assert [line.value for line in read_all(source)] == [b"ok", b"\xff\xfe bad", b"ok again"]
    assert source.invalid_utf8 == 1


def test_a_missing_file_fails_when_opened(tmp_path):
    with pytest.raises(FileNotFoundError):
        LineSource(tmp_path / "missing.csv")


def test_a_corrupt_gzip_fails_when_opened(tmp_path):
    path = tmp_path / "d.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(OSError, match="not a readable gzip file"):
        LineSource(path)


def test_a_truncated_gzip_gives_its_lines_then_a_clear_error(tmp_path):
    path = tmp_path / "d.gz"
    whole = gzip.compress(b"".join(b"%d,%s\n" % (i, b"x" * (i % 97)) for i in range(50_000)))
    path.write_bytes(whole[: len(whole) // 2])
    with LineSource(path) as source:
        seen = 0
        with pytest.raises(StreamerError, match=r"d\.gz: cannot read past line \d+"):
            for _ in source:
                seen += 1
        assert seen > 1_000


def test_the_file_is_streamed_not_loaded(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"x,1\n" * 2_000_000)  # 8 MB
    with LineSource(path) as source:
        source.read(10)
        assert source.fraction_read() < 0.05


@pytest.mark.parametrize("compress", [False, True])
def test_skip_through_passes_over_the_sent_lines_and_returns_the_last_one(tmp_path, compress):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(TEXT) if compress else TEXT)
    with LineSource(path, skip_header=True) as source:
        assert source.skip_through(4) == Line(4, b"2,b")
        assert list(source) == [Line(7, "3,été".encode()), Line(8, b"4,d")]


def test_skip_through_a_blank_line_returns_the_next_line_and_past_the_end_none(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(TEXT)
    with LineSource(path) as source:
        assert source.skip_through(5) == Line(7, "3,été".encode())  # 5 and 6 are blank
    with LineSource(path) as source:
        assert source.skip_through(9) is None

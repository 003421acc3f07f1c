"""Read a use case's data file line by line, plain or gzip, without loading it whole.

Lines keep their exact bytes (minus the line ending) so the value on the wire is the file's
text; the physical line number (header included) becomes the stable `record-id`.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NamedTuple

from shared.errors import StreamerError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
READ_BUFFER = 1 << 16
# Suffixes dropped from the file name to get the source name. Only known ones, so
# `kddcup.data_10_percent.gz` keeps its `.data_10_percent` (part of the name, not a format).
COMPRESSION_SUFFIXES = frozenset({".gz", ".gzip", ".bz2", ".xz", ".zst", ".zip"})
DATA_SUFFIXES = frozenset(
    {".csv", ".tsv", ".psv", ".txt", ".dat", ".data", ".json", ".jsonl", ".ndjson", ".log"}
)


class Line(NamedTuple):
    """One non-blank line: its 1-based physical number and its bytes without the line ending."""

    number: int
    value: bytes


def source_name(path: Path | str) -> str:
    """The data file's name without folder and extensions: the message key and record-id prefix.

    `kddcup.data_10_percent.gz` -> `kddcup.data_10_percent`, `x.csv.gz` -> `x`, `x.csv` -> `x`.
    """
    name = Path(path).name
    stem = name
    while True:
        suffix = Path(stem).suffix.lower()
        if suffix in COMPRESSION_SUFFIXES or suffix in DATA_SUFFIXES:
            stem = stem[: -len(suffix)]
        else:
            break
    return stem or name


class LineSource:
    """Streams the non-blank lines of a data file; counts what it skips; knows how far it is.

    Opening checks the file at once (exists, readable, valid gzip header) so a bad path fails
    before anything connects to Kafka. Gzip is detected from the magic bytes, whatever the name.
    """

    def __init__(self, path: Path, *, skip_header: bool = False) -> None:
        self.path = path
        self.skip_header = skip_header
        self.blank_lines = 0
        self.invalid_utf8 = 0
        # typeshed: open(..., "rb") is a BufferedReader, but a BinaryIO with buffering= n > 1
        self._raw: io.BufferedReader = open(path, "rb", buffering=READ_BUFFER)  # type: ignore[assignment]  # noqa: SIM115
        self.compressed = False
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            self.compressed = self._raw.peek(2)[:2] == GZIP_MAGIC
            self._file: io.BufferedReader = self._raw
            if self.compressed:
                gz = gzip.GzipFile(fileobj=self._raw, mode="rb")
                self._file = io.BufferedReader(gz, READ_BUFFER)
                self._file.peek(1)  # decompresses the first block: a corrupt gzip fails here
        except (OSError, EOFError, zlib.error) as error:
            self._raw.close()
            kind = "gzip file" if self.compressed else "file"
            raise OSError(f"not a readable {kind}: {error or type(error).__name__}") from error
        self._lines = self._read()

    def __iter__(self) -> Iterator[Line]:
        return self._lines

    def __next__(self) -> Line:
        return next(self._lines)

    def read(self, count: int) -> list[Line]:
        """Up to `count` lines; fewer only at the end of the file."""
        chunk: list[Line] = []
        for line in self._lines:
            chunk.append(line)
            if len(chunk) >= count:
                break
        return chunk

    def skip_through(self, number: int) -> Line | None:
        """Pass over the lines an earlier run sent, up to line `number`; return the first
        non-blank line numbered `number` or more (None: the file ends before). That line is
        consumed even when it is past `number`: the file then changed, and the caller stops."""
        for line in self._lines:
            if line.number >= number:
                return line
        return None

    def fraction_read(self) -> float:
        """How far through the file we are (0..1), by bytes of the file on disk.

        For gzip that is the compressed position: no extra pass over the file to count lines,
        and the compression ratio of a data file is even enough for a progress bar and an ETA.
        """
        if self.size <= 0 or self._raw.closed:
            return 1.0
        return min(1.0, self._raw.tell() / self.size)

    def close(self) -> None:
        self._lines.close()
        self._file.close()
        self._raw.close()

    def __enter__(self) -> LineSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> Generator[Line, None, None]:
        number = 0
        try:
            for raw in self._file:
                number += 1
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is not data
                    if self.skip_header:
                        continue
                value = raw.rstrip(b"\r\n")  # the hot loop: one C call, no helper
                if not value or value.isspace():
                    self.blank_lines += 1
                    continue
                if not value.isascii():
                    self._check_utf8(number, value)
                yield Line(number, value)
        except (OSError, EOFError, zlib.error) as error:
            raise StreamerError(
                f"{self.path}: cannot read past line {number}: {error or type(error).__name__}"
            ) from error

    def _check_utf8(self, number: int, value: bytes) -> None:
        """Count (and warn once about) lines that are not UTF-8: sent as is, the launcher's
        record class rejects them into the dead-letter topic with the reason."""
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as error:
            self.invalid_utf8 += 1
            if self.invalid_utf8 == 1:
                log.warning(
                    "line is not valid UTF-8; sent unchanged, further ones only counted",
                    extra={"file": str(self.path), "line": number, "error": str(error)},
                )

"""Find a use case's record class: `<problem.type>Record` in the use-case folder's records.py,
else among the built-ins (the original looked only in its own package)."""

from __future__ import annotations

import gzip
import inspect
from pathlib import Path

from shared.config import UseCase
from shared.errors import StreamerError
from shared.records import builtin
from shared.records.base import TimeRecord
from shared.usercode import load_usecase_module


def record_class_for(usecase: UseCase) -> type[TimeRecord]:
    """The record class of a use case, with its column names bound from the data file's header
    when the class has none of its own and `containsHeader=true`."""
    name = f"{usecase.streaming.problem_type}Record"
    record_class = _from_usecase_folder(usecase.folder, name) or getattr(builtin, name, None)
    if not (inspect.isclass(record_class) and issubclass(record_class, TimeRecord)):
        raise StreamerError(
            f"{usecase.name}: problem.type={usecase.streaming.problem_type}: no record class "
            f"{name} in {usecase.folder / 'records.py'} nor among the built-ins"
        )
    datafile = usecase.streaming.datafile
    if not record_class.headers and usecase.streaming.contains_header and datafile:
        headers = read_header(datafile, record_class.separator)
        record_class = type(name, (record_class,), {"headers": headers, "__slots__": ()})
    return record_class


def read_header(datafile: Path, separator: str) -> tuple[str, ...]:
    opener = gzip.open if datafile.suffix == ".gz" else open
    try:
        with opener(datafile, "rt", encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError as error:
        raise StreamerError(f"cannot read the header of {datafile}: {error}") from error
    return tuple(column.strip() for column in first.strip().split(separator))


def _from_usecase_folder(folder: Path, class_name: str) -> type | None:
    path = folder / "records.py"
    if not path.is_file():
        return None
    return getattr(load_usecase_module(path), class_name, None)

"""Pre/post-processors: a use case's hook on each batch, before the model and after it.

`consumer.prepostprocessor=MyProcessor` names a class in the use-case folder's
prepostprocessors.py (or a built-in); the original looked only in its own package.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.config import UseCase
from shared.errors import StreamerError
from shared.records.base import TimeRecord
from shared.usercode import load_usecase_module


class PrePostProcessor:
    """Identity processor; subclasses override either step. Runs in the launcher's worker."""

    def preprocess(self, records: Sequence[TimeRecord]) -> Sequence[TimeRecord]:
        return records

    def postprocess(self, records: Sequence[TimeRecord]) -> Sequence[TimeRecord]:
        return records


def processor_for(usecase: UseCase) -> PrePostProcessor | None:
    name = usecase.streaming.prepostprocessor
    if not name:
        return None
    if name == PrePostProcessor.__name__:
        return PrePostProcessor()
    path = usecase.folder / "prepostprocessors.py"
    found = None
    if path.is_file():
        found = getattr(load_usecase_module(path), name, None)
    if found is None:
        raise StreamerError(
            f"{usecase.name}: consumer.prepostprocessor={name}: no such class in {path} "
            "nor among the built-ins (PrePostProcessor)"
        )
    processor: PrePostProcessor = found()
    return processor

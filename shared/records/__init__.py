"""Records: raw lines parsed into typed values and targets."""

from shared.records.base import RecordError, TimeRecord
from shared.records.builtin import GenericRecord, KDDClassificationRecord
from shared.records.registry import record_class_for

__all__ = [
    "GenericRecord",
    "KDDClassificationRecord",
    "RecordError",
    "TimeRecord",
    "record_class_for",
]

"""Record classes that ship with STREAMER, found by `problem.type` + "Record"."""

from __future__ import annotations

from typing import ClassVar

from shared.records.base import RecordError, TimeRecord

KDD_COLUMNS = [
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
    "label",
]


class GenericRecord(TimeRecord):
    """A delimited line whose column names come from the data file's header row.

    The launcher binds `headers` from the header line of `datafile` (containsHeader=true);
    a column named `label`, `target` or `class` becomes the target.
    """

    target_columns: ClassVar[tuple[str, ...]] = ("label", "target", "class")


class KDDClassificationRecord(TimeRecord):
    """A raw KDD Cup 1999 line: 41 features (3 categorical) and the label.

    The label's trailing dot is dropped (`smurf.` -> `smurf`). Unlike the original, the
    timestamp is not `now()`: the event time is the Kafka record's, set once by the producer.
    """

    headers: ClassVar[tuple[str, ...]] = tuple(KDD_COLUMNS)
    categorical: ClassVar[frozenset[str]] = frozenset({"protocol_type", "service", "flag"})
    target_columns: ClassVar[tuple[str, ...]] = ("label",)

    def fill(self, line: str) -> None:
        super().fill(line)
        if not self.targets:
            return  # no label yet: it arrives later (labelTopic)
        self.targets[0] = self.label_of(self.targets[0])

    @staticmethod
    def label_of(text: str) -> str:
        """The class of a label field as the file has it (`smurf.` -> `smurf`)."""
        label = text.removesuffix(".")
        if not label:
            raise RecordError("label: empty")
        return label

"""Record classes: typed values, targets, located errors, lookup by problem.type."""

from __future__ import annotations

import gzip

import pytest

from shared.config import ConnectionSettings, load_usecase
from shared.errors import StreamerError
from shared.records import GenericRecord, KDDClassificationRecord, RecordError, record_class_for

KDD_LINE = (
    "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,"
    "0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,smurf."
)


def test_kdd_line_has_categories_as_strings_numbers_as_floats_and_the_label_as_target():
    record = KDDClassificationRecord.parse(KDD_LINE + "\n", source="kdd")
    assert record.source == "kdd"
    assert record.values["protocol_type"] == "tcp" and record.values["flag"] == "SF"
    assert record.values["src_bytes"] == 181.0 and record.values["dst_host_count"] == 9.0
    assert len(record.values) == 41 and "label" not in record.values
    assert record.targets == ["smurf"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty line"),
        ("   ", "empty line"),
        ("1,2", "expected 42 fields, got 2"),
        (KDD_LINE.replace("5450", "12x"), "dst_bytes: not a number: '12x'"),
        (KDD_LINE.replace("5450", "nan"), "dst_bytes: not a finite number: 'nan'"),
        (KDD_LINE.replace("smurf.", "."), "label: empty"),
    ],
)
def test_bad_kdd_lines_say_why(line, reason):
    with pytest.raises(RecordError) as error:
        KDDClassificationRecord.parse(line)
    assert str(error.value) == reason


def usecase_on(tmp_path, datafile, problem_type="Generic", header=True):
    (tmp_path / "streaming.props").write_text(
        f"mainTopic=t\noutputTopic=o\nproblem.type={problem_type}\ndatafile={datafile}\n"
        f"containsHeader={'true' if header else 'false'}\n"
    )
    (tmp_path / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\n")
    return load_usecase(tmp_path, ConnectionSettings())


def test_generic_record_takes_its_column_names_from_the_header(tmp_path):
    data = tmp_path / "d.csv.gz"
    with gzip.open(data, "wt") as out:
        out.write("a,b,colour,label\n1,2.5,red,yes\n")
    record_class = record_class_for(usecase_on(tmp_path, data))
    assert issubclass(record_class, GenericRecord)
    assert record_class.headers == ("a", "b", "colour", "label")
    with pytest.raises(RecordError, match="colour: not a number: 'red'"):
        record_class.parse("1,2.5,red,yes")


def test_generic_record_without_header_names_values_by_position(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("1,2\n")
    record = record_class_for(usecase_on(tmp_path, data, header=False)).parse("1,2")
    assert record.values == {"value1": 1.0, "value2": 2.0} and record.targets == []


def test_a_records_py_in_the_usecase_folder_wins_over_builtins(tmp_path):
    (tmp_path / "records.py").write_text(
        "from shared.records import TimeRecord\n"
        "class SensorRecord(TimeRecord):\n"
        "    separator = ';'\n"
        "    headers = ('t', 'v', 'label')\n"
        "    target_columns = ('label',)\n"
    )
    record_class = record_class_for(usecase_on(tmp_path, tmp_path / "x", "Sensor", header=False))
    record = record_class.parse("1;2;ok")
    assert record.values == {"t": 1.0, "v": 2.0} and record.targets == ["ok"]


def test_unknown_problem_type_names_where_it_looked(tmp_path):
    with pytest.raises(StreamerError, match=r"no record class NopeRecord in .*records\.py"):
        record_class_for(usecase_on(tmp_path, tmp_path / "x", "Nope", header=False))

import pytest

from shared.clients.line_protocol import encode_field, encode_point


def test_point_escapes_measurement_tags_and_types_fields():
    line = encode_point(
        "kdd cup", {"z": "x=1", "source": "a b,c"}, {"f": 1.5, "n": 3, "s": 'q"\\', "b": True}, 42
    )
    assert line == 'kdd\\ cup,source=a\\ b\\,c,z=x\\=1 f=1.5,n=3i,s="q\\"\\\\",b=true 42'


def test_non_finite_floats_are_left_out_and_an_empty_point_is_refused():
    assert encode_field(float("nan")) is None
    assert encode_point("m", {}, {"a": float("inf"), "b": 2.0}, 1) == "m b=2.0 1"
    with pytest.raises(ValueError, match="no encodable field"):
        encode_point("m", {}, {"a": float("nan")}, 1)


def test_empty_tag_values_are_dropped():
    assert encode_point("m", {"source": ""}, {"a": 1}, 5) == "m a=1i 5"


def test_string_fields_are_escaped_only_where_they_need_it():
    line = "0,tcp,http,SF,181,normal."
    assert encode_field(line) == f'"{line}"'  # the common case: nothing to escape
    assert encode_field('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert encode_field("") == '""'

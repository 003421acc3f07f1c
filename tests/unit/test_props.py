from pathlib import Path

from shared.config.props import parse_props_text

FILE = Path("x.props")


def parse(text: str) -> dict[str, tuple[str, int]]:
    return {key: (e.value, e.line) for key, e in parse_props_text(text, FILE).items()}


def test_separators_comments_and_line_numbers():
    text = "# comment\n! other comment\n\na=1\nb : two words \nc 3\nd=\n"
    assert parse(text) == {"a": ("1", 4), "b": ("two words", 5), "c": ("3", 6), "d": ("", 7)}


def test_continuation_lines_join_and_keep_the_first_line_number():
    text = "x=1\nmetrics=a,\\\n    b,\\\n    c\ny=2\n"
    assert parse(text) == {"x": ("1", 1), "metrics": ("a,b,c", 2), "y": ("2", 5)}


def test_escapes_in_keys_and_values():
    text = "key\\ with\\ space=tab\\there\nunicode=\\u00e9t\\u00e9\nbackslash=a\\\\b\n"
    assert parse(text) == {
        "key with space": ("tab\there", 1),
        "unicode": ("été", 2),
        "backslash": ("a\\b", 3),
    }


def test_repeated_key_keeps_the_last_value_like_java():
    assert parse("producerType=BLOCK\nproducerType=TIMESTAMP\n") == {
        "producerType": ("TIMESTAMP", 2)
    }


def test_value_may_contain_separators():
    assert parse("url=http://host:9200/x=y\n") == {"url": ("http://host:9200/x=y", 1)}

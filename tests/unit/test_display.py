"""What a person is shown (plugin/display.py): printable text as it is, everything else as an
escape a terminal does not act on."""

import pytest

from plugin.display import safe


@pytest.mark.parametrize("text", ["net1", "ünïcødé name", "a b", "", "0000:01:00.0"])
def test_printable_text_is_shown_as_it_is(text):
    assert safe(text) == text


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b]52;c;AAAA\x07", "\\x1b]52;c;AAAA\\x07"),     # OSC 52: the admin's clipboard
    ("a\u202eb", "a\\u202eb"),                          # bidi override
    ("a\nb\tc", "a\\x0ab\\x09c"),
    ("x\u2028y", "x\\u2028y"),                          # line separator
    (b"n\xffx".decode("utf-8", "surrogateescape"), "n\\xffx"),  # a name that is not UTF-8
    ("\U000e0001", "\\U000e0001"),                      # a format character past the BMP
])
def test_what_is_not_printable_is_escaped(text, shown):
    assert safe(text) == shown
    assert safe(text).isprintable()

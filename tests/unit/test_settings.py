"""TTD_CORS_ORIGINS: a comma-separated list of origins written as browsers send them; any
other value is refused at start, naming the variable and how to write it."""
from typing import Optional, Tuple

import pytest

from pipeline.settings import SettingsError, read_settings


@pytest.mark.parametrize("value, origins", [
    (None, ()),
    ("", ()),
    ("  ", ()),
    ("https://ui.example.com", ("https://ui.example.com",)),
    (" https://ui.example.com , http://localhost:3000",
     ("https://ui.example.com", "http://localhost:3000")),
    ("http://127.0.0.1:8080,http://[::1]:8080", ("http://127.0.0.1:8080", "http://[::1]:8080")),
    ("https://xn--bcher-kva.example", ("https://xn--bcher-kva.example",)),
])
def test_the_allowed_origins_are_read_from_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, value: Optional[str], origins: Tuple[str, ...]
) -> None:
    monkeypatch.delenv("TTD_CORS_ORIGINS", raising=False)
    if value is not None:
        monkeypatch.setenv("TTD_CORS_ORIGINS", value)
    assert read_settings().cors_origins == origins


@pytest.mark.parametrize("value, hint", [
    ("https://ui.example.com/", "write 'https://ui.example.com'"),
    ("https://UI.Example.com", "write 'https://ui.example.com'"),
    ("https://ui.example.com:443", "write 'https://ui.example.com'"),
    ("http://ui.example.com:80", "write 'http://ui.example.com'"),
    ("https://ui.example.com,http://localhost:3000/", "write 'http://localhost:3000'"),
    ("https://ui.example.com/app", "no path"),
    ("ui.example.com", "scheme://host[:port]"),
    ("ftp://ui.example.com", "http or https"),
    ("https://user@ui.example.com", "scheme://host[:port]"),
    ("https://ui.example.com:port", "scheme://host[:port]"),
    ("https://bücher.example", "scheme://host[:port]"),
    ("null", "scheme://host[:port]"),
    ('["https://ui.example.com"]', "scheme://host[:port]"),  # not JSON: a list of origins
    ("https://ui.example.com,,http://localhost:3000", "an empty origin"),
    ("https://ui.example.com,", "an empty origin"),
    ("*", "any web page"),
])
def test_a_value_no_browser_origin_can_match_is_refused_naming_the_variable_and_the_form(
    monkeypatch: pytest.MonkeyPatch, value: str, hint: str
) -> None:
    monkeypatch.setenv("TTD_CORS_ORIGINS", value)
    with pytest.raises(SettingsError) as raised:
        read_settings()
    message = str(raised.value)
    assert message.startswith("bad environment variable: TTD_CORS_ORIGINS=")
    assert hint in message and "\n" not in message

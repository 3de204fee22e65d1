"""Set one variable of the request's environment for a unit test (plugin/settings.py): what
`monkeypatch.setenv` did before modules stopped reading os.environ. Undone after the test."""

from plugin import settings


def use_env(monkeypatch, name: str, value: str | None) -> None:
    """value None: the variable unset."""
    monkeypatch.setattr(settings, "_current", settings.current().replace(**{name: value}))

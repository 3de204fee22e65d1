"""The simulated node of tests/integration (same fixtures), for the trust-boundary suite."""

import importlib.util
import pathlib

import pytest

from plugin import node as shell

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", pathlib.Path(__file__).parent.parent / "integration" / "conftest.py")
assert _spec and _spec.loader
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)

node = _integration.node
pod = _integration.pod
untouched = _integration.untouched
node_state = _integration.node_state


@pytest.fixture
def fresh_shell():
    """This process's command shell, new before and discarded after (a desynced one must not
    answer the next test)."""
    shell.discard()
    yield
    shell.discard()

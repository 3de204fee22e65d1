"""The simulated node of tests/integration (same fixtures), for the trust-boundary suite."""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", pathlib.Path(__file__).parent.parent / "integration" / "conftest.py")
assert _spec and _spec.loader
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)

node = _integration.node
pod = _integration.pod
untouched = _integration.untouched
node_state = _integration.node_state

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    """Options of the node-targeted suite (tests/e2e); --hosts comes from testinfra."""
    parser.addoption("--plugin", default=os.environ.get(
        "AMD_HOST_DEVICE_PLUGIN", os.path.join(ROOT, ".venv", "bin", "amd-host-device")),
        help="the plugin's path on the node")
    parser.addoption("--cni-path", default="/opt/cni/bin:/usr/lib/cni",
                     help="CNI_PATH on the node (where host-device, static and sbr are)")
    parser.addoption("--daemon", action="store_true",
                     help="run `amd-host-device daemon` on the node: every call goes through it")


@pytest.fixture(autouse=True)
def _request_settings_restored():
    """A test that runs the entry in process (main.main) installs its request's settings
    (plugin/settings.py); the next test starts from what was there before."""
    from plugin import settings

    saved = settings.current()
    yield
    settings.use(saved)

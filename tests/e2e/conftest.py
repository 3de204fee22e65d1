"""Options for the node-targeted suite. Run it with testinfra's --hosts:

    pytest tests/e2e --hosts=local://                          (a simulated node here)
    pytest tests/e2e --hosts=podman://NODE --plugin=... --cni-path=...
    pytest tests/e2e --hosts=docker://kind-worker --plugin=/opt/cni/bin/amd-host-device
"""

import pytest
from nodeenv import NodeEnv


@pytest.fixture
def node(host, request):
    env = NodeEnv(host, request.config.getoption("--plugin"),
                  request.config.getoption("--cni-path"))
    try:
        yield env.setup(nics=2)
    finally:
        env.teardown()

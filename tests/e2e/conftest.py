"""Options for the node-targeted suite. Run it with testinfra's --hosts:

    pytest tests/e2e --hosts=local://                          (a simulated node here)
    pytest tests/e2e --hosts=podman://NODE --plugin=... --cni-path=... [--daemon]
    pytest tests/e2e --hosts=docker://kind-worker --plugin=/opt/cni/bin/amd-host-device
"""

import pytest

from tests.support.nodeenv import NodeEnv


@pytest.fixture
def node(host, request):
    env = NodeEnv(host, request.config.getoption("--plugin"),
                  request.config.getoption("--cni-path"),
                  daemon=request.config.getoption("--daemon"))
    try:
        yield env.setup(nics=2)
        if env.daemon:   # it served the test's calls and is still up
            assert env.daemon_alive(), env.daemon_log()[-2000:]
    finally:
        env.teardown()

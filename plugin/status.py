"""STATUS (CNI 1.1): can ADD be served right now?"""

from __future__ import annotations

import os

from plugin import backend, delegate
from plugin.cni import Env
from plugin.config import NetConf
from plugin.errors import NOT_AVAILABLE, CniError
from plugin.state import StateStore

TYPE_CHECKING = False

def status(node: backend.Node, env: Env, conf: NetConf) -> None:
    """Can ADD be served: delegate present, state dir writable, iproute2 present."""
    state_dir = conf.state_dir
    delegate.find(env.path)
    try:
        StateStore(state_dir).ensure()
        # An unpredictable name, created O_EXCL without following links: a name planted in
        # advance (a symlink to a node file) can neither be truncated nor make us wait.
        probe = os.path.join(state_dir, f".status.{os.urandom(16).hex()}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.unlink(probe)
    except CniError as e:
        raise CniError(NOT_AVAILABLE, f"state dir {state_dir} is not usable: {e.msg}",
                       e.details) from None
    except OSError as e:
        raise CniError(NOT_AVAILABLE, f"state dir {state_dir} is not writable: "
                       f"{e.strerror}") from None
    try:
        backend.run(node, ["ip", "-V"])
    except backend.CommandFailed as e:
        raise CniError(NOT_AVAILABLE, "iproute2 `ip` is not usable", str(e)) from None

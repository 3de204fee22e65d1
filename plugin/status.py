"""STATUS (CNI 1.1): can ADD be served right now?"""

from __future__ import annotations

import os

from plugin import backend, delegate
from plugin.cni import Env
from plugin.config import NetConf
from plugin.errors import NOT_AVAILABLE, CniError


def status(env: Env, conf: NetConf) -> None:
    """Can ADD be served: delegate present, state dir writable, iproute2 present."""
    state_dir = conf.state_dir
    delegate.find(env.path)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        probe = os.path.join(state_dir, f".status.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise CniError(NOT_AVAILABLE, f"state dir {state_dir} is not writable: "
                       f"{e.strerror}") from None
    try:
        backend.run(["ip", "-V"])
    except backend.CommandFailed as e:
        raise CniError(NOT_AVAILABLE, "iproute2 `ip` is not usable", str(e)) from None

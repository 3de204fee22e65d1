"""The CNI error object, and the spec's codes.

Kept free of heavy imports: every path, VERSION included, may need to raise one.
"""

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
# Plugin-specific (100+): the delegate or a network command failed.
DELEGATE_FAILED = 100
NETWORK_COMMAND_FAILED = 101
CHECK_FAILED = 102
DEVICE_IN_USE = 103
# Running in another root than the node's (Multus thick without chrootDir) and unable to get
# there (plugin/noderoot.py).
NODE_ROOT_UNREACHABLE = 104
# What Go's libcni reports for "internal"; used only for bugs we did not foresee.
INTERNAL = 999


class CniError(Exception):
    """An error the runtime must see as a CNI error object on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, object]:
        """The runtime shows msg and details to people (events, `kubectl describe`): made
        safe there (plugin/display.py)."""
        from plugin.display import safe

        return {"cniVersion": cni_version, "code": self.code, "msg": safe(self.msg),
                "details": safe(self.details)}


class NotOnNode(CniError):
    """The PCI function exists but has no netdev on the node: it may be in a pod (ADD then
    asks the state store who holds it)."""


def exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM's handler while a request runs: the runtime's timeout kill becomes an
    exception (SystemExit), so ADD still rolls back. Here because every entry imports this
    module anyway (the executable, the daemon's request children)."""
    raise SystemExit(128 + signum)

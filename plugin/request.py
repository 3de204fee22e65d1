"""One CNI request, as a value: `answer(Request(env, stdin))` -> `Reply(code, stdout)`.

Both transports build one: the executable (plugin/main.py) from its own environment and stdin,
the daemon's request child (plugin/daemon.py) from what the shim forwarded. Nothing below
reads os.environ or writes stdout: the request's environment is read here, once, into
plugin/settings.py and cni.Env; the result comes back as bytes for the transport to write.
Whatever goes wrong, the reply is a CNI error object, never a traceback.
"""

from __future__ import annotations

import time

from plugin import NEWEST_CNI_VERSION, settings
from plugin.errors import INTERNAL, INVALID_ENV, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Request:
    """The runtime's environment (CNI_* and our overrides) and stdin; `started` is when the
    process that serves it started (the profile's first bucket)."""

    __slots__ = ("env", "started", "stdin")

    def __init__(self, env: Mapping[str, str], stdin: bytes, started: float = 0.0) -> None:
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "stdin", stdin)
        object.__setattr__(self, "started", started or time.perf_counter())

    env: Mapping[str, str]
    stdin: bytes
    started: float

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Request.{name} is read-only")

    @property
    def command(self) -> str:
        return self.env.get("CNI_COMMAND", "")


class Reply:
    """The exit code and the bytes for stdout (b"" for none)."""

    __slots__ = ("code", "stdout")

    def __init__(self, code: int, stdout: bytes) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "stdout", stdout)

    code: int
    stdout: bytes

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reply.{name} is read-only")


def error_version(stdin: bytes) -> str:
    """Answer errors in the caller's version when it is one we speak."""
    import json

    from plugin import CNI_VERSIONS

    try:
        asked = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError, RecursionError):
        return NEWEST_CNI_VERSION
    return asked if asked in CNI_VERSIONS else NEWEST_CNI_VERSION


def encode(obj: dict[str, object]) -> bytes:
    import json  # not at the top: the shim's path to the daemon needs no json (~3 ms, with re)

    return (json.dumps(obj) + "\n").encode()


def refusal(error: CniError, stdin: bytes) -> Reply:
    """An error found before the request ran: logged, and answered in the caller's version."""
    log_failure(f"{error.msg} (code {error.code})")
    return Reply(1, encode(error.to_dict(error_version(stdin))))


def answer(request: Request) -> Reply:
    """Run one request. The daemon's children call this too: one code path, two transports."""
    settings.use(settings.Settings(request.env))
    try:
        result = _profiled(request)
    except CniError as e:
        return refusal(e, request.stdin)
    except Exception as e:  # a bug: still an error object, and one log line to find it by
        log_failure(f"internal error: {type(e).__name__}: {e}")
        return Reply(1, encode(CniError(INTERNAL, f"internal error: {type(e).__name__}",
                                        str(e)[:300]).to_dict(error_version(request.stdin))))
    return Reply(0, b"" if result is None else encode(result))


def _profiled(request: Request) -> dict[str, object] | None:
    import sys

    try:
        return dispatch(request)
    finally:
        if "plugin.profile" in sys.modules:
            sys.modules["plugin.profile"].dump(time.perf_counter() - request.started)


def dispatch(request: Request) -> dict[str, object] | None:
    """Each command imports only its own handler: every import is paid at every pod start."""
    began = time.perf_counter()
    from plugin import log, policy, profile
    from plugin.cni import parse_env
    from plugin.config import decode, parse_netconf

    command = request.command
    node_policy = policy.load(request.env)
    # First, so that a refused request is in the admin's log file too.
    log.to_file(node_policy.log_file, node_policy.log_file_max_bytes)
    env = parse_env(request.env)
    log.bind(cmd=command, pod=log.pod_of(env.args), container=env.container_id[:12],
             ifname=env.ifname)
    raw = decode(request.stdin)
    # DEL and GC act on records: today's policy gates new work only (plugin/config.py).
    conf = parse_netconf(raw, node_policy, new_work=command not in ("DEL", "GC"))
    profile.add("start to main()", began - request.started)
    from plugin.node import Node

    node = Node()   # the one this request's commands and delegate run through
    match command:
        case "ADD":
            from plugin import add

            profile.add("imports (plugin modules)", time.perf_counter() - began)
            return add.add(node, env, conf).to_dict(conf.cni_version)
        case "DEL":
            from plugin import delete

            profile.add("imports (plugin modules)", time.perf_counter() - began)
            delete.delete(node, env, conf)
        case "CHECK":
            from plugin import check

            check.check(node, env, conf)
        case "STATUS":
            from plugin import status

            status.status(node, env, conf)
        case "GC":
            from plugin import gc

            gc.gc(node, env, conf, raw)
        case _:  # parse_env refuses any other command first; VERSION never gets here
            raise CniError(INVALID_ENV, f"CNI_COMMAND: {command!r} is not dispatched here")
    return None


def preload() -> None:
    """What `dispatch` would import on a request's way (the daemon does it once, before it
    forks): the handlers and what they stand on."""
    from plugin import add, check, config, delete, gc, policy, status  # noqa: F401


def log_failure(msg: str) -> None:
    from plugin import log

    log.error(msg)

"""Entry point: read the runtime's request, dispatch it, answer on stdout.

VERSION is answered before anything heavy is imported (it is what runtimes probe most often).
Whatever goes wrong, the runtime gets a CNI error object, never a traceback.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

# `_signal`, not `signal`: the wrapper's enums import functools and collections (~3 ms at every
# start, VERSION included) for names we do not use.
import _signal  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from plugin import CNI_VERSIONS, NEWEST_CNI_VERSION  # noqa: E402
from plugin.errors import DECODE_FAILURE, INTERNAL, INVALID_ENV, CniError  # noqa: E402


def _reply(obj: dict[str, object]) -> None:
    import json  # not at the top: the shim's path to the daemon needs no json (~3 ms, with re)

    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _answer_version(stdin: bytes) -> None:
    from plugin.shim import version_reply

    sys.stdout.buffer.write(version_reply(stdin, CNI_VERSIONS))


def _error_version(stdin: bytes) -> str:
    """Answer errors in the caller's version when it is one we speak."""
    import json

    try:
        asked = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError, RecursionError):
        return NEWEST_CNI_VERSION
    return asked if asked in CNI_VERSIONS else NEWEST_CNI_VERSION


def _on_sigterm(signum: int, _frame: object) -> None:
    # Turn the runtime's timeout kill into an exception, so ADD still rolls back.
    raise SystemExit(128 + signum)


def dispatch(command: str, stdin: bytes) -> dict[str, object] | None:
    """Each command imports only its own handler: every import is paid at every pod start."""
    began = time.perf_counter()
    from plugin import log, policy, profile
    from plugin.cni import parse_env
    from plugin.config import decode, parse_netconf

    node_policy = policy.load()
    # First, so that a refused request is in the admin's log file too.
    log.to_file(node_policy.log_file, node_policy.log_file_max_bytes)
    env = parse_env(os.environ)
    log.bind(cmd=command, pod=log.pod_of(env.args), container=env.container_id[:12],
             ifname=env.ifname)
    raw = decode(stdin)
    conf = parse_netconf(raw, node_policy)
    profile.add("start to main()", began - _STARTED)
    match command:
        case "ADD":
            from plugin import add

            profile.add("imports (plugin modules)", time.perf_counter() - began)
            return add.add(env, conf).to_dict(conf.cni_version)
        case "DEL":
            from plugin import delete

            profile.add("imports (plugin modules)", time.perf_counter() - began)
            delete.delete(env, conf)
        case "CHECK":
            from plugin import check

            check.check(env, conf)
        case "STATUS":
            from plugin import status

            status.status(env, conf)
        case "GC":
            from plugin import gc

            gc.gc(env, conf, raw)
        case _:  # parse_env refuses any other command first; VERSION never gets here
            raise CniError(INVALID_ENV, f"CNI_COMMAND: {command!r} is not dispatched here")
    return None


def main() -> int:
    _signal.signal(_signal.SIGTERM, _on_sigterm)
    if sys.argv[1:2] == ["reconcile"]:
        from plugin import reconcile

        return reconcile.reconcile_main(sys.argv[2:])
    if sys.argv[1:2] == ["daemon"]:
        from plugin import daemon

        return daemon.main(sys.argv[2:])
    command = os.environ.get("CNI_COMMAND", "")
    if not command:  # a person at a shell, not a runtime: the about text, list, doctor
        from plugin import cli

        return cli.main(sys.argv[1:])
    if command != "VERSION":
        # Before stdin, policy, state or the daemon's socket: in the node's root, or re-exec'd
        # there (stdin still unread), or an error that says what to change.
        from plugin import noderoot

        try:
            noderoot.ensure(command)
        except CniError as e:
            return _refuse(e)
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as e:
        _reply(CniError(DECODE_FAILURE, f"cannot read stdin: {e}").to_dict(NEWEST_CNI_VERSION))
        return 1
    if command == "VERSION":
        _answer_version(stdin)
        return 0
    # Thick mode: a resident daemon on this node serves the request when it takes it; when
    # there is none (or it is down), the request runs here, in process.
    from plugin import shim

    forwarded = shim.forward(os.environ, stdin)
    if isinstance(forwarded, CniError):
        return _refuse(forwarded, stdin)
    if forwarded is not None:
        sys.stdout.buffer.write(forwarded[1])
        return forwarded[0]
    code, reply = answer(command, stdin)
    if reply is not None:
        _reply(reply)
    return code


def _refuse(error: CniError, stdin: bytes | None = None) -> int:
    """Log and answer an error found before the request ran (stdin is read here if it was not
    yet: the error speaks the caller's version)."""
    if stdin is None:
        try:
            stdin = sys.stdin.buffer.read()
        except OSError:
            stdin = b""
    _log_failure(f"{error.msg} (code {error.code})")
    _reply(error.to_dict(_error_version(stdin)))
    return 1


def answer(command: str, stdin: bytes) -> tuple[int, dict[str, object] | None]:
    """Run one request: (exit code, the object for stdout). The daemon's children call this
    too: one code path, two transports."""
    try:
        result = _profiled(command, stdin)
    except CniError as e:
        _log_failure(f"{e.msg} (code {e.code})")
        return 1, e.to_dict(_error_version(stdin))
    except Exception as e:  # a bug: still an error object, and one log line to find it by
        _log_failure(f"internal error: {type(e).__name__}: {e}")
        return 1, CniError(INTERNAL, f"internal error: {type(e).__name__}",
                           str(e)[:300]).to_dict(_error_version(stdin))
    return 0, result


def _profiled(command: str, stdin: bytes) -> dict[str, object] | None:
    try:
        return dispatch(command, stdin)
    finally:
        if "plugin.profile" in sys.modules:
            sys.modules["plugin.profile"].dump(time.perf_counter() - _STARTED)


def _log_failure(msg: str) -> None:
    from plugin import log

    log.error(msg)


def run() -> None:
    """The executable's entry: answer, flush, and leave without interpreter teardown (a few
    ms per call that nobody waits for usefully)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

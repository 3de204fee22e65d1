"""Entry point: read the runtime's request, answer it (plugin/request.py), write the answer.

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
from plugin.errors import DECODE_FAILURE, CniError, exit_on_signal  # noqa: E402


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _answer_version(stdin: bytes) -> None:
    from plugin.shim import version_reply

    sys.stdout.buffer.write(version_reply(stdin, CNI_VERSIONS))


def main() -> int:
    _signal.signal(_signal.SIGTERM, exit_on_signal)
    command = os.environ.get("CNI_COMMAND", "")
    if sys.argv[1:2] in (["reconcile"], ["daemon"]) or not command:
        return _other_entry()
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
        from plugin import request

        _write(request.encode(CniError(DECODE_FAILURE, f"cannot read stdin: {e}")
                              .to_dict(NEWEST_CNI_VERSION)))
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
    from plugin import request

    reply = request.answer(request.Request(dict(os.environ), stdin, _STARTED))
    if reply.stdout:
        _write(reply.stdout)
    return reply.code


def _other_entry() -> int:
    """reconcile, the daemon, or a person at a shell (the about text, list, doctor): these
    read the process's environment once, here (a CNI request reads its own in
    request.answer)."""
    from plugin import settings

    settings.use(settings.Settings(os.environ))
    if sys.argv[1:2] == ["reconcile"]:
        from plugin import reconcile

        return reconcile.reconcile_main(sys.argv[2:])
    if sys.argv[1:2] == ["daemon"]:
        from plugin import daemon

        return daemon.main(sys.argv[2:])
    from plugin import cli

    return cli.main(sys.argv[1:])


def _refuse(error: CniError, stdin: bytes | None = None) -> int:
    """Log and answer an error found before the request ran (stdin is read here if it was not
    yet: the error speaks the caller's version)."""
    from plugin import request

    if stdin is None:
        try:
            stdin = sys.stdin.buffer.read()
        except OSError:
            stdin = b""
    reply = request.refusal(error, stdin)
    _write(reply.stdout)
    return reply.code


def run() -> None:
    """The executable's entry: answer, flush, and leave without interpreter teardown (a few
    ms per call that nobody waits for usefully)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

"""The ip/ethtool backend: every read and change of the network goes through iproute2 and
ethtool, run on the node (plugin/node.py, the one place a process starts), with transient
failures retried through `tenacity`.

Both libraries are imported on first use: VERSION and bad input never pay for them, and
tenacity only loads when a command actually failed in a way worth retrying.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from plugin import log, tools, values
from plugin.netns import is_net as is_netns

if TYPE_CHECKING:
    from plugin.node import Node as Node  # for the annotations of its callers

# Failures that go away by themselves: the kernel or another agent is busy with the device.
_TRANSIENT = ("Device or resource busy", "Resource temporarily unavailable",
              "No buffer space available", "Try again", "Cannot allocate memory")
MISSING = ("Cannot find device", "does not exist", "No such device")
_FAILED_LINE = re.compile(r"Command failed -:(\d+)")
RETRY_ATTEMPTS = 5
RETRY_SECONDS = 3.0
# A backstop: no ip/ethtool/nsenter call takes this long unless something holds it (an open()
# on a FIFO, a wedged driver). It is killed, and the failure is not retried.
COMMAND_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


class CommandFailed(Exception):
    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str,
                 stdout: str = "") -> None:
        super().__init__(f"{' '.join(argv)}: exit {exit_code}: {stderr.strip()[:300]}")
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout

    def transient(self, missing_is_transient: bool = False) -> bool:
        markers = _TRANSIENT + (MISSING if missing_is_transient else ())
        return any(m in self.stderr for m in markers)

    @property
    def missing_device(self) -> bool:
        return is_missing(self.stderr)


class TimedOut(CommandFailed):
    """Killed after COMMAND_TIMEOUT_SECONDS: never retried."""

    def __init__(self, argv: Sequence[str], seconds: float) -> None:
        super().__init__(argv, 124, f"killed after {seconds:g} s without an answer")

    def transient(self, missing_is_transient: bool = False) -> bool:
        return False


class NotANetns(CommandFailed):
    """The path given as a network namespace is none (a FIFO, another kind of namespace...):
    nothing is run in it, and asking again will not help."""

    def __init__(self, argv: Sequence[str], path: str) -> None:
        super().__init__(argv, 125, f"{path} is not a network namespace")

    def transient(self, missing_is_transient: bool = False) -> bool:
        return False


def _run_once(node: Node, argv: Sequence[str], stdin: str | None) -> str:
    """One command, run on the node (plugin/node.py: in this process's command shell), killed
    if it has not answered in COMMAND_TIMEOUT_SECONDS (sh's own `_timeout` polls in 100 ms
    steps, which would cost every command that much)."""
    from plugin import node as shell

    lines = stdin.split("\n") if stdin else []
    if lines and lines[-1] == "":
        lines.pop()
    try:
        code, out, err = node.run(argv, lines, COMMAND_TIMEOUT_SECONDS)
    except shell.Unframed as e:
        raise CommandFailed(argv, 126, str(e)) from None
    except shell.ShellStuck:
        raise TimedOut(argv, COMMAND_TIMEOUT_SECONDS) from None
    except shell.ShellGone as e:
        raise CommandFailed(argv, 128, str(e)) from None
    if code == 127 and argv[0] in tools.NAMES:
        raise CommandFailed(argv, code, f"{_not_found(argv)}; {err.strip()}")
    if code != 0:
        raise CommandFailed(argv, code, err, out)
    return out


def _not_found(argv: Sequence[str]) -> str:
    """Exit 127 (the shell's "not found", nsenter's failed exec) names the tool and its copy,
    as `doctor --tools` would: not just a code and some usage text."""
    names = [argv[0]]
    if argv[0] == "nsenter":   # and the tool it execs: the first word after its options
        names += [w for w in argv[1:] if not w.startswith("-")][:1]
    return "; ".join(f"{n} not found ({tools.tool(n).describe()})" for n in names) + \
        " (amd-host-device doctor --tools checks every command the plugin runs)"


def _ip_without_json(node: Node, argv: Sequence[str], said: str, code: int) -> CommandFailed:
    """`ip -j` failed (or printed no JSON) for a reason that is not the device: if ip fails the
    same way on `lo`, it is the tool (BusyBox ip, iproute2 < 4.13): say so, by name."""
    try:
        json.loads(run(node, ["ip", "-j", "link", "show", "dev", "lo"]))
        return CommandFailed(argv, code, said)
    except (CommandFailed, ValueError):
        return CommandFailed(argv, code, f"ip ({tools.tool('ip').describe()}) does not support "
                             "-j (JSON output): install iproute2 >= 4.13 (amd-host-device "
                             f"doctor --tools); it said: {said.strip()[:200]}")


def with_retries(fn: Callable[[], T], missing_is_transient: bool = False) -> T:
    """Run fn; if it fails transiently, retry it (bounded in attempts and time)."""
    try:
        return fn()
    except CommandFailed as first:
        if not first.transient(missing_is_transient):
            raise
        log.event(f"transient failure, retrying: {first}")
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS - 1) | tenacity.stop_after_delay(RETRY_SECONDS),
        wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, CommandFailed) and e.transient(missing_is_transient)),
        reraise=True)
    return retrying(fn)


_NAMED_NETNS_DIRS = ("/var/run/netns", "/run/netns")


def in_netns(argv: Sequence[str], netns: str) -> list[str]:
    """argv run inside the netns at path `netns`: `ip -n NAME` for the named netns that
    containerd and CRI-O create (one process), else through nsenter."""
    if not netns:
        return list(argv)
    directory, name = os.path.split(netns)
    if argv[0] == "ip" and directory in _NAMED_NETNS_DIRS and name and not name.startswith("-"):
        return ["ip", "-n", name, *argv[1:]]
    return ["nsenter", f"--net={netns}", *argv]


def run(node: Node, argv: Sequence[str], stdin: str | None = None, netns: str = "",
        missing_is_transient: bool = False) -> str:
    """Run a command, inside the network namespace at path `netns` when given; a path that
    is not a network namespace is refused before anything opens it (plugin/netns.py)."""
    full = in_netns(argv, netns)
    if netns and not is_netns(netns):
        raise NotANetns(full, netns)
    return with_retries(lambda: _run_once(node, full, stdin), missing_is_transient)


def ip_json(node: Node, lines: Sequence[str], netns: str = "", missing_is_transient: bool = False,
            details: bool = False, numeric: bool = False) -> list[list[dict[str, Any]]]:
    """Several `ip -j` reads in one process: one JSON array per line, in order.
    details: `ip -d` (link kinds, veth peers, PCI parents, masters).
    numeric: `ip -N`, tables, protocols and scopes as numbers (no /etc/iproute2 names)."""
    opts = ["-j", *(["-d"] if details else []), *(["-N"] if numeric else [])]
    argv = ["ip", *opts, *lines[0].split()] if len(lines) == 1 else ["ip", *opts, "-batch", "-"]
    try:
        out = run(node, argv, stdin=None if len(lines) == 1 else _batch(lines), netns=netns,
                  missing_is_transient=missing_is_transient)
    except (TimedOut, NotANetns):
        raise
    except CommandFailed as e:
        if e.exit_code == 127 or e.missing_device or e.transient():
            raise
        raise _ip_without_json(node, argv, e.stderr, e.exit_code) from None
    try:
        return _split_arrays(out, len(lines))
    except ValueError:
        raise _ip_without_json(node, argv, f"no JSON in: {out[:100]!r}", 1) from None


class TooLarge(CommandFailed):
    """`ip` printed more than the caller will parse: never retried."""

    def __init__(self, argv: Sequence[str], size: int, limit: int) -> None:
        super().__init__(argv, 0, f"{size} bytes of output, over the {limit} this read parses")

    def transient(self, missing_is_transient: bool = False) -> bool:
        return False


def ip_json_each(node: Node, lines: Sequence[str], netns: str = "", details: bool = False,
                 max_bytes: int = 0, link_only: bool = False) -> list[list[dict[str, Any]] | None]:
    """Several `ip -j` reads in one `ip -force -batch`, each line's array in order, None for
    a line whose device does not exist (any other failure raises). max_bytes: refuse to
    parse more output than that (TooLarge). link_only: `ip -0`, no addresses (an `address
    show` line then prints the link alone)."""
    argv = ["ip", "-j", *(["-d"] if details else []), *(["-0"] if link_only else []),
            "-force", "-batch", "-"]
    missing: set[int] = set()
    try:
        out = run(node, argv, stdin=_batch(lines), netns=netns)
    except (TimedOut, NotANetns):
        raise
    except CommandFailed as e:
        attributed, ran_to_end = _attributed(e.stderr)
        if e.exit_code != 1 or not ran_to_end or not attributed \
                or not all(is_missing(msg) for _, msg in attributed):
            raise
        missing = {n for n, _ in attributed}
        out = e.stdout
    if max_bytes and len(out) > max_bytes:
        raise TooLarge(argv, len(out), max_bytes)
    found = iter(_split_arrays(out, len(lines) - len(missing)))
    return [None if n in missing else next(found) for n in range(1, len(lines) + 1)]


def _split_arrays(text: str, expected: int) -> list[list[dict[str, Any]]]:
    # strict=False: `ip -j` prints control characters a pod put in an alias or altname as
    # they are, which strict JSON refuses.
    decoder = json.JSONDecoder(strict=False)
    arrays: list[list[dict[str, Any]]] = []
    pos = 0
    while len(arrays) < expected:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            arrays.append([])  # some `ip` versions print nothing for an empty dump
            continue
        value, pos = decoder.raw_decode(text, pos)
        arrays.append(value if isinstance(value, list) else [value])
    return arrays


def link_exists(node: Node, name: str, netns: str = "") -> bool:
    try:
        run(node, ["ip", "link", "show", "dev", name], netns=netns)
        return True
    except CommandFailed as e:
        if e.missing_device:
            return False
        raise


class BatchFailure(NamedTuple):
    """One `ip -batch` line that failed, and what ip said."""

    line: str
    message: str

    @property
    def missing_device(self) -> bool:
        return is_missing(self.message)


class UnsafeLine(ValueError):
    """A batch line that could carry a second command: never sent (defence in depth: every
    line is built from validated values already)."""


def _batch(lines: Sequence[str]) -> str:
    for line in lines:
        if not values.batch_safe(line):  # the rule is plugin/values.py's
            raise UnsafeLine(f"refusing an ip -batch line: {line[:80]!r}")
    return "\n".join(lines) + "\n"


def is_missing(stderr: str) -> bool:
    """The one place that reads ip's words for "no such link"."""
    return any(m in stderr for m in MISSING)


def _attributed(stderr: str) -> tuple[list[tuple[int, str]], bool]:
    """(line number, message) for each failure ip attributed to a line, and whether ip ran to
    the end: it stops, without saying which line, at the first line it cannot parse."""
    found: list[tuple[int, str]] = []
    message = ""
    last_was_attribution = False
    for text in stderr.splitlines():
        text = text.strip()
        if not text:
            continue
        m = _FAILED_LINE.fullmatch(text)
        if m:
            found.append((int(m[1]), message[:300]))
            message = ""
            last_was_attribution = True
        else:
            message = f"{message}; {text}" if message else text
            last_was_attribution = False
    return found, last_was_attribution


def ip_batch(node: Node, lines: Sequence[str], netns: str = "") -> list[BatchFailure]:
    """Apply changes in one `ip -force -batch`; failures are returned, never the rest dropped:
    if ip stopped at a line it could not parse, the lines after the last one it reported are
    retried one by one (each is idempotent: replace, set)."""
    if not lines:
        return []
    text = _batch(lines)
    try:
        run(node, ["ip", "-force", "-batch", "-"], stdin=text, netns=netns)
        return []
    except (TimedOut, NotANetns):
        raise  # line by line would only fail (or wait) the same way
    except CommandFailed as e:
        if e.exit_code == 127:
            raise
        attributed, ran_to_end = _attributed(e.stderr)
    failures = [BatchFailure(lines[n - 1], msg) for n, msg in attributed if 0 < n <= len(lines)]
    if ran_to_end:
        return failures
    last = max((n for n, _ in attributed), default=0)
    for line in lines[last:]:
        try:
            run(node, ["ip", "-force", "-batch", "-"], stdin=_batch([line]), netns=netns)
        except CommandFailed as one:
            failures.append(BatchFailure(line, one.stderr.strip()[:300]))
    return failures


def ethtool_perm_mac(node: Node, ifname: str, netns: str = "") -> str:
    """`ethtool -P`: the hardware's permanent MAC, "" where there is none or no ethtool."""
    try:
        out = run(node, ["ethtool", "-P", ifname], netns=netns)
    except CommandFailed:
        return ""
    return out.split("address:", 1)[1].strip().lower() if "address:" in out else ""


class DriverInfo(NamedTuple):
    """What `ethtool -i` reports: the kernel's view of the NIC's driver and bus."""

    driver: str
    bus_info: str


def ethtool_driver(node: Node, ifname: str) -> DriverInfo | None:
    """`ethtool -i`: the driver and bus the kernel reports, or None where ethtool can't tell."""
    try:
        out = run(node, ["ethtool", "-i", ifname])
    except CommandFailed as e:
        if e.exit_code == 127:
            log.event("ethtool is not installed on this node; skipping the bus-info cross-check")
        return None
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return DriverInfo(fields.get("driver", "").strip(), fields.get("bus-info", "").strip())


def ethtool_read(node: Node, flag: str, ifname: str, quiet: bool = False) -> str:
    """`ethtool -k|-l ifname` text; "" where ethtool cannot tell (not installed, no such
    link, not supported by the NIC): then that part of the NIC is not recorded (logged,
    unless quiet: the caller has a way on without it)."""
    try:
        return run(node, ["ethtool", flag, ifname])
    except CommandFailed as e:
        if not quiet:
            log.event(f"ethtool {flag} {ifname}: {e}; not recorded")
        return ""


def ethtool_set(node: Node, flag: str, ifname: str, words: Sequence[str]) -> str:
    """`ethtool -K|-L ifname word value ...` in one process; "" or why it failed."""
    if not words:
        return ""
    try:
        run(node, ["ethtool", flag, ifname, *words])
        return ""
    except CommandFailed as e:
        return str(e)

"""The one-shell command runner (plugin/node.py) under attack: a signal or a command that
does not read its stdin cannot shift its framing, a hung command is killed at its deadline
whoever dies above it (the in-process plugin, a daemon child, the daemon on SIGTERM), SIGTERM
during ADD still rolls back, and the marker nonce is not readable by another local user.
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py); every
process a test starts is ended by PID; anything that could hang is bounded by a timeout (a
hang guard, not a timing assertion: the bound is past the plugin's own command deadline).
"""

import contextlib
import json
import os
import signal
import subprocess

from plugin import backend
from plugin import node as shell
from tests.support.checks import (
    REAL_IP,
    ok,
    records,
    restored,
    script,
    wait_for_int,
)
from tests.support.processes import end_processes, gone_within, process_stat


def _ip_signaller(tmp_path, pattern, sig="TERM"):
    """An `ip` first in PATH that sends `sig` to the plugin when its argv matches the shell
    case `pattern` (once), then answers as the real ip would, a moment later: the runtime's
    timeout kill arriving while a command is in flight, the likeliest moment (commands are
    most of a request's time)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    once = tmp_path / "signalled"
    script(d, "ip", f'case "$*" in {pattern})\n'
           f'  if [ ! -e {once} ]; then touch {once}\n'
           '  p=$PPID; while case "$(cat /proc/$p/comm)" in timeout|sh|dash) true;; *) false;; esac\n'
           '  do p=$(cut -d" " -f4 /proc/$p/stat); done\n'
           f'  kill -{sig} $p; sleep 1; fi;; esac\nexec {REAL_IP} "$@"\n')
    return {"PATH": f"{d}:{os.environ['PATH']}"}


class _Interrupted(Exception):
    pass


def test_a_command_interrupted_by_a_signal_does_not_answer_the_next_one(fresh_shell):
    """The plugin turns SIGTERM into SystemExit (plugin/main.py) and ADD then rolls back
    with more commands, in the same shell. An exception raised out of shell.run while a
    command is in flight leaves its output and end marker to come; the next command's wait
    finds that marker and returns the interrupted command's output and exit code as its own,
    and so on: every later command in the process gets the answer of the one before.
    Safe: the next command gets its own answer (e.g. the interrupted shell is discarded)."""
    def interrupt(*_):
        raise _Interrupted()
    old = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with contextlib.suppress(_Interrupted):
            shell.run(["sh", "-c", f"kill -USR1 {os.getpid()}; sleep 0.5; echo first; exit 3"],
                      seconds=30)
        second = shell.run(["echo", "second"], seconds=30)
        third = shell.run(["echo", "third"], seconds=30)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert second == (0, "second\n", "")
    assert third == (0, "third\n", "")


def test_a_command_that_exits_without_reading_its_stdin_does_not_shift_the_framing(
        fresh_shell):
    """A request's stdin lines are copied to the command by a subshell on the left of a pipe
    (plugin/node.py). When the command exits before reading them all (`ip -batch -` without
    -force stops at its first failing line; `timeout` kills a hung ip; argv[0] not found)
    and the lines do not fit the pipe, the copier dies of SIGPIPE and the lines it did not
    copy stay on the shell's stdin: the shell reads them as the next requests (timeout, argc,
    argv words...), so every later command gets the answer of a phantom one ("[: Illegal
    number", exit 125). Safe: the next command gets its own answer."""
    shell.run(["true"], ["x" * 100] * 3000, seconds=30)
    assert shell.run(["echo", "next"], seconds=30) == (0, "next\n", "")


def test_sigterm_while_a_command_runs_in_add_still_rolls_back(node, pod, tmp_path):
    """The runtime's SIGTERM arrives while ADD reads the NIC in the pod after host-device
    moved it (`ip -n POD -j -d link show dev net1`, the record says "moving"). ADD rolls back
    through the same command shell, whose answers are now one command behind: the rollback
    reads the wrong JSON for every step and fails, leaving the NIC on the node unconfigured
    under a temporary name. Safe: ADD fails and the rollback restores the NIC, as it does
    for a SIGTERM during host-device (tests/integration/test_crash.py)."""
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1",
                    extra_env=_ip_signaller(tmp_path, '*"-j -d link show dev net1"*'))
    assert (tmp_path / "signalled").exists()
    assert call.rc != 0
    assert restored(node, nic) and records(node) == []


def _hanging_ip(tmp_path):
    """An `ip` first in PATH whose first call never answers (a wedged driver or RTNL holder:
    what COMMAND_TIMEOUT_SECONDS is the backstop for) and says its PID; later calls are the
    real ip."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    once = tmp_path / "hung"
    script(d, "ip", f'if [ ! -e {once} ]; then echo $$ > {once}.tmp; mv {once}.tmp {once}\n'
                    '  exec sleep 100000; fi\n'
                    f'exec {REAL_IP} "$@"\n')
    return {"PATH": f"{d}:{os.environ['PATH']}"}, once


def test_a_hung_command_of_a_sigkilled_in_process_plugin_is_still_killed_at_its_deadline(
        node, pod, tmp_path):
    """Attack: a command wedges (a driver, RTNL held) and the runtime's timeout SIGKILLs the
    in-process plugin (containerd kills the plugin's PID, not its group). The command shell
    runs in its own process group and only the plugin's Python would killpg it at the
    deadline; with the plugin dead nothing does: the shell and the wedged command live on
    for ever (before, coreutils `timeout` killed each command at 30 s whoever waited), and
    when it finally runs it changes the node behind the back of the retried ADD/DEL.
    Safe: no command outlives COMMAND_TIMEOUT_SECONDS, whether or not its caller is alive
    (e.g. the shell dies with its caller and takes its group along, or a watchdog in the
    shell's group)."""
    env, once = _hanging_ip(tmp_path)
    nic = node.nics[0]
    run_env = {**node.env(), "CNI_COMMAND": "ADD", "CNI_PATH": "/usr/lib/cni",
               "CNI_CONTAINERID": "c1", "CNI_NETNS": pod, "CNI_IFNAME": "net1", **env}
    node.sync_sysfs()
    argv = ["ip", "netns", "exec", node.node, "env", "-i",
            *(f"{k}={v}" for k, v in run_env.items()), node.plugin]
    plugin = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
    hung = shell_pid = 0
    try:
        plugin.stdin.write(json.dumps(node.conf(nic.pci)))
        plugin.stdin.close()
        hung = wait_for_int(once)
        shell_pid = process_stat(hung)[1]
        os.kill(plugin.pid, signal.SIGKILL)   # the runtime's timeout kill
        plugin.wait(timeout=30)
        assert gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the dead plugin's command (and its shell) live on past the command deadline"
    finally:
        end_processes(plugin.pid, hung, shell_pid)


def test_a_hung_command_of_a_sigkilled_daemon_child_is_still_killed_at_its_deadline(
        node, pod, tmp_path):
    """Attack: as above in thick mode: the request child (the spare that took the request) is
    SIGKILLed (the OOM killer; the daemon's own SIGKILL of children past --grace + 5 s) while
    its command is wedged. SIGTERM is handled (the child kills its shell's group); SIGKILL
    is not, and nothing else ever kills the command or its shell.
    Safe: no command outlives COMMAND_TIMEOUT_SECONDS, whether or not its caller is alive."""
    env, once = _hanging_ip(tmp_path)
    node.start_daemon("--grace", "2", extra_env=env)
    nic = node.nics[0]
    hung = shell_pid = child = 0
    caller = None
    try:
        run_env = {**node.env(), "CNI_COMMAND": "ADD", "CNI_PATH": "/usr/lib/cni",
                   "CNI_CONTAINERID": "c1", "CNI_NETNS": pod, "CNI_IFNAME": "net1"}
        node.sync_sysfs()
        argv = ["ip", "netns", "exec", node.node, "env", "-i",
                *(f"{k}={v}" for k, v in run_env.items()), node.plugin]
        caller = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True)
        caller.stdin.write(json.dumps(node.conf(nic.pci)))
        caller.stdin.close()
        hung = wait_for_int(once)
        shell_pid = process_stat(hung)[1]
        child = process_stat(shell_pid)[1]
        assert process_stat(child)[1] == node.daemon.pid, "the command is not run by a daemon child"
        os.kill(child, signal.SIGKILL)
        assert gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the dead child's command (and its shell) live on past the command deadline"
    finally:
        end_processes(hung, shell_pid, child)
        if caller is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                caller.wait(timeout=60)
            end_processes(caller.pid)
        node.stop_daemon()


def test_the_shells_marker_nonce_is_not_readable_by_an_unprivileged_local_user(fresh_shell):
    """Attack: the end-of-command marker is unforgeable only while its nonce is secret
    (plugin/node.py: "it does not know the nonce"). The nonce is the shell's $0, i.e. in
    argv: /proc/<shell>/cmdline is world-readable, so any local user, or any hostPID pod,
    reads it for as long as the shell lives (a daemon's spare: until the next request).
    Whoever can then get "\\n<nonce> <rc>\\n" into a command's output and stderr ends that
    command's reply early and hands the rest to the next command (low: every reader we run
    escapes newlines today; this is the defence in depth the design relies on).
    Safe: the nonce never appears in a world-readable place (e.g. passed through the
    shell's environment, /proc/<pid>/environ being owner-only, or sent over its stdin)."""
    runner = shell.current()
    seen = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "cat", f"/proc/{runner.proc.pid}/cmdline"],
                          capture_output=True, timeout=30)
    assert seen.returncode == 0
    assert runner.nonce.encode() not in seen.stdout, \
        "an unprivileged user reads the command shell's marker nonce"


def test_a_hung_reconcile_command_is_still_killed_at_its_deadline_after_a_daemon_sigterm(
        node, pod, tmp_path):
    """Attack: a plain SIGTERM of the daemon (a DaemonSet rollout) while a reconcile pass is
    in a wedged command. Past --grace the daemon SIGTERMs the reconcile child, whose SIGTERM
    is SIG_DFL: it dies at once without killing its command shell's group, and the wedged
    command and its shell live on for ever (before, coreutils `timeout` ended it at 30 s).
    Safe: no command outlives COMMAND_TIMEOUT_SECONDS, whoever ran it and however it died."""
    d = tmp_path / "bin"
    d.mkdir()
    armed, hung_file = tmp_path / "armed", tmp_path / "hung"
    script(d, "ip", f'if [ -e {armed} ] && rm {armed} 2>/dev/null; then\n'
                    f'  echo $$ > {hung_file}.tmp; mv {hung_file}.tmp {hung_file}\n'
                    '  exec sleep 100000; fi\n'
                    f'exec {REAL_IP} "$@"\n')
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    node.start_daemon("--grace", "2", "--reconcile-interval", "1",
                      extra_env={"PATH": f"{d}:{os.environ['PATH']}"})
    hung = shell_pid = runner = 0
    try:
        node.remove_pod(pod.rsplit("/", 1)[1])   # the pod is gone: reconcile looks for the NIC
        armed.touch()
        hung = wait_for_int(hung_file)
        shell_pid = process_stat(hung)[1]
        runner = process_stat(shell_pid)[1]
        assert process_stat(runner)[1] == node.daemon.pid, "the command is not run by a daemon child"
        node.stop_daemon()
        assert process_stat(runner) is None, "the daemon stopped but its reconcile child lives"
        assert gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the reconcile child's command (and its shell) live on past the command deadline"
    finally:
        end_processes(hung, shell_pid, runner)
        node.stop_daemon()

"""Fourth red team: attacks on the one-shell command runner without coreutils `timeout`
(plugin/shell.py), the daemon's pre-forked spare child (plugin/daemon.py), the NamedTuple
values on the request path, and DEL's latest changes. Each test FAILS on the code it was
written against and passes once the attack is refused, unless its docstring says it is a
passing regression test. Real ip, the real host-device, veth NICs in namespaces
(tests/support/simnode.py); the node is cleaned by the fixtures; every process a test
starts is ended by PID; anything that could hang is bounded by a timeout (a hang guard, not a
timing assertion: the bound is past the plugin's own command deadline).
"""

import contextlib
import json
import os
import signal
import subprocess
import time

from plugin import backend, shell
from tests.support.checks import RAW_PING, REAL_IP, edit_record, ok, records, restored, script, wait_for_int


def _stat(pid):
    """(state, ppid, pgid) of a process, or None once it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[1]), int(fields[2])


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


def _gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while _stat(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _end(*pids):
    for pid in pids:
        if pid and _stat(pid) is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# -- plugin/shell.py: a command outlives its dead caller --------------------------------------

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
        shell_pid = _stat(hung)[1]
        os.kill(plugin.pid, signal.SIGKILL)   # the runtime's timeout kill
        plugin.wait(timeout=30)
        assert _gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the dead plugin's command (and its shell) live on past the command deadline"
    finally:
        _end(plugin.pid, hung, shell_pid)


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
        shell_pid = _stat(hung)[1]
        child = _stat(shell_pid)[1]
        assert _stat(child)[1] == node.daemon.pid, "the command is not run by a daemon child"
        os.kill(child, signal.SIGKILL)
        assert _gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the dead child's command (and its shell) live on past the command deadline"
    finally:
        _end(hung, shell_pid, child)
        if caller is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                caller.wait(timeout=60)
            _end(caller.pid)
        node.stop_daemon()


# -- plugin/listing.py on a hostile record -----------------------------------------------------

def test_list_on_a_record_orphaned_past_year_9999_reports_instead_of_a_traceback(node, pod):
    """Attack (a corrupt disk or a hostile write to the state dir): `orphanedSince` (and
    `created`) of 3e11, which values.number accepts (< 1e12), is year 11476. `list --json`
    prints it, but the table's _orphan_cell parses it back with strptime("%Y"), which takes
    four digits: `list` dies with a ValueError traceback and shows the operator no
    attachment at all, the healthy ones included.
    Safe: `list` prints the table (the record as it reads, or listed as corrupt), exit 0,
    no traceback."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    (name,) = records(node)
    edit_record(node, name, lambda o: o.update(orphanedSince=3e11, created=3e11))
    listed = node.run("list")
    assert "Traceback" not in listed.stderr, listed.stderr[-800:]
    assert listed.rc == 0 and "c1" in listed.stdout
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)


# -- attacks that held: passing regression tests -----------------------------------------------

def _kids(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[1] == pid:
            out.append(int(entry))
    return out


def _one_child(pid, limit=20.0):
    deadline = time.monotonic() + limit
    while len(kids := _kids(pid)) != 1:
        assert time.monotonic() < deadline, f"children of {pid}: {kids}"
        time.sleep(0.02)
    return kids[0]


def test_held_a_sigkilled_daemon_leaves_neither_its_idle_spare_nor_the_spares_shell(node):
    """Passing regression test. Attack: SIGKILL the daemon while its spare child (with its
    command shell started) waits for a connection. Safe, and so it is: the spare reads EOF
    on its socketpair and exits, and its shell reads EOF on stdin and exits: nothing of the
    daemon is left (checked by PID, bounded by a hang guard)."""
    pid = node.start_daemon("--grace", "2")
    spare = _one_child(pid)
    shell_pid = _one_child(spare)
    try:
        os.kill(pid, signal.SIGKILL)
        node.daemon.wait(timeout=30)
        assert _gone_within(spare, 20), "the idle spare outlived its daemon"
        assert _gone_within(shell_pid, 20), "the spare's shell outlived its daemon"
    finally:
        _end(spare, shell_pid)


def test_held_a_non_root_burst_neither_takes_the_spare_nor_wedges_the_daemon(node, pod):
    """Passing regression test. Attack: with the socket's file modes opened up (so only the
    daemon's SO_PEERCRED check stands in the way), a local non-root user opens a burst of
    connections. Safe, and so it is: each is refused in the parent before the spare is
    handed anything; the same spare then serves the next root request through the daemon."""
    pid = node.start_daemon("--grace", "2")
    spare = _one_child(pid)
    os.chmod(node.tmp, 0o711)
    os.chmod(os.path.dirname(node.socket), 0o755)
    os.chmod(node.socket, 0o666)
    burst = [subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/bin/python3", "-I", "-c", RAW_PING, node.socket],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(20)]
    for p in burst:
        out, _ = p.communicate(timeout=60)
        assert "PONG" not in out
    assert _kids(pid) == [spare], "a non-root peer consumed or replaced the spare"
    nic = node.nics[0]
    call = node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1")
    ok(call)
    assert "attached" not in call.stderr   # through the daemon
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
    assert restored(node, nic)
    assert node.stop_daemon() == 0


# -- plugin/shell.py: the marker's nonce is public ------------------------------------------

def test_the_shells_marker_nonce_is_not_readable_by_an_unprivileged_local_user(fresh_shell):
    """Attack: the end-of-command marker is unforgeable only while its nonce is secret
    (plugin/shell.py: "it does not know the nonce"). The nonce is the shell's $0, i.e. in
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
        shell_pid = _stat(hung)[1]
        runner = _stat(shell_pid)[1]
        assert _stat(runner)[1] == node.daemon.pid, "the command is not run by a daemon child"
        node.stop_daemon()
        assert _stat(runner) is None, "the daemon stopped but its reconcile child lives"
        assert _gone_within(hung, backend.COMMAND_TIMEOUT_SECONDS + 15), \
            "the reconcile child's command (and its shell) live on past the command deadline"
    finally:
        _end(hung, shell_pid, runner)
        node.stop_daemon()

"""The command shell (plugin/node.py): framing, failures, and one shell per process."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from plugin import backend
from plugin import node as shell
from plugin.node import Node

NODE = Node()   # this machine, as the plugin runs commands on it


def test_output_errors_and_exit_code_come_back_as_the_command_gave_them():
    assert backend.run(NODE, ["printf", "a\\nb"]) == "a\nb"            # no trailing newline
    assert backend.run(NODE, ["printf", "a\\n\\n"]) == "a\n\n"
    assert backend.run(NODE, ["cat"], stdin="x y\n\nz\n") == "x y\n\nz\n"
    with pytest.raises(backend.CommandFailed) as e:
        backend.run(NODE, ["sh", "-c", "echo out; echo 'Cannot find device \"x\"' >&2; exit 3"])
    assert e.value.exit_code == 3 and e.value.missing_device
    assert backend.run(NODE, ["printf", "%s|", "two words", "$HOME", "'", "\\"]) == "two words|$HOME|'|\\|"


@pytest.mark.parametrize("argv, stdin", [
    (["printf", "a\nb"], None),
    (["printf", "a\0b"], None),
    (["cat"], "line\0\n"),
])
def test_a_word_or_line_that_would_shift_the_framing_is_never_sent(argv, stdin, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(backend.CommandFailed) as e:
        backend.run(NODE, [*argv[:1], *argv[1:]], stdin=stdin)
    assert e.value.exit_code == 126 and not e.value.transient(True)
    # the shell is still in step: the next command gets its own answer
    assert backend.run(NODE, ["sh", "-c", f"touch {marker}; echo ok"]) == "ok\n" and marker.exists()


def test_a_marker_in_a_commands_output_without_the_nonce_is_just_output():
    assert backend.run(NODE, ["printf", "\\n%s 0\\n\\n%s\\n", "0" * 24, "0" * 24]) == \
        f"\n{'0' * 24} 0\n\n{'0' * 24}\n"


def test_a_shell_that_died_is_replaced_for_the_next_command():
    first = shell.current()
    first.proc.kill()
    with contextlib.suppress(Exception):  # sh raises for the SIGKILL it reports
        first.proc.wait()
    for _ in range(200):   # sh reports the end from its own thread
        if first.done:
            break
        time.sleep(0.01)
    # the next command does not go to the dead shell (if it did, it would fail: it would
    # find the shell exited)
    assert backend.run(NODE, ["echo", "again"]) == "again\n"
    assert shell.current() is not first


def test_a_forked_child_never_uses_its_parents_shell():
    parent = shell.current()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            mine = shell.current()
            ok = mine is not parent and backend.run(NODE, ["echo", "child"]) == "child\n"
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    os.close(r)
    assert shell.current() is parent and backend.run(NODE, ["echo", "parent"]) == "parent\n"


def test_a_command_past_its_deadline_is_killed_with_its_shell_and_the_next_gets_a_new_one(
        monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "COMMAND_TIMEOUT_SECONDS", 0.5)
    before = shell.current()
    pidfile = tmp_path / "pid"
    with pytest.raises(backend.TimedOut):
        backend.run(NODE, ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 120"])
    hung = int(pidfile.read_text())
    for _ in range(100):   # SIGKILL is delivered at once; reaping may take a moment
        try:
            with open(f"/proc/{hung}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"pid {hung} still runs")
    assert backend.run(NODE, ["echo", "next"]) == "next\n" and shell.current() is not before

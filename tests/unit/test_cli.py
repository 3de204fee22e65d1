"""By hand on a node: the about text, --help, --version; with CNI_COMMAND set, the runtime's
protocol exactly as before, without importing the operator code."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from plugin import __version__

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGIN = os.environ.get("AMD_HOST_DEVICE_PLUGIN", str(ROOT / ".venv" / "bin" / "amd-host-device"))


def run(*args, env=None, stdin=b""):
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run([PLUGIN, *args], env={**base, **(env or {})}, input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_no_command_prints_the_about_text_to_stderr_and_exits_0():
    p = run()
    assert p.returncode == 0 and p.stdout == b""
    err = p.stderr.decode()
    lines = err.splitlines()
    assert lines[0] == f"CNI amd-host-device plugin v{__version__}"   # skel's shape: name, version
    assert lines[1] == "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
    for sub in ("list [--json]", "doctor [--json]", "reconcile", "daemon"):
        assert any(line.strip().startswith(sub) for line in lines), sub


def test_no_command_does_not_wait_for_stdin():
    """A person typing the command has no config to pipe in: it must not block on stdin."""
    p = subprocess.run([PLUGIN], env={"PATH": os.environ["PATH"]}, stdin=None,
                       capture_output=True, timeout=60, check=False)
    assert p.returncode == 0


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_goes_to_stdout(flag):
    p = run(flag)
    assert p.returncode == 0 and b"CNI protocol versions supported" in p.stdout
    assert b"doctor" in p.stdout and b"list" in p.stdout
    assert any(line.strip().startswith(b"daemon") for line in p.stdout.splitlines())


@pytest.mark.parametrize("flag", ["--version", "-V", "version"])
def test_version_flag(flag):
    p = run(flag)
    assert p.returncode == 0
    assert p.stdout.decode().startswith(f"amd-host-device {__version__} ")


def test_unknown_subcommand_is_a_usage_error():
    p = run("frobnicate")
    assert p.returncode == 2 and p.stdout == b"" and b"unknown subcommand 'frobnicate'" in p.stderr


def test_subcommand_help():
    for sub in ("list", "doctor"):
        p = run(sub, "--help")
        assert p.returncode == 0 and b"--json" in p.stdout


def test_version_command_is_unchanged():
    p = run(env={"CNI_COMMAND": "VERSION"}, stdin=b'{"cniVersion":"0.4.0"}')
    assert p.returncode == 0 and p.stderr == b""
    assert json.loads(p.stdout) == {"cniVersion": "0.4.0",
                                    "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                                          "1.1.0"]}


def test_cni_command_set_ignores_arguments():
    """A runtime's call is the protocol whatever argv says: `list` here is not a subcommand."""
    p = run("list", env={"CNI_COMMAND": "FROB"}, stdin=b"{}")
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 4


def test_cni_path_does_not_import_operator_modules(tmp_path):
    code = ("import sys, io; sys.argv = ['amd-host-device']; "
            "sys.stdin = io.TextIOWrapper(io.BytesIO(b'{}')); "
            "from plugin import main; main.main(); "
            "sys.stderr.write(repr(sorted(m for m in sys.modules if m in "
            "('plugin.cli', 'plugin.listing', 'plugin.doctor', 'plugin.daemon_client', 'argparse'))))")
    for command in ("VERSION", "STATUS"):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "CNI_COMMAND": command,
                                "AMD_HOST_DEVICE_STATE_DIR": str(tmp_path / "state"),
                                "AMD_HOST_DEVICE_NODE_CONFIG": str(tmp_path / "p.conf")},
                           cwd=ROOT, check=False)
        assert p.stderr.decode().strip().endswith("[]"), p.stderr

"""Hostile input (hypothesis): any JSON, any types, huge values, unicode, path tricks in
deviceID and ifname. Always one CNI error object (or a result) on stdout, never a traceback,
never a shell.

The plugin runs in-process in a forked child that first moved into a new, empty network
namespace, so nothing generated here can reach the machine's interfaces; stateDir is always
pointed at a temp dir so nothing is written elsewhere.
"""

import ctypes
import io
import json
import multiprocessing
import os
import pathlib
import sys
import tempfile
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100, 101, 102, 103}
SENTINEL = "pwned-by-shell"

json_scalar = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
               | st.floats(allow_nan=False) | st.text(max_size=50))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)
tricky = st.sampled_from([
    "", "..", "../../etc/passwd", "0000:01:00.0/../../x", "0000:01:00.0\n", "/", "\x00",
    "\uff4e\uff45\uff54\uff11",
    "net1; touch pwned-by-shell", f"x;touch${{IFS}}{SENTINEL}", "$(reboot)", "a#b",
    'a"b', "x" * 100_000, "0000:01:00.0", "01:00.0", "lo", "net1", "%s%n", "\u202e", "a\tb",
]) | st.text(max_size=40)
keys = st.sampled_from([
    "cniVersion", "name", "type", "deviceID", "pciBusID", "runtimeConfig", "device", "ipam",
    "allowDefaultRouteDevice", "lockTimeoutSeconds", "prevResult", "cni.dev/valid-attachments",
    "cni.dev/attachments", "hwaddr", "kernelpath"])
versions = st.sampled_from(["1.0.0", "1.1.0", "0.3.1", "0.4.0", "0.3.0", "0.2.0", "9.9.9", ""])
commands = st.sampled_from(["ADD", "DEL", "CHECK", "ADD", "DEL", "GC", "STATUS", "VERSION", "",
                            "add", "X"])
BASE_ENV = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "net1",
            "CNI_PATH": "/usr/lib/cni", "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAME=p"}


@st.composite
def configs(draw):
    """Mostly valid enough to get deep (a version we speak, the fake device), then hostile."""
    conf = {"cniVersion": draw(versions), "name": "nad", "type": "amd-host-device"}
    if draw(st.booleans()):
        conf["deviceID"] = "0000:01:00.0"
    for key in draw(st.lists(keys, max_size=4)):
        conf[key] = draw(tricky | json_value)
    return conf


@st.composite
def environments(draw):
    """A valid runtime environment with one or two variables made hostile or dropped."""
    env = {"CNI_COMMAND": draw(commands), **BASE_ENV}
    for key in draw(st.lists(st.sampled_from(sorted(BASE_ENV)), max_size=2)):
        if draw(st.booleans()):
            env[key] = draw(tricky)
        else:
            env.pop(key, None)
    return env


def invoke(environ, stdin, state_dir, sysfs):
    """Run the plugin's main() as a process would, capturing stdout and stderr."""
    from plugin import log, main

    env = {k: v.replace("\x00", "") for k, v in environ.items()}
    env.update(AMD_HOST_DEVICE_SYSFS=sysfs, AMD_HOST_DEVICE_FALLBACK_DIRS="",
               AMD_HOST_DEVICE_STATE_DIR=state_dir,
               AMD_HOST_DEVICE_NODE_CONFIG=os.path.join(state_dir, "no-policy.conf"),
               AMD_HOST_DEVICE_SOCKET=os.path.join(state_dir, "no-daemon.sock"),
               PATH=os.environ["PATH"])
    saved = (dict(os.environ), sys.stdin, sys.stdout, sys.stderr, sys.argv)
    sys.argv = ["amd-host-device"]  # as a runtime execs it: no arguments
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    # Real text streams over bytes, as a process has (VERSION writes to stdout.buffer).
    sys.stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    log._context.clear()
    try:
        rc = main.main()
        sys.stdout.flush()
        sys.stderr.flush()
        return (rc, sys.stdout.buffer.getvalue().decode(),  # type: ignore[attr-defined]
                sys.stderr.buffer.getvalue().decode())  # type: ignore[attr-defined]
    finally:
        out = saved
        os.environ.clear()
        os.environ.update(out[0])
        sys.stdin, sys.stdout, sys.stderr, sys.argv = out[1], out[2], out[3], out[4]


def check_answer(rc, out, err, command):
    assert "Traceback" not in out + err
    assert rc in (0, 1)
    lines = out.splitlines()
    if not command:  # no CNI_COMMAND: a person at a shell gets the about text, like skel's
        assert rc == 0 and not out and "CNI protocol versions supported" in err, (rc, out, err)
        return
    if not lines:
        assert rc == 0 and command in ("DEL", "CHECK", "STATUS", "GC"), (rc, out, err)
        return
    assert len(lines) == 1, out
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    if rc:
        assert set(obj) == {"cniVersion", "code", "msg", "details"}, obj
        assert obj["code"] in CODES, obj
        assert isinstance(obj["msg"], str) and obj["msg"]


def _in_fresh_netns(body):
    def target(q):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
            os.chdir(tempfile.mkdtemp())
            body()
            q.put(("ok", ""))
        except BaseException:
            q.put(("fail", traceback.format_exc()))

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q,))
    p.start()
    status, detail = q.get(timeout=900)
    p.join()
    assert status == "ok", detail


SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "400")),
                    deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _property(make_stdin):
    def body():
        with tempfile.TemporaryDirectory() as tmp:
            sysfs = os.path.join(tmp, "sys")
            dev = os.path.join(sysfs, "bus", "pci", "devices", "0000:01:00.0", "net", "lo")
            os.makedirs(dev)

            @SETTINGS
            @given(environments(), configs(), st.data())
            def prop(environ, conf, data):
                conf = dict(conf, stateDir=os.path.join(tmp, "state"))
                rc, out, err = invoke(environ, make_stdin(conf, data), os.path.join(tmp, "state"),
                                      sysfs)
                check_answer(rc, out, err, environ.get("CNI_COMMAND"))
                assert not os.path.exists(SENTINEL)
            prop()
    _in_fresh_netns(body)


def test_structured_configs_and_env():
    _property(lambda conf, data: json.dumps(conf).encode())


def test_arbitrary_bytes_and_json_on_stdin():
    def stdin(conf, data):
        return data.draw(st.binary(max_size=200) | json_value.map(lambda v: json.dumps(v).encode())
                         | st.just(b"[" * 50_000))
    _property(stdin)


@pytest.mark.parametrize("needle", ["shell=True", "os.system", "os.popen", "_shell", "sh -c",
                                    "bash -c", "create_subprocess_shell"])
def test_no_command_is_ever_run_through_a_shell(needle):
    for path in (ROOT / "plugin").glob("*.py"):
        assert needle not in path.read_text(), f"{path} uses {needle}"

"""The shim's side of thick mode: what it forwards, where it looks, when it falls back."""

import json
import os
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin import CNI_VERSIONS, policy, shim
from plugin.errors import TRY_AGAIN_LATER, CniError
from plugin.metrics import Metrics


def test_the_shims_copies_of_the_policy_names_agree_with_policy():
    assert shim.SOCKET_ENV == policy.SOCKET_ENV
    assert shim.POLICY_ENV == policy.PATH_ENV
    assert shim.DEFAULT_SOCKET == policy.DEFAULT_SOCKET
    assert shim.DEFAULT_POLICY == policy.DEFAULT_PATH


def test_only_the_cni_env_and_our_overrides_are_forwarded():
    env = {"CNI_COMMAND": "ADD", "AMD_HOST_DEVICE_STATE_DIR": "/s", "PATH": "/bin",
           "HOME": "/root", "LD_PRELOAD": "/x.so"}
    assert shim.forwarded_env(env) == {"CNI_COMMAND": "ADD", "AMD_HOST_DEVICE_STATE_DIR": "/s"}


def test_env_encoding_round_trips_and_refuses_what_a_shim_never_sends():
    env = {"CNI_ARGS": "A=1;B=x=y", "CNI_NETNS": "/var/run/netns/p", "AMD_HOST_DEVICE_X": ""}
    assert shim.decode_env(shim.encode_env(env)) == env
    assert shim.decode_env(b"") == {}
    assert shim.decode_env(b"CNI_COMMAND=ADD\0LD_PRELOAD=/x.so") is None
    assert shim.decode_env(b"CNI_COMMAND") is None


def test_socket_path_env_then_policy_file_then_default(tmp_path):
    conf = tmp_path / "p.conf"
    base = {shim.POLICY_ENV: str(conf)}
    assert shim.socket_path(base) == shim.DEFAULT_SOCKET
    conf.write_text(json.dumps({"socket": "/run/x/d.sock"}))
    assert shim.socket_path(base) == "/run/x/d.sock"
    assert shim.socket_path({**base, shim.SOCKET_ENV: "/run/y.sock"}) == "/run/y.sock"
    assert shim.socket_path({**base, shim.SOCKET_ENV: "../y.sock"}) is None
    conf.write_text("{not json")
    assert shim.socket_path(base) is None   # in process, which names the policy error


def test_no_socket_file_means_in_process(tmp_path):
    env = {shim.SOCKET_ENV: str(tmp_path / "none.sock"), "CNI_COMMAND": "ADD"}
    assert shim.forward(env, b"{}") is None


def _fake_daemon(path, behaviour):
    """A peer speaking the wire protocol up to a point, to pin the shim's decisions."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            header = shim.recv_frame(conn)
            env = shim.decode_env(shim.recv_frame(conn))
            shim.recv_frame(conn)
            behaviour(conn, {"op": header, "env": env})
        server.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_a_daemon_that_drops_the_request_before_accepting_means_in_process(tmp_path):
    path = str(tmp_path / "d.sock")
    t = _fake_daemon(path, lambda conn, header: None)
    assert shim.forward({shim.SOCKET_ENV: path, "CNI_COMMAND": "ADD"}, b"{}") is None
    t.join()


def test_a_daemon_that_dies_after_accepting_gives_code_11(tmp_path):
    path = str(tmp_path / "d.sock")
    seen = {}

    def accept_then_die(conn, header):
        seen.update(header)
        conn.sendall(shim.ACCEPTED)
        conn.recv(1)
    t = _fake_daemon(path, accept_then_die)
    got = shim.forward({shim.SOCKET_ENV: path, "CNI_COMMAND": "ADD", "HOME": "/root"}, b"{}")
    t.join()
    assert isinstance(got, CniError) and got.code == TRY_AGAIN_LATER
    assert seen == {"op": b"CNI 1", "env": {shim.SOCKET_ENV: path, "CNI_COMMAND": "ADD"}}


def test_the_daemons_answer_is_relayed(tmp_path):
    path = str(tmp_path / "d.sock")

    def answer(conn, header):
        conn.sendall(shim.ACCEPTED)
        assert conn.recv(1) == shim.GO
        shim.send_frame(conn, b"7")
        shim.send_frame(conn, b'{"code": 7, "msg": "x"}\n')
    t = _fake_daemon(path, answer)
    assert shim.forward({shim.SOCKET_ENV: path, "CNI_COMMAND": "DEL"}, b"{}") == \
        (7, b'{"code": 7, "msg": "x"}\n')
    t.join()


def test_metrics_count_operations_and_read_the_store(tmp_path):
    from prometheus_client import generate_latest

    os.makedirs(tmp_path / "attachments")
    m = Metrics(str(tmp_path))
    m.feed({"op": "ADD", "result": "ok", "seconds": 0.03})
    m.feed({"op": "ADD", "result": "103", "seconds": 0.01})
    m.feed({"op": "RECONCILE", "released": 2, "errors": 0})
    text = generate_latest(m.registry).decode()
    assert 'amd_host_device_operations_total{command="ADD",result="ok"} 1.0' in text
    assert 'amd_host_device_operations_total{command="ADD",result="103"} 1.0' in text
    assert 'amd_host_device_operation_seconds_count{command="ADD"} 2.0' in text
    assert "amd_host_device_reconcile_released_total 2.0" in text
    assert "amd_host_device_attachments 0.0" in text
    assert "amd_host_device_orphaned_records 0.0" in text


def _reference_version_reply(stdin):
    """What main answered with json before: the shim's answer must be byte for byte this."""
    version = "1.1.0"
    try:
        asked = json.loads(stdin or b"{}").get("cniVersion")
        if isinstance(asked, str) and asked:
            version = asked
    except (ValueError, AttributeError, RecursionError):
        pass
    return (json.dumps({"cniVersion": version, "supportedVersions": list(CNI_VERSIONS)})
            + "\n").encode()


@pytest.mark.parametrize("stdin", [
    b"", b"{}", b'{"cniVersion": "1.1.0"}', b'{"cniVersion":"0.3.1"}', b' \n{"cniVersion": "0.4.0"} \r\n',
    b'{"cniVersion": "9.9.9"}', b'{"cniVersion": ""}', b'{"cniVersion": 1}', b'{"cniVersion": null}',
    b'[1, 2]', b'"1.0.0"', b"not json", b'{"cniVersion": "1.0.0"} trailing', b"{", b"   ",
    b'{"cniVersion": "a\\"b\\u00e9\\u2028"}', b'{"cniVersion": "\\ud800"}',
    b'\xef\xbb\xbf{"cniVersion": "1.0.0"}',
    b'{"cniVersion": "1.0.0", "cniVersion": "0.4.0"}', b'{"x": NaN, "cniVersion": "1.0.0"}',
    b'\xff\xfe', b'{"cniVersion": "\x01"}', b"[" * 100000 + b"]" * 100000,
    b'{"a": {"b": [1, 2.5e3, true, false, null]}, "cniVersion": "0.3.0"}',
])
def test_the_shims_version_answer_is_what_json_would_say(stdin):
    assert shim.version_reply(stdin, CNI_VERSIONS) == _reference_version_reply(stdin)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids), max_leaves=8),
       st.text())
def test_the_shims_version_answer_matches_json_on_any_document(doc, version):
    for obj in (doc, {"cniVersion": version, "x": doc}):
        stdin = json.dumps(obj).encode()
        assert shim.version_reply(stdin, CNI_VERSIONS) == _reference_version_reply(stdin)

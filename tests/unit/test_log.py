"""Log lines: logfmt, one line per event whatever the message holds; the node policy's log
file: 0600, never through a symlink, rotated by size, never filling the disk; and logging never
raises."""

import errno
import multiprocessing
import os
import stat

import pytest

from plugin import log


@pytest.fixture(autouse=True)
def clean_log():
    saved = dict(log._context)
    log._context.clear()
    yield
    log._context.clear()
    log._context.update(saved)
    log.set_sink(None)
    log.to_file("", 0)


def parse_logfmt(line):
    """A small logfmt reader (the format Loki's and Go's logfmt parsers read)."""
    import json

    out, i = {}, 0
    while i < len(line):
        eq = line.index("=", i)
        key = line[i:eq]
        if line[eq + 1] == '"':
            j = eq + 2
            while line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            out[key] = json.loads(line[eq + 1:j + 1])
            i = j + 2
        else:
            end = line.find(" ", eq)
            end = len(line) if end < 0 else end
            out[key] = line[eq + 1:end]
            i = end + 1
    return out


def capture():
    lines = []
    log.set_sink(lines.append)
    return lines


def test_line_shape_with_pod_container_and_device():
    lines = capture()
    log.bind(cmd="ADD", pod=log.pod_of({"K8S_POD_NAMESPACE": "team-a", "K8S_POD_NAME": "web-0",
                                         "IgnoreUnknown": "1"}),
             container="0123456789ab", ifname="net1")
    log.bind(device="0000:01:00.0", netdev="ens1f0")
    log.event("attached ens1f0 as net1")
    (line,) = lines
    assert line.endswith("\n") and line.count("\n") == 1
    fields = parse_logfmt(line.rstrip("\n"))
    assert list(fields)[:3] == ["ts", "level", "plugin"] and list(fields)[-1] == "msg"
    assert fields["level"] == "info" and fields["pod"] == "team-a/web-0"
    assert fields["container"] == "0123456789ab" and fields["device"] == "0000:01:00.0"
    assert fields["msg"] == "attached ens1f0 as net1"
    assert fields["ts"].endswith("Z") and "T" in fields["ts"]


@pytest.mark.parametrize("msg", ["a\nb", 'say "hi"', "a=b", "back\\slash", "tab\there",
                                 "line\u2028sep", "\x85next", "", "ünïcødé", "x" * 5000])
def test_any_message_is_one_line_and_reads_back(msg):
    """It reads back as display.safe made it: a log viewer that decodes the quoted value
    must not put a pod's terminal escape on a person's screen either."""
    from plugin.display import safe

    lines = capture()
    log.bind(ifname="we ird\n=x")
    log.warn(msg)
    (line,) = lines
    assert len(line.rstrip("\n").splitlines()) == 1
    fields = parse_logfmt(line.rstrip("\n"))
    assert fields["msg"] == safe(msg) and fields["ifname"] == "we ird\\x0a=x"
    assert fields["level"] == "warn" and all(c.isprintable() for c in fields["msg"])


def test_pod_of():
    assert log.pod_of({}) == ""
    assert log.pod_of({"K8S_POD_NAME": "p"}) == "p"
    assert log.pod_of({"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p"}) == "ns/p"


def test_a_broken_sink_never_raises():
    def broken(_line):
        raise OSError(errno.EPIPE, "Broken pipe")

    log.set_sink(broken)
    log.error("still fine")   # no exception


def test_log_file_gets_the_lines_0600(tmp_path):
    lines = capture()
    path = tmp_path / "ahd.log"
    log.to_file(str(path), 1 << 20)
    log.event("one")
    log.event("two")
    assert [parse_logfmt(x)["msg"] for x in path.read_text().splitlines()] == ["one", "two"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(lines) == 2   # the sink still gets every line


def test_log_file_is_never_written_through_a_symlink(tmp_path):
    lines = capture()
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "ahd.log").symlink_to(target)
    log.to_file(str(tmp_path / "ahd.log"), 1 << 20)
    log.event("one")
    log.event("two")
    assert target.read_text() == ""
    warnings = [x for x in lines if "level=warn" in x]
    assert len(warnings) == 1 and "no longer writing it" in warnings[0]


def test_log_file_refuses_a_fifo_without_hanging(tmp_path):
    lines = capture()
    fifo = tmp_path / "ahd.log"
    os.mkfifo(fifo)
    log.to_file(str(fifo), 1 << 20)
    log.event("one")
    assert any("no longer writing it" in x for x in lines)


def test_log_file_rotates_by_size_keeping_one(tmp_path):
    capture()
    path = tmp_path / "ahd.log"
    log.to_file(str(path), 4096)
    for i in range(200):
        log.event(f"event {i}")
    assert path.stat().st_size <= 4096 and (tmp_path / "ahd.log.1").stat().st_size <= 4096
    assert sorted(os.listdir(tmp_path)) == ["ahd.log", "ahd.log.1"]
    last = [parse_logfmt(x)["msg"] for x in path.read_text().splitlines()][-1]
    assert last == "event 199"


def test_log_file_is_not_opened_without_room_for_it(tmp_path):
    """A cap larger than the free space: the file is left alone rather than fill the disk."""
    lines = capture()
    log.to_file(str(tmp_path / "ahd.log"), 1 << 62)
    log.event("one")
    assert not (tmp_path / "ahd.log").exists() or (tmp_path / "ahd.log").stat().st_size == 0
    assert any("free" in x and "no longer writing it" in x for x in lines)


def test_a_full_disk_stops_the_file_not_the_command(tmp_path, monkeypatch):
    lines = capture()
    path = tmp_path / "ahd.log"
    log.to_file(str(path), 1 << 20)
    log.event("before")
    real_write = os.write

    def full(fd, data):
        if fd > 2 and os.fstat(fd).st_ino == path.stat().st_ino:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    log.event("during")
    monkeypatch.setattr(os, "write", real_write)
    log.event("after")   # stopped for the rest of the process: no retry against a full disk
    assert [parse_logfmt(x)["msg"] for x in path.read_text().splitlines()] == ["before"]
    assert sum("No space left" in x for x in lines) == 1


def _writer(path, n, tag):
    log.set_sink(lambda _line: None)
    log.to_file(path, 4096)
    for i in range(n):
        log.event(f"{tag} {i} " + "x" * 40)


def test_concurrent_writers_rotate_without_tearing_lines(tmp_path):
    """Many plugin processes append at once: every line in the files is whole, and the files
    stay within their caps."""
    path = str(tmp_path / "ahd.log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 300, f"w{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    for name in ("ahd.log", "ahd.log.1"):
        text = (tmp_path / name).read_text()
        assert len(text.encode()) <= 4096 and text.endswith("\n")
        for line in text.splitlines():
            assert parse_logfmt(line)["msg"].endswith("x" * 40)

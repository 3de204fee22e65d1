"""The only `ip` the plugin may run: its argv forms and its batch lines, as a checker.

Every line the logging `ip` wrapper saw (helpers.logging_ip) must parse here; anything else
(an injected `netns exec ...`, a second command on one line, a stray word) is a violation.
"""

from __future__ import annotations

import ipaddress
import re

IFNAME = re.compile(r"[^\s/:;\"'#\\]{1,15}")
ALTNAME = re.compile(r"[^\s/:;\"'#\\]{1,127}")
LABEL = re.compile(r"[^\s/;\"'#\\]{1,15}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5,31}")
NUM = re.compile(r"[0-9]{1,10}")
NETNS_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
NETNS_PATH = re.compile(r"/[A-Za-z0-9_./-]+")
ROUTE_TYPES = {"unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
               "unreachable", "prohibit", "throw", "nat", "unspec"}
ADDR_FLAGS = {"nodad", "noprefixroute", "home", "optimistic", "mngtmpaddr"}
METRICS = {"advmss", "window", "hoplimit", "initcwnd", "initrwnd", "reordering", "ssthresh",
           "cwnd", "rto_min", "quickack", "fastopen_no_cookie"}
FLAGS = ("arp", "multicast", "allmulticast", "promisc")
NUMERIC_SETTINGS = ("mtu", "txqueuelen", "group", "gso_max_size", "gso_max_segs",
                    "gro_max_size")
READS = ({"address show dev": 1, "route show table all dev": 1, "link show dev": 1},
         {"link show"})


class Bad(Exception):
    pass


def _addr(tok: str) -> None:
    if "%" in tok:
        raise Bad(f"scope ID in {tok!r}")
    try:
        ipaddress.ip_address(tok)
    except ValueError:
        raise Bad(f"not an address: {tok!r}") from None


def _iface(tok: str) -> None:
    if "%" in tok:
        raise Bad(f"scope ID in {tok!r}")
    try:
        ipaddress.ip_interface(tok)
    except ValueError:
        raise Bad(f"not address/prefix: {tok!r}") from None


def _match(rx: re.Pattern[str], tok: str) -> None:
    if not rx.fullmatch(tok):
        raise Bad(f"{tok!r} does not match {rx.pattern}")


class _Toks:
    def __init__(self, line: str) -> None:
        self.t = line.split(" ")
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Bad(f"expected {want or 'a word'} at {self.i}, got {tok!r}")
        self.i += 1
        return tok

    def opt(self, word: str) -> bool:
        if self.peek() == word:
            self.i += 1
            return True
        return False

    def end(self) -> None:
        if self.peek() is not None:
            raise Bad(f"trailing words from {self.peek()!r}")


def batch_line(line: str) -> None:
    """One line of an `ip -batch` the plugin wrote; raises Bad."""
    if line in ("link show", "nexthop show", "route show table all default"):
        return
    t = _Toks(line)
    first = t.take()
    if first == "link":
        verb = t.take()
        if verb == "show":
            t.take("dev")
            _match(IFNAME, t.take())
            return t.end()
        if verb == "property":  # one altname a line: the node's back, the pod's away
            if t.take() not in ("add", "del"):
                raise Bad("link property")
            t.take("dev")
            _match(IFNAME, t.take())
            t.take("altname")
            _match(ALTNAME, t.take())
            return t.end()
        if verb != "set":
            raise Bad(f"link {verb}")
        t.take("dev")
        _match(IFNAME, t.take())
        what = t.take()
        if what in ("up", "down"):
            pass
        elif what in ("name", "alias", "master"):  # alias: the node name, or a temporary one
            _match(IFNAME, t.take())
        elif what in ("address", "broadcast"):
            _match(MAC, t.take())
        elif what == "mode":  # IFLA_LINKMODE
            if t.take() not in ("default", "dormant"):
                raise Bad("link set mode")
        elif what in ("xdpgeneric", "xdpdrv", "xdpoffload"):  # detach only, never attach
            t.take("off")
        elif what in NUMERIC_SETTINGS:
            _match(NUM, t.take())
        elif what in FLAGS:  # each flag at most once, in this order
            order = FLAGS[FLAGS.index(what):]
            while True:
                if t.take() not in ("on", "off"):
                    raise Bad(f"link set {what}")
                order = order[1:]
                nxt = t.peek()
                if nxt is None:
                    break
                if nxt not in order:
                    raise Bad(f"link set ... {nxt}")
                order = order[order.index(nxt):]
                t.take()
        else:
            raise Bad(f"link set {what}")
        return t.end()
    if first == "address":
        verb = t.take()
        if verb == "show":
            t.take("dev")
            _match(IFNAME, t.take())
            return t.end()
        if verb != "replace":
            raise Bad(f"address {verb}")
        local = t.take()
        if t.opt("peer"):
            _addr(local)
            _iface(t.take())
        else:
            _iface(local)
        if t.opt("broadcast"):
            _addr(t.take())
        t.take("dev")
        _match(IFNAME, t.take())
        if t.opt("label"):
            _match(LABEL, t.take())
        if t.opt("valid_lft"):
            _match(NUM, t.take())
            t.take("preferred_lft")
            _match(NUM, t.take())
        while t.peek() is not None:
            if t.take() not in ADDR_FLAGS:
                raise Bad("address flag")
        return None
    if first == "route":
        verb = t.take()
        if verb == "show":
            t.take("table")
            t.take("all")
            t.take("dev")
            _match(IFNAME, t.take())
            return t.end()
        if verb != "replace":
            raise Bad(f"route {verb}")
        if t.peek() in ROUTE_TYPES:
            t.take()
        dst = t.take()
        if "%" in dst:
            raise Bad(f"scope ID in {dst!r}")
        try:
            ipaddress.ip_network(dst, strict=True)
        except ValueError:
            raise Bad(f"route dst {dst!r}") from None
        if t.opt("via"):
            if t.peek() in ("inet", "inet6"):
                t.take()
            _addr(t.take())
        t.take("dev")
        _match(IFNAME, t.take())
        for word in ("table", "proto", "scope"):
            t.take(word)
            _match(NUM, t.take())
        if t.opt("metric"):
            _match(NUM, t.take())
        if t.opt("src"):
            _addr(t.take())
        if t.opt("mtu"):
            _match(NUM, t.take())
        while t.peek() in METRICS:
            t.take()
            _match(NUM, t.take())
        if t.opt("pref") and t.take() not in ("low", "medium", "high"):
            raise Bad("pref")
        t.opt("onlink")
        return t.end()
    raise Bad(f"command {first!r}")


def ip_argv(words: list[str]) -> None:
    """`ip [-n NAME] OPTS...` as the plugin runs it."""
    t = list(words)
    if t[:1] == ["-n"]:
        if len(t) < 2:
            raise Bad("-n without a name")
        _match(NETNS_NAME, t[1])
        t = t[2:]
    if t in (["-V"], ["-force", "-batch", "-"]):
        return
    if t[:1] != ["-j"]:
        return batch_line(" ".join(t))
    t = t[1:]
    while t[:1] in (["-N"], ["-d"], ["-0"]):  # numbers, details, links only: read-only
        t = t[1:]
    if t in (["-batch", "-"], ["-force", "-batch", "-"]):  # reads, each line checked
        return None
    return batch_line(" ".join(t))


def log_line(line: str) -> None:
    """One line of the wrapper's log; raises Bad."""
    kind, _, rest = line.partition(" ")
    if kind == "L":
        return batch_line(rest)
    if kind != "A":
        raise Bad(f"not a log line: {line!r}")
    words = rest.split(" ")
    if words[0] == "ip":
        return ip_argv(words[1:])
    if words[0] == "nsenter" and len(words) > 2 and words[1].startswith("--net=") \
            and words[2] == "ip":
        _match(NETNS_PATH, words[1][len("--net="):])
        return ip_argv(words[3:])
    if words[0] == "nsenter" and len(words) > 4 and words[1].startswith("--net=") \
            and words[2] in ("sh", "/bin/sh") and words[3] == "-c":
        _match(NETNS_PATH, words[1][len("--net="):])
        return accept_dad(" ".join(words[4:]))
    raise Bad(f"unexpected tool {words[0]!r}")


def accept_dad(text: str) -> None:
    """plugin/dad.py's two fixed scripts in the pod's netns: read the default and all
    accept_dad and turn the default off; put back the default (and the NIC's) to a number."""
    from plugin import dad

    found = [(tool, text[len(script) + 4:].split(" ")) for script, tool in
             ((dad._OFF, "off"), (dad._PUT, "put")) if text.startswith(script + " sh ")]
    if not found:
        raise Bad(f"sh script {text[:60]!r}")
    tool, args = found[0]
    if tool == "put":
        if not re.fullmatch(r"-?[0-9]", args[0]):
            raise Bad(f"accept_dad value {args[0]!r}")
        args = args[1:]
    names = []
    for path in args:
        m = re.fullmatch(r"/proc/sys/net/ipv6/conf/([^/]+)/accept_dad", path)
        if not m:
            raise Bad(f"{tool} of {path!r}")
        names.append(m[1])
    if tool == "off" and names != ["default", "all"]:
        raise Bad(f"off of {names}")
    if tool == "put" and (not names or names[0] != "default" or len(names) > 2
                          or any(n in ("all", "default") for n in names[1:])):
        raise Bad(f"put to {names}")
    for name in names[1:]:
        _match(IFNAME, name)


def violations(log_text: str) -> list[str]:
    bad = []
    for line in log_text.splitlines():
        try:
            log_line(line)
        except Bad as e:
            bad.append(f"{line!r}: {e}")
    return bad

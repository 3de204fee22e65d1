"""GC (CNI 1.1): release every attachment of this network the runtime no longer knows.

The runtime's list is the valid attachments *of this network*; records of other networks are
left to their own GC and to reconcile. Releasing is DEL's (plugin/delete.py `give_back_all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from plugin import log
from plugin.cni import Env
from plugin.config import NetConf
from plugin.delete import MAX_ORPHAN_SECONDS, give_back_all
from plugin.errors import INVALID_CONFIG, NETWORK_COMMAND_FAILED, CniError
from plugin.state import Record, StateStore

if TYPE_CHECKING:
    from plugin.node import Node

VALID_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def valid_attachments(raw: Mapping[str, Any]) -> set[tuple[str, str]]:
    key = next((k for k in VALID_KEYS if k in raw), None)
    if key is None:
        raise CniError(INVALID_CONFIG, f"GC needs {VALID_KEYS[0]}")
    items = raw[key]
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("containerID"), str)
            and isinstance(i.get("ifname"), str) for i in items):
        raise CniError(INVALID_CONFIG, f"invalid {key}: must be a list of "
                       "{{containerID, ifname}} objects")
    return {(i["containerID"], i["ifname"]) for i in items}


def gc_candidates(records: Iterable[Record], network: str,
                  valid: set[tuple[str, str]]) -> tuple[list[Record], list[Record]]:
    """Pure: (released, left alone). The runtime's list is the valid attachments *of this
    network*: a record of another network, or of none recorded (older records), is not GC's
    to judge; reconcile still releases it when its pod is gone."""
    released: list[Record] = []
    other: list[Record] = []
    for r in records:
        if r.network != network:
            other.append(r)
        elif (r.container_id, r.ifname) not in valid:
            released.append(r)
    return released, other


def gc(node: Node, env: Env, conf: NetConf, raw: Mapping[str, Any]) -> None:
    """CNI 1.1 GC: restore and forget every attachment of this network the runtime no longer
    knows."""
    valid = valid_attachments(raw)
    store = StateStore(conf.state_dir)
    stale, other = gc_candidates(store.records(), conf.name, valid)
    for r in other:
        log.event(f"GC of {conf.name!r} leaves {r.attachment} alone: its network is "
                  f"{r.network or 'not recorded'}")
    errors = give_back_all(node, store, stale, env.path, conf.lock_timeout, MAX_ORPHAN_SECONDS)
    if errors:
        raise CniError(NETWORK_COMMAND_FAILED, f"GC finished with {len(errors)} errors",
                       "; ".join(errors)[:1000])

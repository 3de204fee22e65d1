"""DEL: give the NIC back to the node with the configuration it had (see plugin/release.py)."""

from __future__ import annotations

from plugin import legacy, log, release
from plugin.cni import Env
from plugin.config import NetConf
from plugin.state import StateStore


def delete(env: Env, conf: NetConf) -> None:
    store = StateStore(conf.state_dir)
    record = store.load(env.container_id, env.ifname)
    if record is None:
        entry = legacy.find(conf.state_dir, conf.device_id)
        if entry is None:
            log.event("nothing recorded for this attachment; nothing to give back")
            return
        log.bind(device=entry.device_id, netdev=entry.host_ifname)
        what = release.release_legacy(store, entry, env, conf.lock_timeout)
        log.event(f"pod from before the upgrade (AMD Go plugin mapping): {what}")
        return
    log.bind(device=record.device_key, netdev=record.snapshot.name)
    what = release.release(store, record, env, conf.lock_timeout)
    if what == "gone":
        log.event("a concurrent DEL already gave the NIC back")

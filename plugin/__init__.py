"""amd-host-device: give a pod a node NIC with the IP configuration it had, and give it back."""

__version__ = "0.1.0"

# The CNI versions we speak. Here, not in plugin.cni, so VERSION can answer without importing
# anything else.
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# What we answer in when the caller's version is unknown, and what records keep results in.
NEWEST_CNI_VERSION = CNI_VERSIONS[-1]


def entry_path() -> str:
    """The path the runtime exec'd to run this plugin: the bundle's launcher (as called) or the
    venv's console script. For code that re-execs the plugin (plugin/tools.py)."""
    from plugin.tools import entry_path as found

    return found()

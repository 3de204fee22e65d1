"""amd-host-device: give a pod a node NIC with the IP configuration it had, and give it back."""

__version__ = "0.1.0"

"""What the tests stand on: a simulated node in namespaces (simnode), Multus-shaped invocation
(multus), a containerd of its own driven over CRI (containerd_cri), the node-targeted suite's
view of a node (nodeenv), and the grammar every `ip` line must match (grammar).

Imported as `tests.support.*` (pytest's `pythonpath = ["."]`); `make demo` and `make bench`
run `hack/` tools with `python -m` from the repository root, so they import it the same way.
"""

"""Helpers for tests of pypdk and of apps built on it.

- `netns`: network namespaces, veth pairs and tap devices made with `ip`
  commands, as plain functions and context managers that clean up;
- `frames`: frames into mbufs and out of a namespace, checksum and tshark checks;
- `leaks`: what a test left behind (namespaces, taps, XDP programs, hugepage files);
- `plugin`: the pytest plugin (fixtures and the leftovers check; registered
  by the `pytest11` entry point `pypdk`);
- `cluster`: vRouter compute nodes, VMs and an underlay in namespaces, and
  the vRouter processes on them (the end-to-end tests and the demo);
- `vm`: QEMU guests for tests that need a whole machine.
"""

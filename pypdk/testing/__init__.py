"""Helpers for tests of pypdk and of apps built on it.

`pypdk.testing.netns`: network namespaces, veth pairs and tap devices made
with `ip` commands, as plain functions and context managers that clean up.
The pytest fixtures that wrap them live in `tests/conftest.py`.
"""

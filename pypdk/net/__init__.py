"""Packet headers, checksums, RSS, longest-prefix match and flow tables (see DESIGN.md)."""

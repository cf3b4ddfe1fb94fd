"""The drop reasons' names, in the order of the enum in drop.pxd (as TF's dropstats spells them)."""

DROP_NAMES = ("discard", "no_route", "l2_no_route", "invalid_label", "invalid_vni", "invalid_nh",
              "invalid_if", "invalid_protocol", "flow_action_drop", "flow_table_full",
              "ttl_exceeded", "invalid_packet", "checksum_error", "interface_drop", "no_mbuf",
              "mtu_exceeded", "fragments", "vlan", "trap_no_if", "invalid_arp", "push_fail")
assert len(DROP_NAMES) == DROP_MAX

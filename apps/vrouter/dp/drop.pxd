# Drop reasons (Tungsten Fabric's dropstats, snake_case): why the datapath
# freed a packet. Counted per reason globally and per input vif
# (vr_stats.drop / vif_drop, vrouter.pxd); DROP_NAMES in drop.pyx is the
# tuple of names in this order (dropstats, --stats-json), keep them in step.

cdef enum:
    DROP_DISCARD = 0
    DROP_NO_ROUTE
    DROP_L2_NO_ROUTE
    DROP_INVALID_LABEL
    DROP_INVALID_VNI
    DROP_INVALID_NH
    DROP_INVALID_IF
    DROP_INVALID_PROTOCOL
    DROP_FLOW_ACTION_DROP
    DROP_FLOW_TABLE_FULL
    DROP_TTL_EXCEEDED
    DROP_INVALID_PACKET
    DROP_CHECKSUM_ERROR
    DROP_INTERFACE_DROP
    DROP_NO_MBUF
    DROP_MTU_EXCEEDED
    DROP_FRAGMENTS
    DROP_VLAN
    DROP_TRAP_NO_IF
    DROP_INVALID_ARP
    DROP_PUSH
    DROP_MAX

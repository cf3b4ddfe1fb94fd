/* pd_lpm.h: the entry formats of the LPM tables (logic: pypdk/net/lpm.pxd).
 *
 * Every table slot is one 32-bit word, so a reader's load sees a whole entry
 * or the previous one, never a mix:
 *
 *   IPv4  bit 31 VALID | bit 30 EXT | bits 24-29 depth (1-32) | bits 0-23 next hop
 *   IPv6  bit 31 VALID | bit 30 EXT | bits 22-29 depth (1-128) | bits 0-21 next hop
 *
 * With EXT set, the low bits (24 or 22) are instead the index of a group of
 * 256 entries for the next 8 address bits. Not VALID: no route of depth >= 1
 * holds the address; the /0 route (kept outside the tables) applies. */
#ifndef PD_LPM_H
#define PD_LPM_H

#include <stdint.h>

#define PD_LPM_VALID          0x80000000u
#define PD_LPM_EXT            0x40000000u
#define PD_LPM_GROUP_ENTRIES  256u
#define PD_LPM_TBL24_ENTRIES  (1u << 24)
#define PD_LPM_MISS           0xFFFFFFFFu  /* bulk lookups: no route */

#define PD_LPM4_DEPTH_SHIFT   24
#define PD_LPM4_NH_MASK       0x00FFFFFFu
#define PD_LPM4_MAX_DEPTH     32

#define PD_LPM6_DEPTH_SHIFT   22
#define PD_LPM6_NH_MASK       0x003FFFFFu
#define PD_LPM6_MAX_DEPTH     128

#endif

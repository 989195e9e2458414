/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* The BPF target has no arch uapi headers; the byte order is the target's
 * (bpf2go -target bpfel). Modelled on arch/arm64's uapi asm/byteorder.h,
 * which picks the same way. Written for spooky; see ../README.md. */
#ifndef _SPOOKY_ASM_BYTEORDER_H
#define _SPOOKY_ASM_BYTEORDER_H

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <linux/byteorder/little_endian.h>
#else
#error "spooky's vendored headers only carry linux/byteorder/little_endian.h; build with -target bpfel"
#endif

#endif /* _SPOOKY_ASM_BYTEORDER_H */

/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* The BPF target has no arch uapi headers. Like the wrappers Kbuild
 * generates for architectures without their own (scripts/Makefile.asm-generic),
 * this forwards to the generic one. Written for spooky; see ../README.md. */
#include <asm-generic/swab.h>

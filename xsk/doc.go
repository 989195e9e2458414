// Package xsk opens AF_XDP sockets (Linux Documentation/networking/af_xdp.rst):
// a UMEM of equal frames shared with the kernel, its fill and completion
// rings, and the socket's RX and TX rings, all mapped into this process.
//
// An XDP program hands a frame to a socket with bpf_redirect_map on an
// XSKMAP whose key is the frame's RX queue (one socket per queue: the
// kernel refuses a redirect to a socket bound to another queue). The frame
// appears on the socket's RX ring as an offset into the UMEM; a frame put
// on the TX ring leaves through the interface and comes back on the
// completion ring, after which it can receive again.
//
// The package knows nothing of what the frames carry. A Socket is not safe
// for concurrent use: run one goroutine per queue.
package xsk

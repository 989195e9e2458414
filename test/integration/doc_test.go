// Package integration runs spooky's parts together in a netns lab
// (test/netns): real quic-go clients and servers as processes in their own
// network namespaces, joined by a bridge, with packets captured on the wire.
// The tests need root and skip without it.
package integration

// Package netns builds a small network of hosts for integration tests: each
// host is a Linux network namespace with one veth, and all veths meet on a
// bridge that lives in a namespace of its own, so a lab never touches the
// root namespace's links.
//
// The plan is fixed so tests, docs and captures agree (see docs/lab.md):
//
//	client      198.18.0.1      2001:db8::1
//	lb          198.18.0.2      2001:db8::2
//	backend i   198.18.0.(11+i) 2001:db8::(0xb+i)   (i from 0)
//	VIP         198.18.0.10     2001:db8::a          (not assigned by default)
//
// 198.18.0.0/15 is set aside for benchmarks (RFC 2544) and 2001:db8::/32 for
// documentation (RFC 3849): nothing a lab sends can leave the machine.
//
// Namespaces are named "spk-<pid>-<n>-<host>", so [New] can tell the leftovers
// of a crashed run (whose PID is gone) from those of a run still going, and
// removes the former. Everything a lab made, and every process started in it,
// is removed by tb.Cleanup whether the test passes, fails or panics.
package netns

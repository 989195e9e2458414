package integration

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/test/netns"
)

const backendPort = 443

// requestsPerConn is enough for the client to send many 1-RTT (short
// header) packets to the CID the backend chose.
const requestsPerConn = 5

// cidStats are what a capture saw of one backend's connection IDs.
type cidStats struct {
	longSCIDs  int      // long-header packets from the backend, SCID decoded
	shortDCIDs int      // short-header packets to the backend, DCID decoded
	wrong      []string // CIDs that did not decode to the backend's server ID
}

func TestBackendsIssueRoutableConnectionIDsOnTheWire(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 3})

	// Two configs side by side, as during a config rotation (draft-21 §3.1):
	// the IPv4 listeners use a plaintext one, the IPv6 listeners an
	// encrypted one; both make 11-octet CIDs.
	plain := cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 8}
	encrypted := cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 8,
		Key: []byte{0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f}}
	dec, err := cid.NewDecoder(plain, encrypted)
	if err != nil {
		t.Fatal(err)
	}
	cidLen := plain.Len()

	var backends []*backend
	for i, h := range lab.Backends {
		sid := []byte{0x0b, byte(i + 1)}
		backends = append(backends,
			mustStartBackend(t, h, h.Name, netip.AddrPortFrom(h.IPv4, backendPort), plain, sid),
			mustStartBackend(t, h, h.Name, netip.AddrPortFrom(h.IPv6, backendPort), encrypted, sid))
	}

	capture, err := lab.Client.Capture()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		local := netns.ClientIPv4
		if b.addr.Addr().Is6() {
			local = netns.ClientIPv6
		}
		client := mustHTTP3Client(t, lab.Client, local)
		url := fmt.Sprintf("https://%s/", b.addr)
		for range requestsPerConn {
			mustGetBackendName(t, client, url, b.name)
		}
	}
	frames, err := capture.Stop()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}

	stats := map[netip.Addr]*cidStats{}
	byAddr := map[netip.Addr]*backend{}
	for _, b := range backends {
		stats[b.addr.Addr()] = &cidStats{}
		byAddr[b.addr.Addr()] = b
	}
	check := func(b *backend, st *cidStats, what string, c []byte) bool {
		got, err := dec.ServerID(nil, c)
		if err != nil || !bytes.Equal(got, b.serverID) {
			st.wrong = append(st.wrong, fmt.Sprintf("%s %x → %x (%v)", what, c, got, err))
			return false
		}
		return true
	}
	for _, f := range frames {
		d, ok := netns.ParseUDP(f.Data)
		if !ok {
			continue
		}
		switch {
		case d.Src.Port() == backendPort && byAddr[d.Src.Addr()] != nil && !f.Outgoing:
			// From a backend: the SCID of a long header is the CID the
			// backend chose for itself (RFC 9000 §7.2).
			h, err := cid.ParseHeader(d.Payload, 0)
			if err != nil || !h.Long || h.Version == 0 {
				continue
			}
			b, st := byAddr[d.Src.Addr()], stats[d.Src.Addr()]
			if check(b, st, h.Type.String()+" SCID", h.SCID) {
				st.longSCIDs++
			}
		case d.Dst.Port() == backendPort && byAddr[d.Dst.Addr()] != nil && f.Outgoing:
			// To a backend: a short header's DCID is a CID the backend
			// issued; long headers may still carry the client's random
			// Initial DCID (RFC 9000 §7.2), so only short ones count.
			h, err := cid.ParseHeader(d.Payload, cidLen)
			if err != nil || h.Long {
				continue
			}
			b, st := byAddr[d.Dst.Addr()], stats[d.Dst.Addr()]
			if check(b, st, "short DCID", h.DCID) {
				st.shortDCIDs++
			}
		}
	}

	total := 0
	for _, b := range backends {
		family := "IPv4"
		if b.addr.Addr().Is6() {
			family = "IPv6"
		}
		st := stats[b.addr.Addr()]
		total += st.longSCIDs + st.shortDCIDs
		t.Run(fmt.Sprintf("%s over %s uses only CIDs carrying server ID %x", b.name, family, b.serverID), func(t *testing.T) {
			if len(st.wrong) > 0 {
				t.Errorf("%d CIDs do not decode to %x: %v", len(st.wrong), b.serverID, st.wrong)
			}
			if st.longSCIDs == 0 {
				t.Errorf("no long-header packet from %s seen on the client's veth", b.addr)
			}
			if st.shortDCIDs == 0 {
				t.Errorf("no short-header packet to %s seen: the client never used a CID the backend issued", b.addr)
			}
			t.Logf("%s: %d long-header SCIDs, %d short-header DCIDs decoded", b.addr, st.longSCIDs, st.shortDCIDs)
		})
	}
	// Each connection has at least a handshake's worth of long-header
	// packets and a few requests' worth of short-header ones.
	if want := len(backends) * (2 + requestsPerConn); total < want {
		t.Errorf("decoded %d CIDs in %d frames, want at least %d", total, len(frames), want)
	}
}

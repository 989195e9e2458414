package bpf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// The Go constants repeat include/spooky.h; the object is the truth.
func TestConstantsMatchTheObject(t *testing.T) {
	spec, err := LBSpec()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{
		lbMapVips:      MaxVIPs,
		lbMapBackends:  MaxBackends,
		lbMapMaglev:    2 * MaxVIPs,
		lbMapFlowCache: FlowCacheSize * uint32(mustPossibleCPUs(t)),
		lbMapVipStats:  MaxVIPs,
		lbMapCidCache:  65536,
		lbMapServerIds: 65536,
	} {
		if got := spec.Maps[name].MaxEntries; got != want {
			t.Errorf("map %s has %d entries, Go says %d", name, got, want)
		}
	}
	if got := spec.Maps[lbMapMaglev].InnerMap.MaxEntries; got != MaglevMaxSize {
		t.Errorf("maglev inner map has %d entries, Go says %d", got, MaglevMaxSize)
	}
	if got := len(VIPInfo{}.Cid); got != CIDConfigs {
		t.Errorf("VIPInfo has %d CID configs, Go says %d", got, CIDConfigs)
	}
}

func TestReasonsHaveNames(t *testing.T) {
	seen := map[string]bool{}
	for r := range NumReasons {
		name := Reason(r).String()
		if name == "" || seen[name] || strings.HasPrefix(name, "reason_") {
			t.Errorf("reason %d has name %q", r, name)
		}
		seen[name] = true
	}
	if got := lbReasonREASON_PASS_NOT_VIP.String(); got != "pass_not_vip" {
		t.Errorf("REASON_PASS_NOT_VIP is called %q, want pass_not_vip", got)
	}
	if got := decapDecapReasonDECAP_PASS_NOT_LOCAL.String(); got != "pass_not_local" {
		t.Errorf("DECAP_PASS_NOT_LOCAL is called %q, want pass_not_local", got)
	}
}

func TestKeyConstructors(t *testing.T) {
	k := NewVIPKey(netip.MustParseAddrPort("198.18.10.1:443"))
	if k.Addr != [16]byte{198, 18, 10, 1} || k.Port != 0xbb01 || k.Family != FamilyIPv4 || k.Proto != 17 {
		t.Errorf("NewVIPKey = %+v", k)
	}
	if k := NewVIPKey(netip.MustParseAddrPort("[::ffff:198.18.10.1]:443")); k.Family != FamilyIPv4 {
		t.Errorf("an IPv4-mapped VIP is keyed as family %d, want IPv4", k.Family)
	}
	f := NewFlowKey(3, netip.MustParseAddrPort("[2001:db8::5]:50000"))
	if f.VipId != 3 || f.SrcPort != 0x50c3 || f.Src != netip.MustParseAddr("2001:db8::5").As16() {
		t.Errorf("NewFlowKey = %+v", f)
	}
	for _, n := range []int{0, 16} {
		if _, err := NewServerIDKey(0, make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("server ID of %d octets: err = %v, want ErrInvalidKey", n, err)
		}
	}
	for _, n := range []int{0, 21} {
		if _, err := NewCIDKey(0, make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("CID of %d octets: err = %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := NewBackend(netip.Addr{}, nil, nil, 0); err == nil {
		t.Error("a backend without an address was accepted")
	}
	if _, err := NewBackend(netip.MustParseAddr("198.18.1.1"), []byte{1, 2, 3}, nil, 0); err == nil {
		t.Error("a 3-octet MAC was accepted")
	}
	if _, err := NewLBConfig(lbMAC, netip.MustParseAddr("2001:db8::1"), netip.Addr{}); err == nil {
		t.Error("an IPv6 address as IPv4 source was accepted")
	}
	if _, err := NewMaglevTable(nil); err == nil {
		t.Error("an empty Maglev table was accepted")
	}
}

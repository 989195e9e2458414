package config

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

const minimalBGP = minimalL4 + `bgp:
  asn: 65001
  router_id: 198.18.0.2
  peers:
    - {address: 198.18.0.254, asn: 65000}
`

func TestBGPSectionGetsOneDefaultPerSetting(t *testing.T) {
	c := mustParse(t, minimalBGP)
	b := c.BGP
	if b == nil {
		t.Fatal("bgp section not decoded")
	}
	p := b.Peers[0]
	if b.ASN != 65001 || b.RouterID != netip.MustParseAddr("198.18.0.2") || b.ListenPort != 0 ||
		b.WithdrawGrace != DefaultBGPWithdrawGrace || p.HoldTime != DefaultBGPHoldTime || p.Port != DefaultBGPPort ||
		p.ASN != 65000 || p.Password != "" || len(b.VIPs) != 0 {
		t.Errorf("bgp = %+v, peer %+v: want the defaults (no listening, grace %v, hold time %v, port %d)",
			b, p, DefaultBGPWithdrawGrace, DefaultBGPHoldTime, DefaultBGPPort)
	}
	if c := mustParse(t, minimalL4); c.BGP != nil {
		t.Errorf("a file without a bgp section has bgp %+v", c.BGP)
	}
}

func TestBGPSectionReadsEverySetting(t *testing.T) {
	c := mustParse(t, minimalL4+`bgp:
  asn: 4200000000
  router_id: 198.18.0.2
  listen_port: 1179
  withdraw_grace: 0s
  next_hop_ipv4: 198.18.0.3
  next_hop_ipv6: 2001:db8::3
  peers:
    - {address: 198.18.0.254, asn: 65000, hold_time: 3s, port: 10179, password: s3cret}
    - {address: "2001:db8::fe", asn: 65000}
  vips:
    - {address: 198.18.0.10, communities: ["65001:100", "0:65535"], med: 10}
`)
	b := c.BGP
	if b.ASN != 4200000000 || b.ListenPort != 1179 || b.WithdrawGrace != 0 ||
		b.NextHopIPv4 != netip.MustParseAddr("198.18.0.3") || b.NextHopIPv6 != netip.MustParseAddr("2001:db8::3") {
		t.Errorf("bgp = %+v", b)
	}
	if p := b.Peers[0]; p.HoldTime != 3*time.Second || p.Port != 10179 || p.Password != "s3cret" {
		t.Errorf("peer 0 = %+v", p)
	}
	v, ok := b.VIP(netip.MustParseAddr("198.18.0.10"))
	cs, err := v.CommunityValues()
	if !ok || err != nil || !slices.Equal(cs, []uint32{65001<<16 | 100, 65535}) || v.MED == nil || *v.MED != 10 {
		t.Errorf("vip = %+v (%v, %v), communities %v", v, ok, err, cs)
	}
}

func TestBrokenBGPSectionsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		bgp  string
		want []string
	}{
		{
			name: "required fields missing",
			bgp:  "bgp:\n  listen_port: 179\n",
			want: []string{
				`8:3: missing required field "asn"`,
				`8:3: missing required field "router_id"`,
				`8:3: peers: at least one peer is required to announce anything`,
			},
		},
		{
			name: "numbers out of range",
			bgp: `bgp:
  asn: 4294967296
  router_id: "2001:db8::2"
  listen_port: 70000
  withdraw_grace: 10m
  peers:
    - {address: 198.18.0.254, asn: 0, hold_time: 2s, port: 0}
    - {address: 198.18.0.253, asn: 65000, hold_time: 3500ms}
`,
			want: []string{
				`8:8: asn: 4294967296 is out of range 1..4294967295`,
				`9:14: router_id: 2001:db8::2 is not a BGP identifier: write a non-zero IPv4 address, usually the host's own (RFC 6286)`,
				`10:16: listen_port: 70000 is out of range 1..65535`,
				`11:19: withdraw_grace: 10m0s is longer than 5m0s`,
				`13:36: asn: 0 is out of range 1..4294967295`,
				`13:50: hold_time: 2s is out of range 3s..18h12m15s (RFC 4271 §4.2)`,
				`13:60: port: 0 is out of range 1..65535`,
				`14:54: hold_time: 3.5s is not a whole number of seconds, as BGP counts it`,
			},
		},
		{
			name: "peers and VIPs must be unique and real",
			bgp: `bgp:
  asn: 65001
  router_id: 198.18.0.2
  next_hop_ipv4: "2001:db8::2"
  peers:
    - {address: 198.18.0.254, asn: 65000}
    - {address: 198.18.0.254, asn: 65000, password: 012345678901234567890123456789012345678901234567890123456789012345678901234567890}
    - {address: 0.0.0.0, asn: 65000}
  vips:
    - {address: 198.18.0.99}
    - {address: 198.18.0.10, communities: ["65001", "65536:1"], med: -1}
    - {address: 198.18.0.10}
`,
			want: []string{
				`10:18: next_hop_ipv4: 2001:db8::2 is not an IPv4 address`,
				`13:17: address: peer 198.18.0.254 is already defined (first at 12:17)`,
				`13:53: password: 81 octets; TCP MD5 keys hold at most 80`,
				`14:17: address: 0.0.0.0 is not a unicast address: it is the unspecified address, which names no host (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2)`,
				`16:17: address: 198.18.0.99 is not the address of any service`,
				`17:44: communities: "65001" is not ASN:value with each part 0..65535 (RFC 1997)`,
				`17:53: communities: "65536:1" is not ASN:value with each part 0..65535 (RFC 1997)`,
				`17:70: med: -1 is out of range 0..4294967295`,
				`18:17: address: VIP 198.18.0.10 is already listed (first at 17:17)`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, minimalL4+tc.bgp)
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", join(got), join(tc.want))
			}
		})
	}
}

func join(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}

func TestBGPExampleFileIsValid(t *testing.T) {
	c, err := Load("../examples/bgp.yaml")
	if err != nil {
		t.Fatalf("examples/bgp.yaml does not validate:\n%v", err)
	}
	if c.BGP == nil || len(c.BGP.Peers) != 2 || len(c.BGP.VIPs) != 1 {
		t.Errorf("examples/bgp.yaml has bgp %+v, want two peers and one vip", c.BGP)
	}
}

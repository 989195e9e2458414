package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spooky-lb/spooky/cid"
)

// recordingConn records the DCIDs of short-header packets a client sends.
type recordingConn struct {
	net.PacketConn
	cidLen int
	mu     sync.Mutex
	dcids  [][]byte
}

func (c *recordingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	// RFC 9000 §17.3: short header, first bit 0, DCID right after the first octet.
	if len(p) > 1+c.cidLen && p[0]&0x80 == 0 {
		c.mu.Lock()
		c.dcids = append(c.dcids, bytes.Clone(p[1:1+c.cidLen]))
		c.mu.Unlock()
	}
	return c.PacketConn.WriteTo(p, addr)
}

func TestConnectionIDsCarryTheTierServerID(t *testing.T) {
	ccfg := cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 6}
	serverID := []byte{0xab, 0xcd}
	gen, err := cid.NewGenerator(ccfg, serverID)
	if err != nil {
		t.Fatal(err)
	}
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
	cfg.ConnectionIDGenerator = gen
	s := mustServer(t, cfg)
	addr, _ := net.ResolveUDPAddr("udp", mustAddr(t, s))

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{PacketConn: udp, cidLen: ccfg.Len()}
	qtr := &quic.Transport{Conn: rec}
	defer qtr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := qtr.Dial(ctx, addr, &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cc := (&http3.Transport{}).NewClientConn(conn)
	req, _ := http.NewRequest("GET", "https://app.example.com/", nil)
	res, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	dec, err := cid.NewDecoder(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dcids) == 0 {
		t.Fatal("the client sent no short-header packets")
	}
	for _, d := range rec.dcids {
		got, err := dec.ServerID(nil, d)
		if err != nil || !bytes.Equal(got, serverID) {
			t.Fatalf("client addressed the server with CID %x: server ID %x (%v), want %x", d, got, err, serverID)
		}
	}
}

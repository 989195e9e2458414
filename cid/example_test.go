package cid_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
	"github.com/spooky-lb/spooky/cid"
)

// A load balancer finds the DCID of a datagram and the server ID in it.
func ExampleDecoder_ServerID() {
	key, _ := hex.DecodeString("8f95f09245765f80256934e50c66207f")
	cfg := cid.Config{ID: 0, ServerIDLen: 3, NonceLen: 4, Key: key}
	dec, err := cid.NewDecoder(cfg)
	if err != nil {
		panic(err)
	}
	// A short header packet: first octet, then the 8-octet DCID.
	datagram, _ := hex.DecodeString("400720b1d07b359d3cffffffff")
	h, err := cid.ParseHeader(datagram, cfg.Len())
	if err != nil {
		panic(err)
	}
	var buf [cid.MaxCIDLen]byte
	sid, err := dec.ServerID(buf[:0], h.DCID)
	switch {
	case errors.Is(err, cid.ErrNotRoutable):
		fmt.Println("route by 4-tuple:", err)
	case err != nil:
		panic(err)
	default:
		fmt.Printf("%s packet for server %x\n", h.Type, sid)
	}
	// Output: short packet for server ed793a
}

// A quic-go server issues routable CIDs when its Transport uses a Generator.
func ExampleNewGenerator() {
	gen, err := cid.NewGenerator(cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 6}, []byte{0x00, 0x2a})
	if err != nil {
		panic(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	tr := &quic.Transport{Conn: conn, ConnectionIDGenerator: gen}
	defer tr.Close()
	// tr.Listen(tlsConf, quicConf) now hands out CIDs carrying server ID 002a.
	c, _ := gen.GenerateConnectionID()
	fmt.Printf("%d-octet CIDs, first octet %#x\n", gen.ConnectionIDLen(), c.Bytes()[0])
	// Output: 9-octet CIDs, first octet 0x28
}

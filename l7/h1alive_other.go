//go:build !unix

package l7

// alive cannot peek without blocking here; a closed connection shows as
// an error on its next use instead (see h1Client.RoundTrip's retry).
func (pc *h1Conn) alive() bool { return pc.br.Buffered() == 0 }

// Command caddy is Caddy v2 with its standard modules, built here so the
// request tier's benchmark against Caddy (l7/peer_bench_test.go) runs the
// peer from source at a pinned version. It lives in its own module so the
// product's go.mod does not depend on Caddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}

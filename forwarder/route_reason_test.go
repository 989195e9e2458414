package forwarder

import (
	"testing"

	"github.com/spooky-lb/spooky/bpf"
)

// reasonNames are the names bpf.Reason.String gives the constants above.
var reasonNames = map[bpf.Reason]string{
	reasonTX:                  "tx",
	reasonPassNotIP:           "pass_not_ip",
	reasonPassNonUDP:          "pass_non_udp",
	reasonPassFragment:        "pass_fragment",
	reasonPassNotVIP:          "pass_not_vip",
	reasonPassL7:              "pass_l7",
	reasonPassBackendInvalid:  "pass_backend_invalid",
	reasonPassCIDCacheMiss:    "pass_cid_cache_miss",
	reasonPassNoEncapSource:   "pass_no_encap_source",
	reasonPassEncapFailed:     "pass_encap_failed",
	reasonDropTruncated:       "drop_truncated",
	reasonDropBadIP:           "drop_bad_ip",
	reasonDropNotQUICStrict:   "drop_not_quic_strict",
	reasonIPOptions:           "ip_options",
	reasonNotQUIC:             "not_quic",
	reasonCIDNoConfig:         "cid_no_config",
	reasonCIDTooShort:         "cid_too_short",
	reasonCIDTooLong:          "cid_too_long",
	reasonCIDUnknownServer:    "cid_unknown_server",
	reasonCIDBackendUnusable:  "cid_backend_unusable",
	reasonCIDCacheMiss:        "cid_cache_miss",
	reasonFlowBackendUnusable: "flow_backend_unusable",
	reasonFlowInsertFailed:    "flow_insert_failed",
	reasonRedirectSlowPath:    "redirect_slow_path",
	reasonRedirectUserspace:   "redirect_userspace",
	reasonSlowPathLimited:     "slow_path_limited",
	reasonSlowPathNoSocket:    "slow_path_no_socket",
	reasonDropSlowPathRing:    "drop_slow_path_ring",
}

func TestRouterReasonsMatchSpookyH(t *testing.T) {
	if len(reasonNames) != bpf.NumReasons {
		t.Errorf("forwarder knows %d reasons, spooky.h has %d", len(reasonNames), bpf.NumReasons)
	}
	for r, want := range reasonNames {
		if got := r.String(); got != want {
			t.Errorf("reason %d is %q in spooky.h, forwarder calls it %q", uint32(r), got, want)
		}
	}
}

package forwarder

import "github.com/spooky-lb/spooky/bpf"

// The reasons of enum reason in bpf/include/spooky.h that the Router
// counts. Package bpf exports the type but not the values;
// TestRouterReasonsMatchSpookyH holds these equal to the names in the
// object's BTF, so a reordered enum fails the tests, not the parity.
const (
	reasonTX                  bpf.Reason = 0
	reasonPassNotIP           bpf.Reason = 1
	reasonPassNonUDP          bpf.Reason = 2
	reasonPassFragment        bpf.Reason = 3
	reasonPassNotVIP          bpf.Reason = 4
	reasonPassL7              bpf.Reason = 5
	reasonPassBackendInvalid  bpf.Reason = 6
	reasonPassCIDCacheMiss    bpf.Reason = 7
	reasonPassNoEncapSource   bpf.Reason = 8
	reasonPassEncapFailed     bpf.Reason = 9
	reasonDropTruncated       bpf.Reason = 10
	reasonDropBadIP           bpf.Reason = 11
	reasonDropNotQUICStrict   bpf.Reason = 12
	reasonIPOptions           bpf.Reason = 13
	reasonNotQUIC             bpf.Reason = 14
	reasonCIDNoConfig         bpf.Reason = 15
	reasonCIDTooShort         bpf.Reason = 16
	reasonCIDTooLong          bpf.Reason = 17
	reasonCIDUnknownServer    bpf.Reason = 18
	reasonCIDBackendUnusable  bpf.Reason = 19
	reasonCIDCacheMiss        bpf.Reason = 20
	reasonFlowBackendUnusable bpf.Reason = 21
	reasonFlowInsertFailed    bpf.Reason = 22
	reasonRedirectSlowPath    bpf.Reason = 23
	reasonRedirectUserspace   bpf.Reason = 24
	reasonSlowPathLimited     bpf.Reason = 25
	reasonSlowPathNoSocket    bpf.Reason = 26
	reasonDropSlowPathRing    bpf.Reason = 27
)

// ReasonSet must hold every reason as one bit.
var _ [32 - bpf.NumReasons]struct{}

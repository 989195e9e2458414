package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// The probe mark (include/probe.h): a socket on the load balancer host
// that sets SO_MARK to ProbeMarkBase | backend index (| ProbeMarkIPIP for
// a backend of an ipip VIP) has its packets steered to that backend by
// probe.c. The probe tests build marks from these and fail if C differs.
const (
	// ProbeMarkBase is the top octet of every probe mark.
	ProbeMarkBase uint32 = 0x5b000000
	// ProbeMarkMask selects the bits ProbeMarkBase occupies; a policy
	// rule "fwmark ProbeMarkBase/ProbeMarkMask" matches every probe.
	ProbeMarkMask uint32 = 0xff000000
	// ProbeMarkIPIP asks for an outer header toward the backend (ipip);
	// without it the destination MAC is rewritten (l2dsr).
	ProbeMarkIPIP uint32 = 0x00800000
	// ProbeMarkIndex selects the backend index.
	ProbeMarkIndex uint32 = 0x007fffff
)

// ProbeObjects are the probe steering program and its maps (probe.c).
type ProbeObjects = probeObjects

// ProbeReason indexes the probe_stats map.
type ProbeReason = probeProbeReason

// NumProbeReasons is the number of probe_stats entries.
const NumProbeReasons = int(probeProbeReasonPROBE_REASON_MAX)

// Probe reasons under Go names; include/probe.h documents each.
const (
	ProbeL2DSR             = probeProbeReasonPROBE_L2DSR
	ProbeIPIP              = probeProbeReasonPROBE_IPIP
	ProbePassNotIP         = probeProbeReasonPROBE_PASS_NOT_IP
	ProbeDropBadIndex      = probeProbeReasonPROBE_DROP_BAD_INDEX
	ProbeDropEmptySlot     = probeProbeReasonPROBE_DROP_EMPTY_SLOT
	ProbeDropNoMAC         = probeProbeReasonPROBE_DROP_NO_MAC
	ProbeDropNoEncapSource = probeProbeReasonPROBE_DROP_NO_ENCAP_SOURCE
	ProbeDropEncapFailed   = probeProbeReasonPROBE_DROP_ENCAP_FAILED
	ProbeDropTruncated     = probeProbeReasonPROBE_DROP_TRUNCATED
)

// ProbeProgramName is the name the kernel knows the probe program by, as
// listed by bpftool or a tcx query (ebpf.ProgramInfo.Name).
const ProbeProgramName = "tc_probe"

var probeNames = sync.OnceValue(func() map[uint64]string { return enumNames(loadProbe, "probe_reason", "PROBE_") })

// String returns the reason's name in metric form, e.g. "drop_empty_slot".
func (r probeProbeReason) String() string {
	if n, ok := probeNames()[uint64(r)]; ok {
		return n
	}
	return fmt.Sprintf("probe_reason_%d", uint32(r))
}

// ProbeSpec returns the probe program's collection spec.
func ProbeSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadProbe()
	if err != nil {
		return nil, fmt.Errorf("parse probe object: %w", err)
	}
	return spec, nil
}

// LoadProbe loads probe.c's tc_probe program with lb's backends and
// config maps in place of its own, so probes are steered by the very
// entries the XDP program forwards with. The caller closes the objects;
// lb's maps stay open until lb is closed.
func LoadProbe(lb *LBObjects) (*ProbeObjects, error) {
	spec, err := ProbeSpec()
	if err != nil {
		return nil, err
	}
	var objs probeObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"backends": lb.Backends,
		"config":   lb.Config,
	}})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load probe: %w\n%+v", err, ve)
		}
		return nil, fmt.Errorf("load probe: %w", err)
	}
	return &objs, nil
}

// ReadProbeStats returns the probe_stats counters summed over CPUs,
// indexed by ProbeReason.
func ReadProbeStats(m *ebpf.Map) ([NumProbeReasons]uint64, error) {
	var out [NumProbeReasons]uint64
	var perCPU []uint64
	for r := range out {
		if err := m.Lookup(uint32(r), &perCPU); err != nil {
			return out, fmt.Errorf("read %s[%s]: %w", "probe_stats", ProbeReason(r), err)
		}
		for _, v := range perCPU {
			out[r] += v
		}
	}
	return out, nil
}

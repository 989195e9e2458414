package netns

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// xdpPass is the verdict XDP_PASS from <linux/bpf.h>.
const xdpPass = 2

// newXDPPass loads a program that passes every packet: built from two
// instructions, so tests need no clang.
func newXDPPass() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "spk_lab_pass",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp pass program: %w", err)
	}
	return prog, nil
}

// AttachPeerXDPPass attaches a no-op XDP_PASS program in native (driver) mode
// to the bridge-side end of the host's veth. A veth delivers frames that
// native XDP on the host's end sends with XDP_TX (or redirects) only when its
// peer has an XDP program of its own; without one they are counted as
// xdp_tx_errors and lost. The program stays attached until the lab is torn
// down.
func (h *Host) AttachPeerXDPPass() error {
	prog, err := newXDPPass()
	if err != nil {
		return err
	}
	// The link holds its own reference to the program.
	defer prog.Close()
	var lk link.Link
	err = h.lab.Bridge.Do(func() error {
		var err error
		lk, err = link.AttachXDP(link.XDPOptions{
			Program:   prog,
			Interface: h.PeerIndex,
			Flags:     link.XDPDriverMode,
		})
		if err != nil {
			return fmt.Errorf("attach xdp pass to %s in %s: %w", h.PeerName, h.lab.Bridge.NS, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.lab.mu.Lock()
	h.lab.xdpLinks = append(h.lab.xdpLinks, lk)
	h.lab.mu.Unlock()
	return nil
}

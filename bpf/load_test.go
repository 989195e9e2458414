package bpf

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

func TestLoadErrorsCarryTheVerifierLog(t *testing.T) {
	skipUnlessRoot(t)
	spec, err := LBSpec()
	if err != nil {
		t.Fatal(err)
	}
	// A program that returns without setting R0: every verifier rejects it.
	spec.Programs[lbProgXdpLb].Instructions = asm.Instructions{asm.Return()}
	var objs lbObjects
	err = loadInto(spec, &objs, "lb", &LoadOptions{})
	if err == nil {
		objs.Close()
		t.Fatal("a program the verifier must reject was loaded")
	}
	msg := err.Error()
	for _, want := range []string{"load lb", "R0 !read_ok"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

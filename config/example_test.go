package config

import "testing"

func TestExampleFileIsValid(t *testing.T) {
	c, err := Load("../examples/spooky.yaml")
	if err != nil {
		t.Fatalf("examples/spooky.yaml does not validate:\n%v", err)
	}
	want := Summary{Services: 4, L4: 3, L7: 1, Backends: 7, Pools: 2, Upstreams: 4}
	if got := c.Summarize(); got != want {
		t.Errorf("summary = %+v, want %+v", got, want)
	}
	t.Log(c.Summarize())
}

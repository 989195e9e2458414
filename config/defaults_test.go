package config

import (
	"net/netip"
	"testing"
	"time"
)

func TestSetDefaultsAndValidateWorkWithoutYAML(t *testing.T) {
	c := &Config{Services: []ServiceConfig{{
		Name: "web", Address: netip.MustParseAddr("198.18.0.10"), Port: 443,
		Backends: []BackendConfig{{Name: "b1", Address: netip.MustParseAddr("198.18.1.1")}},
	}}}
	c.SetDefaults()
	if s := c.Services[0]; s.Mode != ModeL4 || s.MaglevSize != DefaultMaglevSize || s.FlowTimeout != time.Minute || s.Backends[0].Weight != 100 {
		t.Errorf("SetDefaults left %+v", s)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Services[0].Port = 0
	err := c.Validate()
	if err == nil || err.Error() != `services[0].port: missing required field "port"` {
		t.Errorf("Validate after clearing the port = %v", err)
	}
}

package config

import (
	"strings"
	"testing"
)

func TestProxyMaxSessions(t *testing.T) {
	t.Run("defaults to one value", func(t *testing.T) {
		c := mustParse(t, minimalL4)
		if c.Proxy.MaxSessions != DefaultProxyMaxSessions {
			t.Errorf("max_sessions %d, want %d", c.Proxy.MaxSessions, DefaultProxyMaxSessions)
		}
	})
	t.Run("is read from the file", func(t *testing.T) {
		c := mustParse(t, minimalL4+"proxy:\n  max_sessions: 100\n")
		if c.Proxy.MaxSessions != 100 {
			t.Errorf("max_sessions %d, want 100", c.Proxy.MaxSessions)
		}
	})
	for _, bad := range []string{"0", "-1", "2000000"} {
		t.Run("rejects "+bad, func(t *testing.T) {
			_, err := Parse([]byte(minimalL4+"proxy:\n  max_sessions: "+bad+"\n"), "test.yaml")
			if err == nil || !strings.Contains(err.Error(), "max_sessions") || !strings.Contains(err.Error(), "test.yaml:8:") {
				t.Errorf("got %v, want a max_sessions problem at line 8", err)
			}
		})
	}
}

package config

import "testing"

func TestSummaryString(t *testing.T) {
	tests := []struct {
		name string
		s    Summary
		want string
	}{
		{"plural counts", Summary{3, 2, 1, 7, 2, 4}, "3 services (2 l4, 1 l7), 7 backends, 2 pools (4 upstreams)"},
		{"singular counts", Summary{1, 1, 0, 1, 1, 1}, "1 service (1 l4, 0 l7), 1 backend, 1 pool (1 upstream)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

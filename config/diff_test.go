package config

import (
	"reflect"
	"strings"
	"testing"
)

const diffBase = `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 198.18.1.1}
      - {name: b2, address: 198.18.1.2}
      - {name: b3, address: 198.18.1.3}
  - name: old
    address: 198.18.0.11
    port: 443
    backends: [{name: o1, address: 198.18.1.9}]
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes: [{pool: api}]
pools:
  - name: api
    upstreams: [{address: "h3://198.18.2.1"}, {address: "h3://198.18.2.2"}]
`

func TestDiff(t *testing.T) {
	old := mustParse(t, diffBase)
	tests := []struct {
		name string
		edit func(string) string
		want Changes
	}{
		{
			name: "an identical file changes nothing",
			edit: func(s string) string { return s + "log: {level: info}\n" }, // the default, spelt out
			want: Changes{},
		},
		{
			name: "a new service is added and a dropped one removed",
			edit: func(s string) string {
				s = strings.Replace(s, "name: old\n    address: 198.18.0.11", "name: new\n    address: 198.18.0.12", 1)
				return strings.Replace(s, "o1, address: 198.18.1.9", "n1, address: 198.18.1.8", 1)
			},
			want: Changes{ServicesAdded: []string{"new"}, ServicesRemoved: []string{"old"}},
		},
		{
			name: "backends added, removed and reweighted are itemized",
			edit: func(s string) string {
				s = strings.Replace(s, "      - {name: b1, address: 198.18.1.1}\n", "", 1)
				s = strings.Replace(s, "b2, address: 198.18.1.2}", "b2, address: 198.18.1.2, weight: 50}", 1)
				return strings.Replace(s, "b3, address: 198.18.1.3}\n", "b3, address: 198.18.1.3}\n      - {name: b4, address: 198.18.1.4}\n", 1)
			},
			want: Changes{ServicesChanged: []ServiceChange{{Name: "web",
				BackendsAdded: []string{"b4"}, BackendsRemoved: []string{"b1"}, BackendsChanged: []string{"b2"}}}},
		},
		{
			name: "service settings are named by their keys",
			edit: func(s string) string {
				return strings.Replace(s, "port: 443\n    backends:\n      - {name: b1", "port: 443\n    maglev_size: 1009\n    hash: 4-tuple\n    backends:\n      - {name: b1", 1)
			},
			want: Changes{ServicesChanged: []ServiceChange{{Name: "web", Fields: []string{"hash", "maglev_size"}}}},
		},
		{
			name: "pool and global changes are reported",
			edit: func(s string) string {
				s = strings.Replace(s, `{address: "h3://198.18.2.2"}`, `{address: "h3://198.18.2.3"}`, 1)
				return s + "    policy: p2c\nlog: {level: debug}\n"
			},
			want: Changes{Global: []string{"log"}, PoolsChanged: []PoolChange{{Name: "api", Fields: []string{"policy"},
				UpstreamsAdded: []string{"h3://198.18.2.3"}, UpstreamsRemoved: []string{"h3://198.18.2.2"}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff(old, mustParse(t, tc.edit(diffBase)))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff:\ngot  %+v\nwant %+v", got, tc.want)
			}
			if got.Empty() != reflect.DeepEqual(tc.want, Changes{}) {
				t.Errorf("Empty() = %v for %+v", got.Empty(), got)
			}
		})
	}
}

func TestChangesString(t *testing.T) {
	c := Changes{
		Global:          []string{"log"},
		ServicesAdded:   []string{"api"},
		ServicesRemoved: []string{"old"},
		ServicesChanged: []ServiceChange{{Name: "web", Fields: []string{"maglev_size"}, BackendsAdded: []string{"b4"}, BackendsRemoved: []string{"b1"}}},
		PoolsChanged:    []PoolChange{{Name: "static", Fields: []string{"policy"}}},
	}
	want := "log; services +api -old ~web(maglev_size; backends +b4 -b1); pools ~static(policy)"
	if got := c.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Changes{}).String(); got != "no changes" {
		t.Errorf("empty String() = %q", got)
	}
}

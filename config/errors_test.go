package config

import (
	"errors"
	"testing"
)

func TestErrorFormats(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a positioned problem reads file:line:col: message", &Error{File: "a.yaml", Line: 3, Col: 7, Path: "x.y", Msg: "bad"}, "a.yaml:3:7: bad"},
		{"a problem without position names its path", &Error{Path: "services[0].port", Msg: "bad"}, "services[0].port: bad"},
		{"several problems are one a line", Errors{{File: "a", Line: 1, Col: 1, Msg: "x"}, {File: "a", Line: 2, Col: 1, Msg: "y"}}, "a:1:1: x\na:2:1: y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorsSortByPositionAndNilMeansNoError(t *testing.T) {
	es := Errors{{Line: 9, Col: 1, Msg: "c"}, {Line: 2, Col: 5, Msg: "b"}, {Line: 2, Col: 3, Msg: "a"}}
	err := es.err()
	var got Errors
	if !errors.As(err, &got) || got[0].Msg != "a" || got[1].Msg != "b" || got[2].Msg != "c" {
		t.Errorf("sorted = %v", err)
	}
	if err := Errors(nil).err(); err != nil {
		t.Errorf("no problems gave error %v", err)
	}
}

package admin

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/spooky-lb/spooky/config"
)

// Redacted stands in for secrets in EncodeConfig's output.
const Redacted = "redacted"

// EncodeConfig writes cfg as YAML in the configuration file's own schema:
// what GET /v1/config returns. Fields left at zero are left out, as a
// person would write the file, so the output read back by config.Parse is
// cfg again, with one exception: QUIC-LB keys (which then fail to parse)
// and BGP passwords are replaced by "redacted", because a loopback
// listener lets every local user read the answer.
func EncodeConfig(cfg *config.Config) ([]byte, error) {
	b, err := yaml.MarshalWithOptions(yamlValue(reflect.ValueOf(cfg)), yaml.IndentSequence(true))
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b, nil
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	addrType      = reflect.TypeFor[netip.Addr]()
	hexType       = reflect.TypeFor[config.Hex]()
	retryType     = reflect.TypeFor[config.RetryConfig]()
	cidConfigType = reflect.TypeFor[config.CIDConfig]()
	bgpPeerType   = reflect.TypeFor[config.BGPPeerConfig]()
)

// yamlValue converts v to values the YAML encoder writes in the file's
// form: durations as "2s", addresses and hex as strings, structs as
// mappings in field order keyed by their yaml tags.
func yamlValue(v reflect.Value) any {
	switch v.Type() {
	case durationType:
		return time.Duration(v.Int()).String()
	case addrType:
		return v.Interface().(netip.Addr).String()
	case hexType:
		return config.Hex(v.Bytes()).String()
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return yamlValue(v.Elem())
	case reflect.Struct:
		t := v.Type()
		var m yaml.MapSlice
		for i := range t.NumField() {
			f, fv := t.Field(i), v.Field(i)
			if !f.IsExported() || skipField(t, f, fv) {
				continue
			}
			var val any = yamlValue(fv)
			if (t == cidConfigType && f.Name == "Key") || (t == bgpPeerType && f.Name == "Password") {
				val = Redacted
			}
			m = append(m, yaml.MapItem{Key: yamlKey(f), Value: val})
		}
		return m
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = yamlValue(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// skipField reports whether a field is left out: zero values and empty
// lists, which mean the same when left out. The one exception is a
// retry count of 0, which disables retries while leaving it out means
// the default.
func skipField(t reflect.Type, f reflect.StructField, v reflect.Value) bool {
	if yamlKey(f) == "-" {
		return true // not part of the file (Config.SHA256)
	}
	if t == retryType && f.Name == "Count" {
		return false
	}
	if k := v.Kind(); k == reflect.Slice || k == reflect.Map {
		return v.Len() == 0
	}
	return v.IsZero()
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

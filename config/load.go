package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load reads and parses the configuration file at path. Problems in the
// file are returned as Errors; a file that cannot be read, as a plain error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes, fills defaults into and validates a YAML configuration.
// filename names the source in error messages, and relative certificate
// paths are resolved against its directory. On any problem Parse returns a
// nil Config and Errors listing every problem found, each at its line and
// column.
func Parse(data []byte, filename string) (*Config, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, syntaxError(err, filename)
	}
	d := &decoder{file: filename, ix: newIndex(), failed: map[string]bool{}, anchors: map[string]ast.Node{}}
	var c Config
	d.ix.val[""] = pos{1, 1}
	switch docs := nonEmptyDocs(f); len(docs) {
	case 0:
		// An empty file: validation reports the missing services.
	case 1:
		d.decode(docs[0], reflect.ValueOf(&c).Elem(), "")
	default:
		d.errorf(nodePos(docs[1]), "", "expected one YAML document, found %d", len(docs))
	}
	c.resolvePaths(filepath.Dir(filename))
	c.setDefaults(d.ix.present)
	// Validate even after decoding problems, so one run lists them all; the
	// validator skips values whose decoding failed, which would only repeat
	// the problem as "missing".
	v := &validator{file: filename, ix: d.ix, failed: d.failed, errs: d.errs}
	v.config(&c)
	if err := v.errs.err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	c.SHA256 = hex.EncodeToString(sum[:])
	return &c, nil
}

// Validate checks a configuration built in Go (call SetDefaults first if it
// relies on defaults). Problems carry the field path instead of a position.
func (c *Config) Validate() error {
	v := &validator{ix: newIndex()}
	v.config(c)
	return v.errs.err()
}

func nonEmptyDocs(f *ast.File) []ast.Node {
	var out []ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			out = append(out, doc.Body)
		}
	}
	return out
}

// syntaxError turns a YAML parser error into Errors with its position.
func syntaxError(err error, filename string) error {
	var se *yaml.SyntaxError
	if errors.As(err, &se) && se.Token != nil && se.Token.Position != nil {
		return Errors{{File: filename, Line: se.Token.Position.Line, Col: se.Token.Position.Column, Msg: "yaml: " + se.Message}}
	}
	return Errors{{File: filename, Line: 1, Col: 1, Msg: "yaml: " + err.Error()}}
}

// resolvePaths makes relative certificate and CA paths relative to dir, so the
// configuration means the same from any working directory.
func (c *Config) resolvePaths(dir string) {
	for i := range c.Services {
		for j := range c.Services[i].TLS {
			t := &c.Services[i].TLS[j]
			for _, p := range []*string{&t.Cert, &t.Key} {
				resolvePath(dir, p)
			}
		}
	}
	for i := range c.Pools {
		for j := range c.Pools[i].Upstreams {
			resolvePath(dir, &c.Pools[i].Upstreams[j].TLS.CA)
		}
	}
	for _, h := range c.healthChecks() {
		resolvePath(dir, &h.TLS.CA)
	}
}

func resolvePath(dir string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Join(dir, *p)
	}
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// Load reads and parses the configuration file at path. Problems in the
// file are returned as Errors; a file that cannot be read, as a plain error:
// one that is not a regular file (ErrNotRegularFile) or is larger than
// MaxFileSize (ErrFileTooLarge) is refused without reading it, so Load
// neither blocks on a FIFO nor reads a device.
func Load(path string) (*Config, error) {
	data, err := readRegularFile(path, MaxFileSize)
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
//
// Parse returns for every input: the input's size (MaxFileSize), nesting
// (MaxNesting) and expansion through aliases (MaxValues) are bounded, and a
// panic, which would be a bug in spooky, becomes an error naming the file,
// so that a reload can never take the running daemon down.
func Parse(data []byte, filename string) (c *Config, err error) {
	defer recoverParse(filename, &c, &err)
	return parse(data, filename)
}

// recoverParse turns a panic in Parse into an error. It is the last line of
// defence, not the first: every panic it catches is a bug to fix.
func recoverParse(filename string, c **Config, err *error) {
	if r := recover(); r != nil {
		*c = nil
		*err = fmt.Errorf("parse %s: internal error (a bug in spooky; please report it with the file): %v", filename, r)
	}
}

func parse(data []byte, filename string) (*Config, error) {
	if len(data) > MaxFileSize {
		size, limit := sizeText(int64(len(data)), MaxFileSize)
		return nil, Errors{{File: filename, Line: 1, Col: 1, Msg: fmt.Sprintf("config file is %s; the limit is %s", size, limit)}}
	}
	tokens := lexer.Tokenize(string(data))
	if tk := tooDeep(tokens); tk != nil {
		return nil, Errors{{File: filename, Line: tk.Position.Line, Col: tk.Position.Column,
			Msg: fmt.Sprintf("lists and mappings nest more than %d deep here", MaxNesting)}}
	}
	f, err := parser.Parse(tokens, 0)
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
	if d.spent {
		// Decoding stopped part way; validating what it built would only
		// report what is missing from it.
		return nil, d.errs.err()
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

// maxSyntaxEcho bounds a parser message: fixed text around at most one
// value from the file (a key, a tag), which may be arbitrarily long.
const maxSyntaxEcho = 4 * maxEcho

// syntaxError turns a YAML parser error into Errors with its position.
func syntaxError(err error, filename string) error {
	var se *yaml.SyntaxError
	if errors.As(err, &se) && se.Token != nil && se.Token.Position != nil {
		return Errors{{File: filename, Line: se.Token.Position.Line, Col: se.Token.Position.Column, Msg: "yaml: " + clip(se.Message, maxSyntaxEcho)}}
	}
	return Errors{{File: filename, Line: 1, Col: 1, Msg: "yaml: " + clip(err.Error(), maxSyntaxEcho)}}
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

package config

import (
	"encoding/hex"
	"fmt"
	"iter"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// The decoder walks goccy/go-yaml's AST itself instead of using its
// Unmarshal, for two reasons: Unmarshal stops at the first problem, and we
// report every one; and we need the position of every node afterwards so
// that validation, which runs on plain structs, can still say where a value
// came from.

// pos is a 1-based line and column.
type pos struct{ line, col int }

// index maps a field path ("services[0].port") to where it was written.
type index struct {
	val map[string]pos  // the value node
	key map[string]pos  // the key naming the field (not for sequence items)
	set map[string]bool // written with a non-null value
}

func newIndex() *index {
	return &index{val: map[string]pos{}, key: map[string]pos{}, set: map[string]bool{}}
}

func (ix *index) present(path string) bool { return ix.set[path] }

// parent returns the path one level up: "a.b[2]" → "a.b", "a.b" → "a".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// at returns the position of the value at path or, if the file does not
// have it (a missing field), of the nearest enclosing node that it does.
func (ix *index) at(path string) pos {
	for {
		if p, ok := ix.val[path]; ok {
			return p
		}
		if path == "" {
			return pos{}
		}
		path = parent(path)
	}
}

// atKey is like at but prefers the position of the field's key, the place
// to point at when the field should not be there at all.
func (ix *index) atKey(path string) pos {
	if p, ok := ix.key[path]; ok {
		return p
	}
	return ix.at(path)
}

type decoder struct {
	file    string
	ix      *index
	errs    Errors
	failed  map[string]bool // paths whose value could not be decoded
	anchors map[string]ast.Node

	// values counts the values built so far, against MaxValues; spent is
	// set once the count passes it, and decoding stops.
	values int
	spent  bool
	// via is the outermost alias (or merge key value) being expanded, where
	// a problem inside the expansion is best reported: that is where the
	// file asked for it.
	via *pos
}

// spend counts k more values built from node n and reports whether they
// fit in MaxValues. The first time they do not, it reports the problem
// (at the alias being expanded, if any); after that, decoding stops.
func (d *decoder) spend(k int, n ast.Node, path string) bool {
	if d.spent {
		return false
	}
	d.values += k
	if d.values <= MaxValues {
		return true
	}
	d.spent = true
	if d.via != nil {
		d.errorf(*d.via, path, "the file expands to more than %d values through aliases and merge keys (each use counts its anchor's values again); use fewer aliases of aliases", MaxValues)
	} else {
		d.errorf(nodePos(n), path, "the file holds more than %d values", MaxValues)
	}
	return false
}

// expanding records n as the outermost expansion, if it is an alias and no
// other expansion is under way, and returns the function that ends it.
func (d *decoder) expanding(n ast.Node) func() {
	if _, ok := n.(*ast.AliasNode); !ok || d.via != nil {
		return func() {}
	}
	p := nodePos(n)
	d.via = &p
	return func() { d.via = nil }
}

func (d *decoder) errorf(p pos, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// nodePos locates a node where a reader would look for it: a block mapping
// at its first key (goccy gives the ':'), anything else at its first token.
func nodePos(n ast.Node) pos {
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 {
		n = m.Values[0].Key
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

// resolve follows anchors, aliases and tags to the node that holds the value.
// An anchor may hold an alias to itself (&a !t *a) or to an anchor that
// holds another alias: resolve reports a cycle, and a chain of more than
// MaxNesting aliases, at the first alias, instead of following it for ever.
func (d *decoder) resolve(n ast.Node, path string) ast.Node {
	var first *ast.AliasNode // where the file asked for the value
	var seen []ast.Node      // alias targets followed so far
	for {
		switch t := n.(type) {
		case *ast.AnchorNode:
			d.anchors[t.Name.GetToken().Value] = t.Value
			n = t.Value
		case *ast.AliasNode:
			if first == nil {
				first = t
			}
			target, ok := d.anchors[t.Value.GetToken().Value]
			switch {
			case !ok:
				d.errorf(nodePos(t), path, "alias *%s names no anchor defined before it", aliasName(t))
				return nil
			case slices.Contains(seen, target):
				d.errorf(nodePos(first), path, "alias *%s refers to itself, so it has no value", aliasName(first))
				return nil
			case len(seen) == MaxNesting:
				d.errorf(nodePos(first), path, "alias *%s: aliases of aliases chain more than %d deep", aliasName(first), MaxNesting)
				return nil
			}
			seen = append(seen, target)
			n = target
		case *ast.TagNode:
			n = t.Value
		default:
			return n
		}
	}
}

// aliasName is the name an alias refers to, clipped for messages.
func aliasName(a *ast.AliasNode) string { return echo(a.Value.GetToken().Value) }

// collectAnchors records the anchors inside a subtree that is not decoded
// (an "x-" extension field), so that aliases elsewhere can use them.
func (d *decoder) collectAnchors(n ast.Node) {
	switch t := n.(type) {
	case *ast.AnchorNode:
		d.anchors[t.Name.GetToken().Value] = t.Value
		d.collectAnchors(t.Value)
	case *ast.MappingNode:
		for _, v := range t.Values {
			d.collectAnchors(v.Value)
		}
	case *ast.SequenceNode:
		for _, v := range t.Values {
			d.collectAnchors(v)
		}
	case *ast.TagNode:
		d.collectAnchors(t.Value)
	}
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	hexType      = reflect.TypeFor[Hex]()
)

// kindName names a node's kind for "expected X, got Y" messages.
func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "null"
	default:
		return "a string"
	}
}

// scalarText returns a scalar's text as written (unquoted), so that "0001"
// stays "0001" for hex fields rather than becoming the integer 1.
func scalarText(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		return t.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// decode stores node n into v, recording positions under path.
func (d *decoder) decode(n ast.Node, v reflect.Value, path string) {
	if !d.spend(1, n, path) {
		return
	}
	defer d.expanding(n)()
	n = d.resolve(n, path)
	if n == nil {
		return
	}
	p := nodePos(n)
	d.ix.val[path] = p
	v.SetZero()
	if _, ok := n.(*ast.NullNode); ok {
		return // absent: leave zero and let defaults apply
	}
	d.ix.set[path] = true

	switch v.Type() {
	case durationType:
		s, ok := n.(*ast.StringNode)
		if !ok {
			d.errorf(p, path, "%s: expected a duration such as 2s or 500ms, got %s", fieldName(path), kindName(n))
			return
		}
		dur, err := time.ParseDuration(s.Value)
		if err != nil {
			d.errorf(p, path, "%s: %q is not a duration such as 2s or 500ms", fieldName(path), echo(s.Value))
			return
		}
		v.SetInt(int64(dur))
		return
	case addrType:
		s, ok := scalarText(n)
		if !ok {
			d.errorf(p, path, "%s: expected an IP address, got %s", fieldName(path), kindName(n))
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.errorf(p, path, "%s: %q is not an IP address", fieldName(path), echo(s))
			return
		}
		v.Set(reflect.ValueOf(a))
		return
	case hexType:
		s, ok := scalarText(n)
		if !ok {
			d.errorf(p, path, "%s: expected hex digits, got %s", fieldName(path), kindName(n))
			return
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			d.errorf(p, path, "%s: %q is not hex octets (an even number of hex digits)", fieldName(path), echo(s))
			return
		}
		v.Set(reflect.ValueOf(Hex(b)))
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		d.ix.val[path] = p
		d.decodeInto(n, v.Elem(), path, p)
	default:
		d.decodeInto(n, v, path, p)
	}
}

func (d *decoder) decodeInto(n ast.Node, v reflect.Value, path string, p pos) {
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.errorf(p, path, "%s: expected a list, got %s", fieldName(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
		for i, e := range seq.Values {
			d.decode(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			d.errorf(p, path, "%s: expected a mapping, got %s", fieldName(path), kindName(n))
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m.Values))
		for _, kv := range m.Values {
			key := kv.Key.GetToken().Value
			elem := reflect.New(v.Type().Elem()).Elem()
			sub := path + "." + key
			d.ix.key[sub] = nodePos(kv.Key)
			d.decode(kv.Value, elem, sub)
			out.SetMapIndex(reflect.ValueOf(key), elem)
		}
		v.Set(out)
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.errorf(p, path, "%s: expected a string, got %s", fieldName(path), kindName(n))
			return
		}
		v.SetString(s)
	case reflect.Int:
		i, ok := n.(*ast.IntegerNode)
		if !ok {
			d.errorf(p, path, "%s: expected an integer, got %s", fieldName(path), kindName(n))
			return
		}
		var x int64
		switch val := i.Value.(type) {
		case int64:
			x = val
		case uint64:
			if val > math.MaxInt64 {
				d.errorf(p, path, "%s: %s is too large", fieldName(path), echo(i.GetToken().Value))
				return
			}
			x = int64(val)
		default:
			x, _ = strconv.ParseInt(i.GetToken().Value, 0, 64)
		}
		v.SetInt(x)
	case reflect.Float64:
		switch t := n.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
			f, err := strconv.ParseFloat(strings.ReplaceAll(t.GetToken().Value, "_", ""), 64)
			if err != nil {
				d.errorf(p, path, "%s: %q is not a number", fieldName(path), echo(t.GetToken().Value))
				return
			}
			v.SetFloat(f)
		default:
			d.errorf(p, path, "%s: expected a number, got %s", fieldName(path), kindName(n))
		}
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.errorf(p, path, "%s: expected true or false, got %s", fieldName(path), kindName(n))
			return
		}
		v.SetBool(b.Value)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type())) // a schema bug, not bad input
	}
}

// decodeStruct fills a struct from a mapping. Merge keys (<<: *anchor) are
// applied first so that explicit keys override them, as YAML 1.1 specifies.
func (d *decoder) decodeStruct(n ast.Node, v reflect.Value, path string) {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.errorf(nodePos(n), path, "%s: expected a mapping, got %s", fieldName(path), kindName(n))
		return
	}
	fields := structFields(v.Type())
	var merged, own []*ast.MappingValueNode
	for _, kv := range m.Values {
		if _, ok := kv.Key.(*ast.MergeKeyNode); ok {
			merged = append(merged, d.mergeSources(kv.Value, path)...)
			continue
		}
		own = append(own, kv)
	}
	for _, kv := range append(merged, own...) {
		key := kv.Key.GetToken().Value
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		kp := nodePos(kv.Key)
		i, ok := fields[key]
		if !ok {
			if path == "" && strings.HasPrefix(key, "x-") {
				d.collectAnchors(kv.Value) // extension field: ignored, but its anchors count
				continue
			}
			d.errorf(kp, sub, "unknown field %q%s", echo(key), suggest(key, maps.Keys(fields)))
			continue
		}
		d.ix.key[sub] = kp
		d.decode(kv.Value, v.Field(i), sub)
	}
}

// mergeSources returns the entries a merge key brings in: one mapping or a
// list of mappings (YAML merge key, https://yaml.org/type/merge.html).
func (d *decoder) mergeSources(n ast.Node, path string) []*ast.MappingValueNode {
	defer d.expanding(n)()
	var out []*ast.MappingValueNode
	d.merge(&out, n, path, nil)
	return out
}

// merge appends the entries of the mappings n names to out. open holds the
// lists being expanded, outermost first: a list that includes itself
// through an alias (<<: &m [*m]) would otherwise recurse without end, and
// lists of aliases of lists expand exponentially, which spend bounds.
func (d *decoder) merge(out *[]*ast.MappingValueNode, n ast.Node, path string, open []*ast.SequenceNode) {
	if !d.spend(1, n, path) {
		return
	}
	switch t := d.resolve(n, path).(type) {
	case *ast.MappingNode:
		if d.spend(len(t.Values), n, path) {
			*out = append(*out, t.Values...)
		}
	case *ast.SequenceNode:
		if slices.Contains(open, t) {
			d.errorf(nodePos(n), path, "merge key <<: %s names a list that contains it, so the merge never ends", aliasText(n))
			return
		}
		if len(open) >= MaxNesting {
			d.errorf(nodePos(n), path, "merge key <<: lists nest more than %d deep", MaxNesting)
			return
		}
		open = append(open, t)
		for _, e := range t.Values {
			d.merge(out, e, path, open)
		}
	case nil:
	default:
		d.errorf(nodePos(n), path, "merge key <<: expected a mapping, got %s", kindName(t))
	}
}

// aliasText names n as written if it is an alias ("alias *m"), else "the
// list".
func aliasText(n ast.Node) string {
	if a, ok := n.(*ast.AliasNode); ok {
		return "alias *" + aliasName(a)
	}
	return "the list"
}

var fieldCache sync.Map // reflect.Type → map[string]int

// structFields maps a struct's yaml keys to field indexes.
func structFields(t reflect.Type) map[string]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]int)
	}
	f := map[string]int{}
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			f[tag] = i
		}
	}
	fieldCache.Store(t, f)
	return f
}

// fieldName is the last key of a path, for messages: "services[0].port" →
// "port", "services[0].tls[1]" → "tls". A key from the file (a header
// name) is clipped like any echoed value.
func fieldName(path string) string {
	if path == "" {
		return "config"
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		path = path[i+1:]
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	return echo(path)
}

// suggest returns ` (did you mean "x"?)` for the known field nearest to an
// unknown key, if one is near enough to be a typo.
func suggest(key string, known iter.Seq[string]) string {
	best, bestDist := "", 3
	for f := range known {
		if abs(len(key)-len(f)) > bestDist {
			continue // the distance is at least the difference in length: no match, no tie
		}
		if dist := editDistance(key, f); dist < bestDist || (dist == bestDist && best != "" && f < best) {
			best, bestDist = f, dist
		}
	}
	if best == "" || bestDist > len(key)/2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", echo(best))
}

func abs(n int) int { return max(n, -n) }

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

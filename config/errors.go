package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found in a configuration, located at the YAML node that
// causes it.
type Error struct {
	// File is the name given to Parse or Load.
	File string
	// Line and Col are 1-based. They are zero when the configuration was not
	// read from YAML (see Config.Validate); Path then locates the problem.
	Line, Col int
	// Path is the dotted path of the field, e.g. "services[0].backends[1].weight".
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats the problem as "file:line:col: message", the form editors and
// CI annotations understand.
func (e *Error) Error() string {
	if e.Line == 0 {
		if e.Path == "" {
			return e.Msg
		}
		return e.Path + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one configuration, in file order. Parse,
// Load and Validate return it (as error) so callers can list each problem.
type Errors []*Error

// Error joins the problems, one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders the problems by position, keeping the order of discovery for
// problems at the same node.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// err returns es as an error, or nil when there are none, so a nil Errors
// never becomes a non-nil error interface. Past MaxProblems the rest are
// counted in one last entry: a file of a megabyte can hold a quarter of a
// million mistakes, and a rejected reload must not write them all to the
// log or the admin API's answer.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	es.sort()
	if len(es) > MaxProblems {
		more := len(es) - MaxProblems
		es = append(es[:MaxProblems:MaxProblems], &Error{
			File: es[0].File,
			Msg:  fmt.Sprintf("and %d more problems (only the first %d are listed)", more, MaxProblems),
		})
	}
	return es
}

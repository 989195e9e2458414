package admin

import (
	"errors"
	"fmt"

	"github.com/spooky-lb/spooky/config"
)

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	// Error says what went wrong, for people.
	Error string `json:"error"`
	// Code says what went wrong, for programs: one of the Code constants.
	Code string `json:"code"`
	// Problems lists every problem of a rejected configuration.
	Problems []Problem `json:"problems,omitempty"`
}

// Codes of ErrorBody.
const (
	CodeBadRequest       = "bad_request"
	CodeTooLarge         = "too_large"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnknownTarget    = "unknown_target"
	CodeUnknownService   = "unknown_service"
	CodeConfigRejected   = "config_rejected"
	CodeInternal         = "internal"
)

// Problem is one problem of a rejected configuration (a config.Error).
type Problem struct {
	File string `json:"file,omitempty"`
	// Line and Col are 1-based; zero when not known.
	Line int `json:"line,omitempty"`
	Col  int `json:"col,omitempty"`
	// Path is the dotted path of the field, e.g. "services[0].port".
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// String formats the problem as "file:line:col: message", like config.Error.
func (p Problem) String() string { return p.configError().Error() }

func (p Problem) configError() *config.Error {
	return &config.Error{File: p.File, Line: p.Line, Col: p.Col, Path: p.Path, Msg: p.Message}
}

func problemsOf(es config.Errors) []Problem {
	out := make([]Problem, len(es))
	for i, e := range es {
		out[i] = Problem{File: e.File, Line: e.Line, Col: e.Col, Path: e.Path, Message: e.Msg}
	}
	return out
}

// Error is an error answer from the server. Error() is the server's
// message; errors.Is matches the sentinel its code stands for
// (ErrUnknownTarget, ErrUnknownService), and errors.As finds the
// config.Errors of a rejected reload.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	ErrorBody
}

// Error returns the server's message.
func (e *Error) Error() string {
	if e.ErrorBody.Error == "" {
		return fmt.Sprintf("admin api: HTTP %d", e.StatusCode)
	}
	return e.ErrorBody.Error
}

// Unwrap returns the sentinel for the error's code and, for a rejected
// configuration, its problems as config.Errors.
func (e *Error) Unwrap() []error {
	var out []error
	switch e.Code {
	case CodeUnknownTarget:
		out = append(out, ErrUnknownTarget)
	case CodeUnknownService:
		out = append(out, ErrUnknownService)
	}
	if len(e.Problems) > 0 {
		es := make(config.Errors, len(e.Problems))
		for i, p := range e.Problems {
			es[i] = p.configError()
		}
		out = append(out, es)
	}
	return out
}

// Problems returns every problem of a configuration that err says was
// rejected, whether err came from a Daemon or from a Client.
func Problems(err error) config.Errors {
	var es config.Errors
	if errors.As(err, &es) {
		return es
	}
	return nil
}

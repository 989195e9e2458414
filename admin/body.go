package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// errEmptyBody is a request without a body where one is expected.
var errEmptyBody = errors.New("body: empty; want a JSON object")

// errTooLarge is a body over MaxBodyBytes.
var errTooLarge = fmt.Errorf("body: larger than %d bytes", MaxBodyBytes)

// decodeBody reads r's body, at most MaxBodyBytes, as exactly one JSON
// object into v. Unknown fields are errors: a misspelt field would
// otherwise be ignored and the request mean something else.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return errors.New("body: more than one JSON value")
	}
	return nil
}

// bodyError turns what encoding/json returned into a message that names
// the problem and where it is.
func bodyError(err error) error {
	var (
		tooLarge *http.MaxBytesError
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return errTooLarge
	case errors.Is(err, io.EOF):
		return errEmptyBody
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body: invalid JSON: unexpected end")
	case errors.As(err, &syntax):
		return fmt.Errorf("body: invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("body: want a JSON object, got %s", typ.Value)
		}
		return fmt.Errorf("body: field %q: want %s, got %s", typ.Field, jsonType(typ.Type.String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for this one.
		return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("body: %w", err)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	}
	return kind
}

func writeBodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		// RFC 9110 §15.5.14.
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
}

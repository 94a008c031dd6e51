package series

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors, for errors.Is. Every error Parse, Load, Expand and
// JobCount return for a bad spec is a *Error that also matches ErrInvalid;
// a sweep that is too large also matches ErrTooManyJobs.
var (
	ErrInvalid     = errors.New("series: invalid spec")
	ErrTooManyJobs = errors.New("series: too many jobs")
)

// Error is a problem with one field of a series spec.
type Error struct {
	File  string // the spec file's name, when known (Load sets it)
	Field string // dotted path of the field, e.g. "params.seed.step"; empty for the whole document
	Line  int    // 1-based line in the file, 0 if unknown
	Err   error  // what is wrong
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		if s == "" {
			s = "line " + strconv.Itoa(e.Line)
		} else {
			s += ":" + strconv.Itoa(e.Line)
		}
	}
	if e.Field != "" {
		if s != "" {
			s += ": "
		}
		s += e.Field
	}
	if s != "" {
		s += ": "
	}
	if e.Err == nil {
		return s + "invalid"
	}
	return s + e.Err.Error()
}

// Unwrap makes errors.Is(err, ErrInvalid) true for every *Error, and lets
// errors.Is/As reach the cause.
func (e *Error) Unwrap() []error { return []error{e.Err, ErrInvalid} }

// fieldErr builds an *Error for field with a formatted message.
func fieldErr(field string, line int, format string, args ...any) *Error {
	return &Error{Field: field, Line: line, Err: fmt.Errorf(format, args...)}
}

package protocols

import (
	"errors"
	"fmt"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Sentinel errors for framing problems.
var (
	ErrTooLarge  = errors.New("protocols: message too large")
	ErrMalformed = errors.New("protocols: malformed message")
)

// RemoteError is a typed error reply received from (or sent to) a peer.
// Check for a code with errors.As, or with errors.Is against a *RemoteError
// carrying only the code:
//
//	errors.Is(err, protocols.Code(pb.ErrorCode_QUEUE_FULL))
type RemoteError struct {
	Code    pb.ErrorCode
	Message string
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("p2pjobs: %s", CodeName(e.Code))
	}
	return fmt.Sprintf("p2pjobs: %s: %s", CodeName(e.Code), e.Message)
}

// Is matches another *RemoteError with the same code.
func (e *RemoteError) Is(target error) bool {
	t, ok := target.(*RemoteError)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Code returns a matcher for errors.Is.
func Code(c pb.ErrorCode) error { return &RemoteError{Code: c} }

// Errorf builds a typed error.
func Errorf(c pb.ErrorCode, format string, args ...any) *RemoteError {
	return &RemoteError{Code: c, Message: fmt.Sprintf(format, args...)}
}

// CodeName is the lower-case, human form of a code ("queue full").
func CodeName(c pb.ErrorCode) string {
	n, ok := pb.ErrorCode_name[int32(c)]
	if !ok {
		return fmt.Sprintf("error %d", c)
	}
	out := make([]byte, len(n))
	for i := range len(n) {
		ch := n[i]
		switch {
		case ch == '_':
			ch = ' '
		case ch >= 'A' && ch <= 'Z':
			ch += 'a' - 'A'
		}
		out[i] = ch
	}
	return string(out)
}

// ToPB converts any error into a wire error. A *RemoteError keeps its code;
// framing errors map to their codes; anything else is INTERNAL.
func ToPB(err error) *pb.Error {
	if err == nil {
		return nil
	}
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		return &pb.Error{Code: re.Code, Message: re.Message}
	case errors.Is(err, ErrTooLarge):
		return &pb.Error{Code: pb.ErrorCode_TOO_LARGE, Message: err.Error()}
	case errors.Is(err, ErrMalformed):
		return &pb.Error{Code: pb.ErrorCode_BAD_REQUEST, Message: err.Error()}
	default:
		return &pb.Error{Code: pb.ErrorCode_INTERNAL, Message: err.Error()}
	}
}

// FromPB converts a wire error into a *RemoteError (nil for nil or code 0
// with no message).
func FromPB(e *pb.Error) error {
	if e == nil || (e.Code == pb.ErrorCode_ERROR_UNSPECIFIED && e.Message == "") {
		return nil
	}
	return &RemoteError{Code: e.Code, Message: e.Message}
}

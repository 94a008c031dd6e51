package protocols

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Reader reads length-delimited protobuf messages of at most max bytes.
// It buffers: use one Reader per stream for its whole life.
type Reader struct {
	r   *bufio.Reader
	opt protodelim.UnmarshalOptions
}

// NewReader wraps r. Messages longer than max fail with ErrTooLarge.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReader(r), opt: protodelim.UnmarshalOptions{MaxSize: int64(max)}}
}

// Read decodes the next message into m. It returns io.EOF at a clean end of
// stream, ErrTooLarge for an oversized frame, ErrMalformed for bytes that are
// not a valid message, and the stream's own error (deadline, reset) otherwise.
func (r *Reader) Read(m proto.Message) error {
	err := r.opt.UnmarshalFrom(r.r, m)
	if err == nil {
		return nil
	}
	var big *protodelim.SizeTooLargeError
	switch {
	case errors.As(err, &big):
		return fmt.Errorf("%w: frame of %d bytes over the %d-byte cap", ErrTooLarge, big.Size, r.opt.MaxSize)
	case err == io.EOF:
		return io.EOF
	case errors.Is(err, os.ErrDeadlineExceeded), isStreamError(err):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated frame: %w", ErrMalformed, err)
	default:
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
}

// isStreamError tells transport failures (reset, closed, timeout) from bad
// bytes: transports' errors implement net.Error-like methods, decode errors
// do not.
func isStreamError(err error) bool {
	var te interface{ Timeout() bool }
	if errors.As(err, &te) {
		return true
	}
	return errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed)
}

// Writer writes length-delimited protobuf messages.
type Writer struct {
	w   io.Writer
	max int
}

// NewWriter wraps w. Messages longer than max are refused before any byte is
// written, so a bug here cannot make us send what the peer must reject.
func NewWriter(w io.Writer, max int) *Writer {
	return &Writer{w: w, max: max}
}

// Flush flushes the underlying writer if it buffers (a *bufio.Writer).
func (w *Writer) Flush() error {
	if f, ok := w.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Write encodes m as one frame with a single write call.
func (w *Writer) Write(m proto.Message) error {
	n := proto.Size(m)
	if n > w.max {
		return fmt.Errorf("%w: message of %d bytes over the %d-byte cap", ErrTooLarge, n, w.max)
	}
	buf := make([]byte, 0, n+10)
	buf = protowire.AppendVarint(buf, uint64(n))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, m)
	if err != nil {
		return fmt.Errorf("protocols: encode: %w", err)
	}
	_, err = w.w.Write(buf)
	return err
}

package events

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// appendEvent appends e's JSON line, byte for byte what encoding/json's
// Encoder writes for it (field order, omitempty, HTML-safe escaping, the
// final newline), without reflection: events are written on the hot path
// (every protocol message). Attrs, rare on hot kinds, go through
// encoding/json.
func appendEvent(b []byte, e *Event) ([]byte, error) {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"t":"`...)
	if y := e.Time.Year(); y < 0 || y > 9999 {
		// encoding/json refuses these; so do we, the same way.
		_, err := json.Marshal(e.Time)
		return b, err
	}
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","mono":`...)
	b = strconv.AppendInt(b, e.Mono, 10)
	b = appendField(b, `,"node":`, e.Node)
	b = appendField(b, `,"role":`, e.Role)
	b = appendField(b, `,"kind":`, string(e.Kind))
	b = appendOmit(b, `,"peer":`, e.Peer)
	b = appendOmit(b, `,"proto":`, e.Proto)
	if e.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, int64(e.Size), 10)
	}
	b = appendOmit(b, `,"dir":`, e.Dir)
	b = appendOmit(b, `,"conn":`, e.Conn)
	b = appendOmit(b, `,"series":`, e.Series)
	b = appendOmit(b, `,"job":`, e.Job)
	if e.Price != 0 {
		b = append(b, `,"price":`...)
		b = strconv.AppendUint(b, e.Price, 10)
	}
	b = appendOmit(b, `,"err":`, e.Err)
	if len(e.Attrs) > 0 {
		b = append(b, `,"attrs":`...)
		if n, ok := appendAttrs(b, e.Attrs); ok {
			b = n
		} else {
			a, err := json.Marshal(e.Attrs)
			if err != nil {
				return b, err
			}
			b = append(b, a...)
		}
	}
	return append(b, "}\n"...), nil
}

// appendAttrs encodes a small map of strings, integers and booleans (the
// hot kinds' attributes) with sorted keys, as encoding/json does; ok is
// false for anything else, left to encoding/json.
func appendAttrs(b []byte, m map[string]any) ([]byte, bool) {
	if len(m) > 8 {
		return b, false
	}
	var arr [8]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	start := len(b)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		switch v := m[k].(type) {
		case string:
			b = appendString(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case uint32:
			b = strconv.AppendUint(b, uint64(v), 10)
		case uint:
			b = strconv.AppendUint(b, uint64(v), 10)
		case bool:
			b = strconv.AppendBool(b, v)
		default:
			return b[:start], false
		}
	}
	return append(b, '}'), true
}

func appendField(b []byte, name, s string) []byte {
	return appendString(append(b, name...), s)
}

func appendOmit(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendField(b, name, s)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping on: invalid UTF-8 becomes U+FFFD; <, >, &, U+2028 and
// U+2029 are \u-escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// bufPool holds line buffers, so that encoding happens outside the log's
// lock without an allocation per event.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

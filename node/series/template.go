package series

import (
	"errors"
	"fmt"
	"strings"
)

// template is a string with {param} placeholders, split once at parse time.
// "{{" stands for a literal "{" and "}}" for a literal "}"; a lone "}" is
// kept as is.
type template struct {
	parts []tpart
}

type tpart struct {
	lit   string // literal text, when param == ""
	param string
}

// parseTemplate splits s and checks every placeholder names a known param.
func parseTemplate(s string, known map[string]bool) (template, error) {
	var t template
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return t, errors.New(`unclosed "{" (write "{{" for a literal brace)`)
			}
			name := s[i+1 : i+1+end]
			if !known[name] {
				if name == "" {
					return t, errors.New(`empty placeholder "{}" (write "{{" for a literal brace)`)
				}
				return t, fmt.Errorf("placeholder {%s} names no param", name)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, tpart{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, tpart{param: name})
			i += end + 1
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 || len(t.parts) == 0 {
		t.parts = append(t.parts, tpart{lit: lit.String()})
	}
	return t, nil
}

// expand substitutes values.
func (t template) expand(values map[string]string) string {
	if len(t.parts) == 1 && t.parts[0].param == "" {
		return t.parts[0].lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.param != "" {
			b.WriteString(values[p.param])
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

package series

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// This file turns goccy/go-yaml's AST into typed values with field paths and
// line numbers for every error. Anchors, aliases, tags and merge keys are
// refused: a series spec is a plain document.

// lineOf returns the 1-based line of n, or 0.
func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// parseDocument parses data into the body node of its single document (nil
// for an empty document).
func parseDocument(data []byte) (body ast.Node, err error) {
	defer func() {
		// The parser is third-party code fed untrusted bytes: a panic in it
		// is reported as a bad document, not a crashed client.
		if r := recover(); r != nil {
			err = &Error{Err: fmt.Errorf("invalid YAML: parser failure: %v", r)}
		}
	}()
	f, perr := parser.ParseBytes(data, 0)
	if perr != nil {
		e := &Error{Err: fmt.Errorf("invalid YAML: %s", yamlMessage(perr))}
		var ye yaml.Error
		if errors.As(perr, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			e.Line = ye.GetToken().Position.Line
		}
		return nil, e
	}
	var docs []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d.Body)
		}
	}
	switch len(docs) {
	case 0:
		return nil, nil
	case 1:
		return docs[0], nil
	default:
		return nil, fieldErr("", lineOf(docs[1]), "more than one YAML document")
	}
}

func yamlMessage(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		return ye.GetMessage()
	}
	return err.Error()
}

// kv is one key of a mapping, in document order.
type kv struct {
	key  string
	line int
	val  ast.Node // never nil; a *ast.NullNode for "key:"
}

// unwrap refuses the node kinds a spec never needs.
func unwrap(field string, n ast.Node) (ast.Node, error) {
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode:
		return nil, fieldErr(field, lineOf(n), "YAML anchors and aliases are not supported")
	case *ast.TagNode:
		return nil, fieldErr(field, lineOf(n), "YAML tags are not supported")
	case *ast.MergeKeyNode:
		return nil, fieldErr(field, lineOf(n), "YAML merge keys are not supported")
	}
	return n, nil
}

// isNull reports whether n is absent or an explicit null.
func isNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

// mapping returns the entries of a mapping node in order; null is an empty
// mapping. Duplicate and non-string keys are errors.
func mapping(field string, n ast.Node) ([]kv, error) {
	if isNull(n) {
		return nil, nil
	}
	n, err := unwrap(field, n)
	if err != nil {
		return nil, err
	}
	var vals []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		vals = m.Values
	case *ast.MappingValueNode:
		vals = []*ast.MappingValueNode{m}
	default:
		return nil, fieldErr(field, lineOf(n), "want a mapping, got %s", kind(n))
	}
	out := make([]kv, 0, len(vals))
	seen := make(map[string]bool, len(vals))
	for _, mv := range vals {
		if mv == nil || mv.Key == nil {
			return nil, fieldErr(field, lineOf(n), "malformed mapping")
		}
		k, err := unwrap(field, mv.Key)
		if err != nil {
			return nil, err
		}
		var key string
		switch kn := k.(type) {
		case *ast.StringNode:
			key = kn.Value
		case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
			key = k.GetToken().Value
		default:
			return nil, fieldErr(field, lineOf(k), "want a plain key, got %s", kind(k))
		}
		if seen[key] {
			return nil, fieldErr(join(field, key), lineOf(k), "duplicate key")
		}
		seen[key] = true
		v := mv.Value
		if v == nil {
			v = ast.Null(nil)
		}
		out = append(out, kv{key: key, line: lineOf(k), val: v})
	}
	return out, nil
}

// sequence returns the items of a sequence node; null is empty.
func sequence(field string, n ast.Node) ([]ast.Node, error) {
	if isNull(n) {
		return nil, nil
	}
	n, err := unwrap(field, n)
	if err != nil {
		return nil, err
	}
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		return nil, fieldErr(field, lineOf(n), "want a list, got %s", kind(n))
	}
	return s.Values, nil
}

// scalarText returns the text of a scalar: strings as written (unquoted),
// numbers and booleans as their literal text. Null is an error.
func scalarText(field string, n ast.Node) (string, error) {
	n, err := unwrap(field, n)
	if err != nil {
		return "", err
	}
	switch s := n.(type) {
	case *ast.StringNode:
		return s.Value, nil
	case *ast.LiteralNode:
		if s.Value == nil {
			return "", nil
		}
		return s.Value.Value, nil
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, nil
	case nil, *ast.NullNode:
		return "", fieldErr(field, lineOf(n), "want a value, got null")
	default:
		return "", fieldErr(field, lineOf(n), "want a single value, got %s", kind(n))
	}
}

// stringVal is scalarText that allows only strings (and treats null as "").
func stringVal(field string, n ast.Node) (string, error) {
	if isNull(n) {
		return "", nil
	}
	n, err := unwrap(field, n)
	if err != nil {
		return "", err
	}
	switch n.(type) {
	case *ast.StringNode, *ast.LiteralNode:
		return scalarText(field, n)
	}
	return "", fieldErr(field, lineOf(n), "want a string, got %s", kind(n))
}

// intVal reads an integer in [lo, hi].
func intVal(field string, n ast.Node, lo, hi int64) (int64, error) {
	n, err := unwrap(field, n)
	if err != nil {
		return 0, err
	}
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		return 0, fieldErr(field, lineOf(n), "want an integer, got %s", kind(n))
	}
	var v int64
	switch x := in.Value.(type) {
	case int64:
		v = x
	case uint64:
		if x > math.MaxInt64 {
			return 0, fieldErr(field, lineOf(n), "%d is out of range [%d, %d]", x, lo, hi)
		}
		v = int64(x)
	default:
		return 0, fieldErr(field, lineOf(n), "want an integer")
	}
	if v < lo || v > hi {
		return 0, fieldErr(field, lineOf(n), "%d is out of range [%d, %d]", v, lo, hi)
	}
	return v, nil
}

// uintVal reads a non-negative integer.
func uintVal(field string, n ast.Node) (uint64, error) {
	n, err := unwrap(field, n)
	if err != nil {
		return 0, err
	}
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		return 0, fieldErr(field, lineOf(n), "want a non-negative integer, got %s", kind(n))
	}
	switch x := in.Value.(type) {
	case int64:
		if x < 0 {
			return 0, fieldErr(field, lineOf(n), "must not be negative")
		}
		return uint64(x), nil
	case uint64:
		return x, nil
	}
	return 0, fieldErr(field, lineOf(n), "want a non-negative integer")
}

// kind names a node's type for error messages.
func kind(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("a YAML %s", n.Type())
}

// join appends a key to a dotted field path.
func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// index appends a list index to a field path.
func index(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

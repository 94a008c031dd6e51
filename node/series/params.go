package series

import (
	"fmt"
	"math"
	"math/big"
	"strconv"

	"github.com/goccy/go-yaml/ast"
)

// parseParams reads the params mapping. Each param is a list of scalars, a
// single scalar, or a range {from, to, step}. Ranges are sized before any
// value is generated, so a huge range costs nothing but an error.
func parseParams(field string, n ast.Node) ([]Param, error) {
	m, err := mapping(field, n)
	if err != nil {
		return nil, err
	}
	type pending struct {
		kv
		rng   *rangeSpec
		items []ast.Node
	}
	ps := make([]pending, 0, len(m))
	for _, e := range m {
		f := join(field, e.key)
		if err := checkParamName(e.key); err != nil {
			return nil, &Error{Field: f, Line: e.line, Err: err}
		}
		p := pending{kv: e}
		v, err := unwrap(f, e.val)
		if err != nil {
			return nil, err
		}
		switch v.(type) {
		case *ast.SequenceNode:
			if p.items, err = sequence(f, v); err != nil {
				return nil, err
			}
			if len(p.items) == 0 {
				return nil, fieldErr(f, e.line, "empty list: a param needs at least one value")
			}
		case *ast.MappingNode, *ast.MappingValueNode:
			if p.rng, err = parseRange(f, v); err != nil {
				return nil, err
			}
		case *ast.NullNode:
			return nil, fieldErr(f, e.line, "no values: want a list or a range {from, to, step}")
		default:
			p.items = []ast.Node{v}
		}
		ps = append(ps, p)
	}
	// Size the sweep before generating anything.
	total := uint64(1)
	for _, p := range ps {
		c := uint64(len(p.items))
		if p.rng != nil {
			c = p.rng.count
		}
		if c > MaxJobs || total*c > MaxJobs {
			return nil, &Error{Field: join(field, p.key), Line: p.line,
				Err: fmt.Errorf("%w: the sweep reaches more than %d jobs", ErrTooManyJobs, MaxJobs)}
		}
		total *= c
	}
	out := make([]Param, 0, len(ps))
	for _, p := range ps {
		f := join(field, p.key)
		var vals []string
		if p.rng != nil {
			vals = p.rng.values()
		} else {
			vals = make([]string, 0, len(p.items))
			for i, it := range p.items {
				s, err := scalarText(index(f, i), it)
				if err != nil {
					return nil, err
				}
				vals = append(vals, s)
			}
		}
		out = append(out, Param{Name: p.key, Values: vals})
	}
	return out, nil
}

func checkParamName(n string) error {
	if n == "" {
		return fmt.Errorf("empty param name")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("param name longer than %d characters", MaxNameLen)
	}
	for i, c := range n {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return fmt.Errorf("param name %q: want a letter or '_' first, then letters, digits, '_', '-' or '.'", n)
		}
	}
	return nil
}

// rangeSpec is an arithmetic range from..to (inclusive) by step, computed in
// exact rationals so decimal steps give decimal values (0.1+0.2 is "0.3").
type rangeSpec struct {
	from, step *big.Rat
	isInt      bool
	fromInt    int64
	stepInt    int64
	count      uint64
}

func parseRange(field string, n ast.Node) (*rangeSpec, error) {
	m, err := mapping(field, n)
	if err != nil {
		return nil, err
	}
	var from, to, step *big.Rat
	isInt := true
	var fromLine, stepLine int
	for _, e := range m {
		f := join(field, e.key)
		r, integer, err := number(f, e.val)
		if err != nil {
			return nil, err
		}
		isInt = isInt && integer
		switch e.key {
		case "from":
			from, fromLine = r, e.line
		case "to":
			to = r
		case "step":
			step, stepLine = r, e.line
		default:
			return nil, fieldErr(f, e.line, "unknown field (a range has from, to and step)")
		}
	}
	if from == nil {
		return nil, fieldErr(join(field, "from"), lineOf(n), "required in a range")
	}
	if to == nil {
		return nil, fieldErr(join(field, "to"), lineOf(n), "required in a range")
	}
	if step == nil {
		step = big.NewRat(1, 1)
		stepLine = fromLine
	}
	if step.Sign() == 0 {
		return nil, fieldErr(join(field, "step"), stepLine, "must not be 0")
	}
	span := new(big.Rat).Sub(to, from)
	if span.Sign() != 0 && span.Sign() != step.Sign() {
		dir := "up"
		if step.Sign() < 0 {
			dir = "down"
		}
		return nil, fieldErr(join(field, "step"), stepLine, "from %s to %s never gets there counting %s by %s",
			ratString(from), ratString(to), dir, ratString(step))
	}
	q := new(big.Rat).Quo(span, step) // >= 0
	cnt := new(big.Int).Quo(q.Num(), q.Denom())
	cnt.Add(cnt, big.NewInt(1))
	if !cnt.IsUint64() || cnt.Uint64() > MaxJobs {
		return nil, &Error{Field: field, Line: lineOf(n),
			Err: fmt.Errorf("%w: the range has %s values, more than %d", ErrTooManyJobs, cnt, MaxJobs)}
	}
	r := &rangeSpec{from: from, step: step, isInt: isInt, count: cnt.Uint64()}
	if isInt {
		// from, to and step came from int64 literals; every value lies
		// between from and to, so int64 stepping does not overflow.
		r.fromInt, r.stepInt = from.Num().Int64(), step.Num().Int64()
	}
	return r, nil
}

// number reads a numeric literal exactly; integer reports an integer literal.
func number(field string, n ast.Node) (*big.Rat, bool, error) {
	n, err := unwrap(field, n)
	if err != nil {
		return nil, false, err
	}
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch v := x.Value.(type) {
		case int64:
			return new(big.Rat).SetInt64(v), true, nil
		case uint64:
			if v > math.MaxInt64 {
				return nil, false, fieldErr(field, lineOf(n), "%d is too large", v)
			}
			return new(big.Rat).SetInt64(int64(v)), true, nil
		}
	case *ast.StringNode:
		// goccy reads some numbers YAML 1.2 allows (1e-3) as strings.
		if _, err := strconv.ParseInt(x.Value, 10, 64); err == nil {
			r, _ := new(big.Rat).SetString(x.Value)
			return r, true, nil
		}
		if f, err := strconv.ParseFloat(x.Value, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			r, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
			if ok {
				return r, false, nil
			}
		}
	case *ast.FloatNode:
		if math.IsInf(x.Value, 0) || math.IsNaN(x.Value) {
			break
		}
		// The shortest decimal that reads back as the same float is what
		// the user wrote (0.1, not 0.1000000000000000055...).
		r, ok := new(big.Rat).SetString(strconv.FormatFloat(x.Value, 'g', -1, 64))
		if ok {
			return r, false, nil
		}
	}
	return nil, false, fieldErr(field, lineOf(n), "want a finite number, got %s", kind(n))
}

// values generates the range's values as strings.
func (r *rangeSpec) values() []string {
	out := make([]string, 0, r.count)
	if r.isInt {
		v := r.fromInt
		for i := uint64(0); i < r.count; i++ {
			if i > 0 {
				v += r.stepInt
			}
			out = append(out, strconv.FormatInt(v, 10))
		}
		return out
	}
	v := new(big.Rat).Set(r.from)
	for i := uint64(0); i < r.count; i++ {
		if i > 0 {
			v.Add(v, r.step)
		}
		out = append(out, ratString(v))
	}
	return out
}

// ratString formats r as the shortest float64 text ('g', -1).
func ratString(r *big.Rat) string {
	f, _ := r.Float64()
	if f == 0 {
		f = 0 // no "-0"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

package template

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

type builtin struct {
	min, max int // max < 0: no upper bound
	fn       func(s *scope, name string, args []any) (any, error)
	lazy     func(s *scope, c *callNode) (any, error) // evaluates its own arguments
}

// builtins maps lower-case function names to implementations. It is filled
// in init because the functions reach back into the evaluator.
var builtins map[string]builtin

var listFunction builtin

func init() {
	builtins = map[string]builtin{}
	for _, group := range []map[string]builtin{
		arrayFunctions(), comparisonFunctions(), dateFunctions(), deploymentFunctions(),
		lambdaFunctions(), logicalFunctions(), numericFunctions(), objectFunctions(),
		resourceFunctions(), stringFunctions(),
	} {
		for k, v := range group {
			builtins[strings.ToLower(k)] = v
		}
	}
	listFunction = builtin{min: 2, max: 3, fn: fnList}
}

// FunctionNames lists every built-in function (lower case), for callers that
// document or test coverage.
func FunctionNames() []string {
	names := make([]string, 0, len(builtins))
	for k := range builtins {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// ---- argument helpers ----

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), nil
		}
	}
	return 0, errorf("expected an Integer, got %s", typeName(v))
}

func argInt(args []any, i int) (int64, error) {
	n, err := toInt(args[i])
	if err != nil {
		return 0, errorf("argument %d must be an Integer, not %s", i+1, typeName(args[i]))
	}
	return n, nil
}

func argString(args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", errorf("argument %d must be a String, not %s", i+1, typeName(args[i]))
	}
	return s, nil
}

func argBool(args []any, i int) (bool, error) {
	b, ok := args[i].(bool)
	if !ok {
		return false, errorf("argument %d must be a Boolean, not %s", i+1, typeName(args[i]))
	}
	return b, nil
}

func argArray(args []any, i int) ([]any, error) {
	a, ok := args[i].([]any)
	if !ok {
		return nil, errorf("argument %d must be an Array, not %s", i+1, typeName(args[i]))
	}
	return a, nil
}

func argObject(args []any, i int) (map[string]any, error) {
	o, ok := args[i].(map[string]any)
	if !ok {
		return nil, errorf("argument %d must be an Object, not %s", i+1, typeName(args[i]))
	}
	return o, nil
}

func argLambda(args []any, i int, params int) (*lambdaValue, error) {
	l, ok := args[i].(*lambdaValue)
	if !ok {
		return nil, errorf("argument %d must be a lambda expression, not %s", i+1, typeName(args[i]))
	}
	if len(l.params) != params {
		return nil, errorf("the lambda in argument %d must take %d parameter(s), not %d", i+1, params, len(l.params))
	}
	return l, nil
}

// concatString renders a scalar for concat/format-style joining.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return floatString(x), true
	case bool:
		return boolString(x), true
	case nil:
		return "", true
	}
	return "", false
}

// ---- comparison ----

func comparisonFunctions() map[string]builtin {
	cmp := func(pred func(int) bool) builtin {
		return builtin{min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			c, err := compare(a[0], a[1])
			if err != nil {
				return nil, err
			}
			return pred(c), nil
		}}
	}
	return map[string]builtin{
		"coalesce": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			for _, v := range a {
				if v != nil {
					return v, nil
				}
			}
			return nil, nil
		}},
		"equals": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			return deepEqual(a[0], a[1]), nil
		}},
		"greater":         cmp(func(c int) bool { return c > 0 }),
		"greaterOrEquals": cmp(func(c int) bool { return c >= 0 }),
		"less":            cmp(func(c int) bool { return c < 0 }),
		"lessOrEquals":    cmp(func(c int) bool { return c <= 0 }),
	}
}

// compare orders two integers, floats or strings (ordinally).
func compare(a, b any) (int, error) {
	if fa, ok := asFloat(a); ok {
		if fb, ok := asFloat(b); ok {
			switch {
			case fa < fb:
				return -1, nil
			case fa > fb:
				return 1, nil
			}
			return 0, nil
		}
	}
	if sa, ok := a.(string); ok {
		if sb, ok := b.(string); ok {
			return strings.Compare(sa, sb), nil
		}
	}
	return 0, errorf("the values must both be numbers or both be strings, got %s and %s", typeName(a), typeName(b))
}

// ---- logical ----

func logicalFunctions() map[string]builtin {
	return map[string]builtin{
		"and": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			r := true
			for i := range a {
				b, err := argBool(a, i)
				if err != nil {
					return nil, err
				}
				r = r && b
			}
			return r, nil
		}},
		"or": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			r := false
			for i := range a {
				b, err := argBool(a, i)
				if err != nil {
					return nil, err
				}
				r = r || b
			}
			return r, nil
		}},
		"not": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			b, err := argBool(a, 0)
			return !b, err
		}},
		"bool": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			return toBool(a[0])
		}},
		"true":  {min: 0, max: 0, fn: func(*scope, string, []any) (any, error) { return true, nil }},
		"false": {min: 0, max: 0, fn: func(*scope, string, []any) (any, error) { return false, nil }},
		// if evaluates only the branch taken.
		"if": {min: 3, max: 3, lazy: func(s *scope, c *callNode) (any, error) {
			cv, err := s.eval(c.args[0])
			if err != nil {
				return nil, err
			}
			b, ok := cv.(bool)
			if !ok {
				return nil, errorf("the condition must be a Boolean, not %s", typeName(cv))
			}
			if b {
				return s.eval(c.args[1])
			}
			return s.eval(c.args[2])
		}},
	}
}

func toBool(v any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, errorf("the string '%s' can't be converted to a Boolean", x)
	}
	return nil, errorf("a %s can't be converted to a Boolean", typeName(v))
}

// ---- numeric ----

func numericFunctions() map[string]builtin {
	arith := func(op func(a, b int64) (int64, error)) builtin {
		return builtin{min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			x, err := argInt(a, 0)
			if err != nil {
				return nil, err
			}
			y, err := argInt(a, 1)
			if err != nil {
				return nil, err
			}
			return op(x, y)
		}}
	}
	return map[string]builtin{
		"add": arith(func(a, b int64) (int64, error) { return a + b, nil }),
		"sub": arith(func(a, b int64) (int64, error) { return a - b, nil }),
		"mul": arith(func(a, b int64) (int64, error) { return a * b, nil }),
		"div": arith(func(a, b int64) (int64, error) {
			if b == 0 {
				return 0, errorf("attempted to divide by zero")
			}
			return a / b, nil
		}),
		"mod": arith(func(a, b int64) (int64, error) {
			if b == 0 {
				return 0, errorf("attempted to divide by zero")
			}
			return a % b, nil
		}),
		"float": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case int64:
				return float64(x), nil
			case float64:
				return x, nil
			case string:
				f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
				if err != nil {
					return nil, errorf("the string '%s' can't be converted to a Float", x)
				}
				return f, nil
			}
			return nil, errorf("a %s can't be converted to a Float", typeName(a[0]))
		}},
		"int": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case int64:
				return x, nil
			case float64:
				// Convert.ToInt64 rounds half to even.
				return int64(math.RoundToEven(x)), nil
			case string:
				n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
				if err != nil {
					return nil, errorf("the string '%s' can't be converted to an Integer", x)
				}
				return n, nil
			}
			return nil, errorf("a %s can't be converted to an Integer", typeName(a[0]))
		}},
		"copyIndex": {min: 0, max: 2, fn: fnCopyIndex},
	}
}

func fnCopyIndex(s *scope, _ string, a []any) (any, error) {
	loop := s.loop
	offset := int64(0)
	switch len(a) {
	case 1:
		switch x := a[0].(type) {
		case string:
			loop = strings.ToLower(x)
		default:
			n, err := argInt(a, 0)
			if err != nil {
				return nil, errorf("the argument must be a loop name or an offset, not %s", typeName(a[0]))
			}
			offset = n
		}
	case 2:
		name, err := argString(a, 0)
		if err != nil {
			return nil, err
		}
		loop = strings.ToLower(name)
		if offset, err = argInt(a, 1); err != nil {
			return nil, err
		}
	}
	if loop == "" {
		return nil, errorf("the template function 'copyIndex' is not expected at this location: it can only be used within a copy loop")
	}
	idx, ok := s.loops[loop]
	if !ok {
		return nil, errorf("the template function 'copyIndex' refers to the copy loop '%s', which is not an enclosing loop", loop)
	}
	return int64(idx) + offset, nil
}

// ---- helpers shared by array/object/string groups ----

func maxMin(a []any, wantMax bool) (any, error) {
	vals := a
	if len(a) == 1 {
		if arr, ok := a[0].([]any); ok {
			vals = arr
		}
	}
	if len(vals) == 0 {
		return nil, errorf("the array must not be empty")
	}
	var best any
	for _, v := range vals {
		if _, ok := asFloat(v); !ok {
			return nil, errorf("the values must be numbers, got %s", typeName(v))
		}
		if best == nil {
			best = v
			continue
		}
		c, _ := compare(v, best)
		if (wantMax && c > 0) || (!wantMax && c < 0) {
			best = v
		}
	}
	return best, nil
}

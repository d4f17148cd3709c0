package template

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// EvalError is a failure while evaluating an expression (a wrong argument, a
// missing parameter). The template layer wraps it with the JSON path.
type EvalError struct {
	Function string // the function that failed, if any
	Msg      string
	Err      error // an error returned by a callback, if any
}

func (e *EvalError) Error() string {
	msg := e.Msg
	if e.Function != "" && !strings.Contains(msg, "'"+e.Function+"'") {
		msg = fmt.Sprintf("the template function '%s' is not valid: %s", e.Function, msg)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *EvalError) Unwrap() error { return e.Err }

func errorf(format string, args ...any) error {
	return &EvalError{Msg: fmt.Sprintf(format, args...)}
}

// lambdaValue is the value of lambda('x', ...): parameters and an unevaluated body.
type lambdaValue struct {
	params []string
	body   Node
}

// scope is what an expression can see.
type scope struct {
	ctx context.Context
	st  *state

	loops map[string]int // copy loop name (lower case) → current index
	loop  string         // the innermost loop name (lower case), for copyIndex()

	fnParams   map[string]any // inside a user-defined function: its parameters
	inFunction bool
	lambdaVars map[string]any

	allowDefaults bool // utcNow() and newGuid() (parameter default values only)
	runtime       bool // reference() and list*() may call out
	noResource    bool // variables, user functions: reference/list not allowed at all
	depth         int
}

func (s *scope) withLoop(name string, idx int) *scope {
	c := *s
	c.loops = make(map[string]int, len(s.loops)+1)
	for k, v := range s.loops {
		c.loops[k] = v
	}
	c.loops[strings.ToLower(name)] = idx
	c.loop = strings.ToLower(name)
	return &c
}

// exprCache parses each distinct expression text once.
type exprCache struct {
	mu sync.Mutex
	m  map[string]exprEntry
}

type exprEntry struct {
	n   Node
	err error
}

func (c *exprCache) parse(src string) (Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]exprEntry{}
	}
	if e, ok := c.m[src]; ok {
		return e.n, e.err
	}
	n, err := ParseExpression(src)
	c.m[src] = exprEntry{n, err}
	return n, err
}

// evalString evaluates a JSON string value: an expression, or a literal.
func (s *scope) evalString(str string) (any, error) {
	inner, lit, isExpr := splitExpression(str)
	if !isExpr {
		return lit, nil
	}
	n, err := s.st.cache.parse(inner)
	if err != nil {
		return nil, err
	}
	return s.eval(n)
}

// evalValue evaluates every expression inside a JSON value. Objects holding a
// "copy" array get their property loops expanded.
func (s *scope) evalValue(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return s.evalString(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := s.evalValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if strings.EqualFold(k, "copy") {
				if loops, ok := e.([]any); ok {
					if err := s.expandPropertyCopies(loops, out); err != nil {
						return nil, err
					}
					continue
				}
			}
			r, err := s.evalValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

// maxCopy is ARM's limit on copy counts.
const maxCopy = 800

// expandPropertyCopies implements property iteration:
// "copy": [{"name": "dataDisks", "count": 2, "input": {...}}].
func (s *scope) expandPropertyCopies(loops []any, out map[string]any) error {
	for _, l := range loops {
		loop, ok := l.(map[string]any)
		if !ok {
			return errorf("the copy property must be an array of objects with 'name', 'count' and 'input'")
		}
		name, count, err := s.copyHeader(loop)
		if err != nil {
			return err
		}
		input, ok := lookupKey(loop, "input")
		if !ok {
			return errorf("the copy loop '%s' has no 'input'", name)
		}
		arr := make([]any, 0, count)
		for i := 0; i < count; i++ {
			// copyIndex() without a name keeps meaning the enclosing resource
			// loop; a property loop is named: copyIndex('dataDisks').
			inner := s.withLoop(name, i)
			if s.loop != "" {
				inner.loop = s.loop
			}
			v, err := inner.evalValue(input)
			if err != nil {
				return err
			}
			arr = append(arr, v)
		}
		out[name] = arr
	}
	return nil
}

// copyHeader reads and evaluates a copy object's name and count.
func (s *scope) copyHeader(loop map[string]any) (string, int, error) {
	rawName, _ := lookupKey(loop, "name")
	nameV, err := s.evalValue(rawName)
	if err != nil {
		return "", 0, err
	}
	name, ok := nameV.(string)
	if !ok || name == "" {
		return "", 0, errorf("the copy loop must have a non-empty 'name'")
	}
	rawCount, ok := lookupKey(loop, "count")
	if !ok {
		return "", 0, errorf("the copy loop '%s' has no 'count'", name)
	}
	cv, err := s.evalValue(rawCount)
	if err != nil {
		return "", 0, err
	}
	n, err := toInt(cv)
	if err != nil {
		return "", 0, errorf("the copy loop '%s' count must be an integer, not %s", name, typeName(cv))
	}
	if n < 0 || n > maxCopy {
		return "", 0, errorf("the copy loop '%s' count %d is out of range: it must be between 0 and %d", name, n, maxCopy)
	}
	return name, int(n), nil
}

func (s *scope) eval(n Node) (any, error) {
	s.depth++
	defer func() { s.depth-- }()
	if s.depth > maxDepth*4 {
		return nil, errorf("the expression evaluation is nested too deeply")
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	switch x := n.(type) {
	case *strLit:
		return x.v, nil
	case *numLit:
		return x.v, nil
	case *propNode:
		base, err := s.eval(x.x)
		if err != nil {
			return nil, err
		}
		return property(base, x.name)
	case *indexNode:
		base, err := s.eval(x.x)
		if err != nil {
			return nil, err
		}
		idx, err := s.eval(x.idx)
		if err != nil {
			return nil, err
		}
		return index(base, idx)
	case *callNode:
		return s.call(x)
	}
	return nil, errorf("unknown expression node %T", n)
}

func property(base any, name string) (any, error) {
	m, ok := base.(map[string]any)
	if !ok {
		return nil, errorf("the language expression property '%s' can't be evaluated, property name must be accessed on an object, not %s", name, typeName(base))
	}
	v, ok := lookupKey(m, name)
	if !ok {
		return nil, errorf("the language expression property '%s' doesn't exist, available properties are '%s'", name, strings.Join(sortedKeys(m), ", "))
	}
	return v, nil
}

func index(base, idx any) (any, error) {
	switch b := base.(type) {
	case []any:
		i, err := toInt(idx)
		if err != nil {
			return nil, errorf("the language expression array index must be an integer, not %s", typeName(idx))
		}
		if i < 0 || i >= int64(len(b)) {
			return nil, errorf("the language expression property array index '%d' is out of bounds", i)
		}
		return b[i], nil
	case map[string]any:
		k, ok := idx.(string)
		if !ok {
			return nil, errorf("the language expression object property name must be a string, not %s", typeName(idx))
		}
		return property(b, k)
	}
	return nil, errorf("the language expression can't index a value of type %s", typeName(base))
}

func (s *scope) call(c *callNode) (any, error) {
	if c.namespace != "" {
		return s.callUser(c)
	}
	name := strings.ToLower(c.name)
	f, ok := builtins[name]
	if !ok && strings.HasPrefix(name, "list") {
		f = listFunction
		ok = true
	}
	if !ok {
		return nil, &EvalError{Function: c.name, Msg: fmt.Sprintf("the template function '%s' is not valid. Please see https://aka.ms/arm-functions for usage details", c.name)}
	}
	if len(c.args) < f.min || (f.max >= 0 && len(c.args) > f.max) {
		return nil, &EvalError{Function: c.name, Msg: arityMessage(c.name, f.min, f.max, len(c.args))}
	}
	if f.lazy != nil {
		v, err := f.lazy(s, c)
		return v, wrapFn(c.name, err)
	}
	args := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := s.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	v, err := f.fn(s, c.name, args)
	return v, wrapFn(c.name, err)
}

func wrapFn(name string, err error) error {
	if err == nil || err == errRuntime {
		return err
	}
	if e, ok := err.(*EvalError); ok && e.Function == "" {
		return &EvalError{Function: name, Msg: e.Msg, Err: e.Err}
	}
	return err
}

func arityMessage(name string, lo, hi, got int) string {
	switch {
	case hi == lo:
		return fmt.Sprintf("the template language function '%s' must have %d argument(s), got %d", name, lo, got)
	case hi < 0:
		return fmt.Sprintf("the template language function '%s' must have at least %d argument(s), got %d", name, lo, got)
	default:
		return fmt.Sprintf("the template language function '%s' must have between %d and %d arguments, got %d", name, lo, hi, got)
	}
}

// callUser invokes a user-defined function ns.name(...).
func (s *scope) callUser(c *callNode) (any, error) {
	fn, ok := s.st.functions[strings.ToLower(c.namespace)+"."+strings.ToLower(c.name)]
	if !ok {
		return nil, &EvalError{Function: c.namespace + "." + c.name, Msg: fmt.Sprintf("the template function '%s.%s' is not defined", c.namespace, c.name)}
	}
	if len(c.args) != len(fn.params) {
		return nil, &EvalError{Function: c.namespace + "." + c.name, Msg: arityMessage(c.namespace+"."+c.name, len(fn.params), len(fn.params), len(c.args))}
	}
	params := make(map[string]any, len(fn.params))
	for i, a := range c.args {
		v, err := s.eval(a)
		if err != nil {
			return nil, err
		}
		cv, err := coerceParam(fn.params[i].typ, v)
		if err != nil {
			return nil, &EvalError{Function: c.namespace + "." + c.name, Msg: fmt.Sprintf("the parameter '%s': %v", fn.params[i].name, err)}
		}
		params[strings.ToLower(fn.params[i].name)] = cv
	}
	inner := &scope{ctx: s.ctx, st: s.st, fnParams: params, inFunction: true, noResource: true, depth: s.depth}
	out, err := inner.evalValue(fn.output)
	if err != nil {
		return nil, err
	}
	if fn.outputType != "" {
		if out, err = coerceParam(fn.outputType, out); err != nil {
			return nil, &EvalError{Function: c.namespace + "." + c.name, Msg: fmt.Sprintf("the output: %v", err)}
		}
	}
	return out, nil
}

// callLambda applies a lambda to arguments.
func (s *scope) callLambda(l *lambdaValue, args ...any) (any, error) {
	if len(args) != len(l.params) {
		return nil, errorf("the lambda expects %d argument(s), got %d", len(l.params), len(args))
	}
	c := *s
	c.lambdaVars = make(map[string]any, len(s.lambdaVars)+len(args))
	for k, v := range s.lambdaVars {
		c.lambdaVars[k] = v
	}
	for i, p := range l.params {
		c.lambdaVars[strings.ToLower(p)] = args[i]
	}
	return c.eval(l.body)
}

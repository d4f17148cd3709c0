package template

import (
	"sort"
	"strings"
)

func lambdaFunctions() map[string]builtin {
	return map[string]builtin{
		"lambda": {min: 1, max: -1, lazy: func(s *scope, c *callNode) (any, error) {
			l := &lambdaValue{body: c.args[len(c.args)-1]}
			for _, a := range c.args[:len(c.args)-1] {
				v, err := s.eval(a)
				if err != nil {
					return nil, err
				}
				name, ok := v.(string)
				if !ok || name == "" {
					return nil, errorf("the lambda parameter names must be non-empty strings")
				}
				l.params = append(l.params, name)
			}
			return l, nil
		}},
		"lambdaVariables": {min: 1, max: 1, fn: func(s *scope, _ string, a []any) (any, error) {
			name, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			v, ok := s.lambdaVars[strings.ToLower(name)]
			if !ok {
				return nil, errorf("the lambda variable '%s' is not defined", name)
			}
			return v, nil
		}},
		"filter": {min: 2, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, l, err := argArrayLambda(a, 1, 1)
			if err != nil {
				return nil, err
			}
			out := []any{}
			for _, e := range arr {
				keep, err := s.callLambda(l, e)
				if err != nil {
					return nil, err
				}
				b, ok := keep.(bool)
				if !ok {
					return nil, errorf("the filter lambda must return a Boolean, not %s", typeName(keep))
				}
				if b {
					out = append(out, e)
				}
			}
			return out, nil
		}},
		"map": {min: 2, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, l, err := argArrayLambda(a, 1, 1)
			if err != nil {
				return nil, err
			}
			out := make([]any, len(arr))
			for i, e := range arr {
				if out[i], err = s.callLambda(l, e); err != nil {
					return nil, err
				}
			}
			return out, nil
		}},
		"reduce": {min: 3, max: 3, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, l, err := argArrayLambda(a, 2, 2)
			if err != nil {
				return nil, err
			}
			acc := a[1]
			for _, e := range arr {
				if acc, err = s.callLambda(l, acc, e); err != nil {
					return nil, err
				}
			}
			return acc, nil
		}},
		"sort": {min: 2, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, l, err := argArrayLambda(a, 1, 2)
			if err != nil {
				return nil, err
			}
			out := append([]any{}, arr...)
			var sortErr error
			sort.SliceStable(out, func(i, j int) bool {
				if sortErr != nil {
					return false
				}
				r, err := s.callLambda(l, out[i], out[j])
				if err != nil {
					sortErr = err
					return false
				}
				b, ok := r.(bool)
				if !ok {
					sortErr = errorf("the sort lambda must return a Boolean, not %s", typeName(r))
					return false
				}
				return b
			})
			return out, sortErr
		}},
		"toObject": {min: 2, max: 3, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, key, err := argArrayLambda(a, 1, 1)
			if err != nil {
				return nil, err
			}
			var val *lambdaValue
			if len(a) == 3 {
				if val, err = argLambda(a, 2, 1); err != nil {
					return nil, err
				}
			}
			out := map[string]any{}
			for _, e := range arr {
				k, err := s.callLambda(key, e)
				if err != nil {
					return nil, err
				}
				ks, ok := k.(string)
				if !ok {
					return nil, errorf("the key lambda must return a String, not %s", typeName(k))
				}
				v := e
				if val != nil {
					if v, err = s.callLambda(val, e); err != nil {
						return nil, err
					}
				}
				out[ks] = v
			}
			return out, nil
		}},
		"mapValues": {min: 2, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			o, err := argObject(a, 0)
			if err != nil {
				return nil, err
			}
			l, err := argLambda(a, 1, 1)
			if err != nil {
				return nil, err
			}
			out := make(map[string]any, len(o))
			for _, k := range sortedKeys(o) {
				if out[k], err = s.callLambda(l, o[k]); err != nil {
					return nil, err
				}
			}
			return out, nil
		}},
		"groupBy": {min: 2, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			arr, l, err := argArrayLambda(a, 1, 1)
			if err != nil {
				return nil, err
			}
			out := map[string]any{}
			for _, e := range arr {
				k, err := s.callLambda(l, e)
				if err != nil {
					return nil, err
				}
				ks, ok := scalarString(k)
				if !ok {
					return nil, errorf("the key lambda must return a String, not %s", typeName(k))
				}
				group, _ := out[ks].([]any)
				out[ks] = append(group, e)
			}
			return out, nil
		}},
	}
}

// argArrayLambda reads the array argument at index 0 and the lambda taking
// nparams parameters at index li, the opening of most lambda functions.
func argArrayLambda(a []any, li, nparams int) ([]any, *lambdaValue, error) {
	arr, err := argArray(a, 0)
	if err != nil {
		return nil, nil, err
	}
	l, err := argLambda(a, li, nparams)
	if err != nil {
		return nil, nil, err
	}
	return arr, l, nil
}

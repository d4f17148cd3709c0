package template

import (
	"sort"
	"strings"
)

// ---- array ----

func arrayFunctions() map[string]builtin {
	return map[string]builtin{
		"array": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			if arr, ok := a[0].([]any); ok {
				return arr, nil
			}
			return []any{a[0]}, nil
		}},
		"concat":   {min: 0, max: -1, fn: fnConcat},
		"contains": {min: 2, max: 2, fn: fnContains},
		"createArray": {min: 0, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			out := make([]any, len(a))
			copy(out, a)
			return out, nil
		}},
		"empty": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case nil:
				return true, nil
			case string:
				return x == "", nil
			case []any:
				return len(x) == 0, nil
			case map[string]any:
				return len(x) == 0, nil
			}
			return nil, errorf("the argument must be a String, Array or Object, not %s", typeName(a[0]))
		}},
		"first": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case []any:
				if len(x) == 0 {
					return nil, nil
				}
				return x[0], nil
			case string:
				if x == "" {
					return "", nil
				}
				return utf16Slice(x, 0, 1), nil
			}
			return nil, errorf("the argument must be a String or Array, not %s", typeName(a[0]))
		}},
		"last": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case []any:
				if len(x) == 0 {
					return nil, nil
				}
				return x[len(x)-1], nil
			case string:
				if x == "" {
					return "", nil
				}
				return utf16Slice(x, strLen(x)-1, 1), nil
			}
			return nil, errorf("the argument must be a String or Array, not %s", typeName(a[0]))
		}},
		"flatten": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			arr, err := argArray(a, 0)
			if err != nil {
				return nil, err
			}
			out := []any{}
			for _, e := range arr {
				inner, ok := e.([]any)
				if !ok {
					return nil, errorf("every element must be an Array, found %s", typeName(e))
				}
				out = append(out, inner...)
			}
			return out, nil
		}},
		"indexOf":      {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) { return indexOf(a, false) }},
		"lastIndexOf":  {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) { return indexOf(a, true) }},
		"intersection": {min: 2, max: -1, fn: fnIntersection},
		"union":        {min: 1, max: -1, fn: fnUnion},
		"length": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			switch x := a[0].(type) {
			case string:
				return int64(strLen(x)), nil
			case []any:
				return int64(len(x)), nil
			case map[string]any:
				return int64(len(x)), nil
			}
			return nil, errorf("the argument must be a String, Array or Object, not %s", typeName(a[0]))
		}},
		"max": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) { return maxMin(a, true) }},
		"min": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) { return maxMin(a, false) }},
		"range": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			start, err := argInt(a, 0)
			if err != nil {
				return nil, err
			}
			count, err := argInt(a, 1)
			if err != nil {
				return nil, err
			}
			if count < 0 || count > 10000 {
				return nil, errorf("the count must be between 0 and 10000, got %d", count)
			}
			if start+count > 2147483647 {
				return nil, errorf("the sum of start and count must not exceed 2147483647")
			}
			out := make([]any, count)
			for i := range out {
				out[i] = start + int64(i)
			}
			return out, nil
		}},
		"skip": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) { return skipTake(a, true) }},
		"take": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) { return skipTake(a, false) }},
		"indexFromEnd": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			v, ok, err := fromEnd(a)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, errorf("the index from the end must be between 1 and the length of the array")
			}
			return v, nil
		}},
		"tryIndexFromEnd": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			v, _, err := fromEnd(a)
			return v, err
		}},
		"tryGet": {min: 2, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			cur := a[0]
			for _, k := range a[1:] {
				switch c := cur.(type) {
				case map[string]any:
					ks, ok := k.(string)
					if !ok {
						return nil, nil
					}
					v, ok := lookupKey(c, ks)
					if !ok {
						return nil, nil
					}
					cur = v
				case []any:
					i, err := toInt(k)
					if err != nil || i < 0 || i >= int64(len(c)) {
						return nil, nil
					}
					cur = c[i]
				default:
					return nil, nil
				}
			}
			return cur, nil
		}},
	}
}

// fromEnd reads arr[len-i] for a one-based index i counted from the end.
func fromEnd(a []any) (any, bool, error) {
	arr, err := argArray(a, 0)
	if err != nil {
		return nil, false, err
	}
	i, err := argInt(a, 1)
	if err != nil {
		return nil, false, err
	}
	if i < 1 || i > int64(len(arr)) {
		return nil, false, nil
	}
	return arr[int64(len(arr))-i], true, nil
}

func fnConcat(_ *scope, _ string, a []any) (any, error) {
	if len(a) == 0 {
		return "", nil
	}
	if _, isArr := a[0].([]any); isArr {
		out := []any{}
		for i, v := range a {
			switch x := v.(type) {
			case []any:
				out = append(out, x...)
			case nil:
			default:
				return nil, errorf("argument %d must be an Array, not %s: all arguments must be arrays or all strings", i+1, typeName(v))
			}
		}
		return out, nil
	}
	var b strings.Builder
	for i, v := range a {
		s, ok := scalarString(v)
		if !ok {
			return nil, errorf("argument %d is %s: all arguments must be strings or all arrays", i+1, typeName(v))
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func fnContains(_ *scope, _ string, a []any) (any, error) {
	switch c := a[0].(type) {
	case string:
		s, ok := scalarString(a[1])
		if !ok {
			return nil, errorf("the value to find in a String must be a scalar, not %s", typeName(a[1]))
		}
		return strings.Contains(c, s), nil
	case []any:
		for _, e := range c {
			if deepEqual(e, a[1]) {
				return true, nil
			}
		}
		return false, nil
	case map[string]any:
		k, ok := scalarString(a[1])
		if !ok {
			return nil, errorf("the key to find in an Object must be a String, not %s", typeName(a[1]))
		}
		_, found := lookupKey(c, k)
		return found, nil
	}
	return nil, errorf("the container must be a String, Array or Object, not %s", typeName(a[0]))
}

func indexOf(a []any, last bool) (any, error) {
	switch c := a[0].(type) {
	case string:
		s, ok := a[1].(string)
		if !ok {
			return nil, errorf("argument 2 must be a String, not %s", typeName(a[1]))
		}
		// ARM compares case-insensitively and counts UTF-16 code units.
		hay, needle := strings.ToLower(c), strings.ToLower(s)
		if last {
			if needle == "" {
				return int64(max(strLen(c)-1, 0)), nil
			}
			i := strings.LastIndex(hay, needle)
			if i < 0 {
				return int64(-1), nil
			}
			return int64(strLen(hay[:i])), nil
		}
		i := strings.Index(hay, needle)
		if i < 0 {
			return int64(-1), nil
		}
		return int64(strLen(hay[:i])), nil
	case []any:
		if last {
			for i := len(c) - 1; i >= 0; i-- {
				if deepEqual(c[i], a[1]) {
					return int64(i), nil
				}
			}
			return int64(-1), nil
		}
		for i, e := range c {
			if deepEqual(e, a[1]) {
				return int64(i), nil
			}
		}
		return int64(-1), nil
	}
	return nil, errorf("argument 1 must be a String or Array, not %s", typeName(a[0]))
}

func skipTake(a []any, skip bool) (any, error) {
	n, err := argInt(a, 1)
	if err != nil {
		return nil, err
	}
	switch c := a[0].(type) {
	case []any:
		n = max(0, min(n, int64(len(c))))
		if skip {
			return append([]any{}, c[n:]...), nil
		}
		return append([]any{}, c[:n]...), nil
	case string:
		l := int64(strLen(c))
		n = max(0, min(n, l))
		if skip {
			return utf16Slice(c, int(n), int(l-n)), nil
		}
		return utf16Slice(c, 0, int(n)), nil
	}
	return nil, errorf("argument 1 must be a String or Array, not %s", typeName(a[0]))
}

func fnIntersection(_ *scope, _ string, a []any) (any, error) {
	switch first := a[0].(type) {
	case []any:
		out := []any{}
		for _, e := range first {
			inAll := true
			for i := 1; i < len(a); i++ {
				arr, err := argArray(a, i)
				if err != nil {
					return nil, err
				}
				if !containsValue(arr, e) {
					inAll = false
					break
				}
			}
			if inAll && !containsValue(out, e) {
				out = append(out, e)
			}
		}
		return out, nil
	case map[string]any:
		out := map[string]any{}
		for k, v := range first {
			inAll := true
			for i := 1; i < len(a); i++ {
				o, err := argObject(a, i)
				if err != nil {
					return nil, err
				}
				w, ok := o[k]
				if !ok || !deepEqual(v, w) {
					inAll = false
					break
				}
			}
			if inAll {
				out[k] = v
			}
		}
		return out, nil
	}
	return nil, errorf("the arguments must be arrays or objects, not %s", typeName(a[0]))
}

func containsValue(arr []any, v any) bool {
	for _, e := range arr {
		if deepEqual(e, v) {
			return true
		}
	}
	return false
}

func fnUnion(_ *scope, _ string, a []any) (any, error) {
	switch a[0].(type) {
	case []any:
		out := []any{}
		for i := range a {
			if a[i] == nil {
				continue
			}
			arr, err := argArray(a, i)
			if err != nil {
				return nil, err
			}
			for _, e := range arr {
				if !containsValue(out, e) {
					out = append(out, e)
				}
			}
		}
		return out, nil
	case map[string]any:
		out := map[string]any{}
		for i := range a {
			if a[i] == nil {
				continue
			}
			o, err := argObject(a, i)
			if err != nil {
				return nil, err
			}
			mergeDeep(out, o)
		}
		return out, nil
	}
	return nil, errorf("the arguments must be arrays or objects, not %s", typeName(a[0]))
}

// mergeDeep merges src into dst: nested objects merge recursively, anything
// else is replaced by the later value.
func mergeDeep(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merged := deepCopy(dv).(map[string]any)
				mergeDeep(merged, sv)
				dst[k] = merged
				continue
			}
		}
		dst[k] = deepCopy(v)
	}
}

// ---- object ----

func objectFunctions() map[string]builtin {
	return map[string]builtin{
		"createObject": {min: 0, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			if len(a)%2 != 0 {
				return nil, errorf("the arguments must be key and value pairs, got an odd number")
			}
			out := map[string]any{}
			for i := 0; i < len(a); i += 2 {
				k, err := argString(a, i)
				if err != nil {
					return nil, err
				}
				out[k] = a[i+1]
			}
			return out, nil
		}},
		"items": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			o, err := argObject(a, 0)
			if err != nil {
				return nil, err
			}
			keys := sortedKeys(o)
			sort.SliceStable(keys, func(i, j int) bool { return strings.ToLower(keys[i]) < strings.ToLower(keys[j]) })
			out := make([]any, 0, len(o))
			for _, k := range keys {
				out = append(out, map[string]any{"key": k, "value": o[k]})
			}
			return out, nil
		}},
		"json": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			v, err := decodeJSON([]byte(s))
			if err != nil {
				return nil, errorf("the argument is not valid JSON: %v", err)
			}
			return v, nil
		}},
		"null": {min: 0, max: 0, fn: func(*scope, string, []any) (any, error) { return nil, nil }},
		"objectKeys": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			o, err := argObject(a, 0)
			if err != nil {
				return nil, err
			}
			out := []any{}
			for _, k := range sortedKeys(o) {
				out = append(out, k)
			}
			return out, nil
		}},
		"shallowMerge": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			arr, err := argArray(a, 0)
			if err != nil {
				return nil, err
			}
			out := map[string]any{}
			for _, e := range arr {
				o, ok := e.(map[string]any)
				if !ok {
					return nil, errorf("every element must be an Object, found %s", typeName(e))
				}
				for k, v := range o {
					out[k] = v
				}
			}
			return out, nil
		}},
	}
}

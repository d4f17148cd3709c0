package template

import (
	"reflect"
	"strconv"
	"strings"
)

// CoerceTo converts an evaluated resource body toward a Go model type the way
// ARM's JSON handling does before a resource provider sees it: "true" becomes
// true for a boolean property, "5" becomes 5 for an integer one, 5 becomes
// "5" for a string one. Templates rely on this ("overprovision": "true",
// "capacity": "[parameters('count')]" with a string parameter). Properties
// the type does not know are kept unchanged; values that can't be converted
// are left for the model's own validation to reject.
//
// t is usually a struct type such as armcompute.VirtualMachineScaleSet;
// fields match JSON keys by their json tag or, for the SDK's generated models
// (which have none), case-insensitively by field name.
func CoerceTo(v any, t reflect.Type) any {
	return coerceTo(v, t, 0)
}

func coerceTo(v any, t reflect.Type, depth int) any {
	if t == nil || depth > 64 {
		return v
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			if f, ok := fieldFor(t, k); ok {
				out[k] = coerceTo(e, f.Type, depth+1)
			} else {
				out[k] = e
			}
		}
		return out
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return v
		}
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = coerceTo(e, t.Elem(), depth+1)
		}
		return out
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return v
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[k] = coerceTo(e, t.Elem(), depth+1)
		}
		return out
	case reflect.Bool:
		if s, ok := v.(string); ok {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "true":
				return true
			case "false":
				return false
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		switch x := v.(type) {
		case string:
			if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return n
			}
		case float64:
			if n, err := toInt(x); err == nil {
				return n
			}
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := v.(string); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return Normalize(f)
			}
		}
	case reflect.String:
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10)
		case float64:
			return floatString(x)
		}
	}
	return v
}

// fieldFor finds the struct field a JSON key sets.
func fieldFor(t reflect.Type, key string) (reflect.StructField, bool) {
	var byName *reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if tag, ok := f.Tag.Lookup("json"); ok {
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if name != "" {
				if strings.EqualFold(name, key) {
					return f, true
				}
				continue
			}
		}
		if strings.EqualFold(f.Name, key) && byName == nil {
			byName = &f
		}
	}
	if byName != nil {
		return *byName, true
	}
	return reflect.StructField{}, false
}

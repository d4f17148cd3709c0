package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Values are plain JSON values: map[string]any, []any, string, int64,
// float64, bool and nil. Lambdas (lambda('x', ...)) are the one extra kind, and
// only live inside an expression.

// typeName is ARM's (JToken) name for a value's type, used in messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "Null"
	case string:
		return "String"
	case int64:
		return "Integer"
	case float64:
		return "Float"
	case bool:
		return "Boolean"
	case map[string]any:
		return "Object"
	case []any:
		return "Array"
	case *lambdaValue:
		return "Lambda"
	}
	return fmt.Sprintf("%T", v)
}

// Normalize converts a Go value built by other code (encoding/json output,
// ints, string slices, json.Number) into the package's value model. Integral
// float64 values become int64, as JSON numbers without a fraction are integers
// in ARM.
func Normalize(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64:
		return x
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return Normalize(float64(x))
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	case json.Number:
		return numberValue(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Normalize(e)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Normalize(e)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = e
		}
		return out
	case *lambdaValue:
		return x
	}
	// Anything else: round-trip through JSON.
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	out, err := decodeJSON(b)
	if err != nil {
		return fmt.Sprint(v)
	}
	return out
}

func numberValue(n json.Number) any {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return string(n)
	}
	return f
}

// decodeJSON parses one JSON document into the value model.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return Normalize(v), nil
}

// deepCopy copies maps and slices so evaluation never aliases template data.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// deepEqual is JToken.DeepEquals: strings compare ordinally, numbers by value.
func deepEqual(a, b any) bool {
	if fa, ok := asFloat(a); ok {
		if fb, ok := asFloat(b); ok {
			return fa == fb
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !deepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !deepEqual(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// lookupKey finds a property the way ARM does: exact name first, then
// case-insensitively.
func lookupKey(m map[string]any, k string) (any, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for _, key := range sortedKeys(m) {
		if strings.EqualFold(key, k) {
			return m[key], true
		}
	}
	return nil, false
}

// realKey returns the key as spelled in m matching k case-insensitively.
func realKey(m map[string]any, k string) (string, bool) {
	if _, ok := m[k]; ok {
		return k, true
	}
	for _, key := range sortedKeys(m) {
		if strings.EqualFold(key, k) {
			return key, true
		}
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// boolString is .NET's rendering of a boolean.
func boolString(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func floatString(f float64) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// stringOf renders a value as ARM's string() does: strings as themselves,
// booleans as True/False, numbers in invariant culture, objects and arrays as
// compact JSON (keys in sorted order: Go maps do not keep declaration order).
func stringOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return boolString(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return floatString(x)
	}
	return compactJSON(v, '"')
}

// compactJSON writes v as minified JSON using quote as the string delimiter
// (format() renders nested strings with single quotes, string() with double).
func compactJSON(v any, quote byte) string {
	var b strings.Builder
	writeJSON(&b, v, quote)
	return b.String()
}

func writeJSON(b *strings.Builder, v any, quote byte) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(floatString(x))
	case string:
		writeQuoted(b, x, quote)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, e, quote)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeQuoted(b, k, quote)
			b.WriteByte(':')
			writeJSON(b, x[k], quote)
		}
		b.WriteByte('}')
	default:
		writeQuoted(b, fmt.Sprint(x), quote)
	}
}

func writeQuoted(b *strings.Builder, s string, quote byte) {
	if quote == '"' {
		enc, _ := json.Marshal(s)
		// json.Marshal escapes <, > and & for HTML; ARM does not.
		out := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(enc))
		b.WriteString(out)
		return
	}
	b.WriteByte(quote)
	for _, r := range s {
		switch r {
		case rune(quote), '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
}

// strLen is the length of s in UTF-16 code units, as .NET counts.
func strLen(s string) int { return len(utf16.Encode([]rune(s))) }

// utf16Slice takes [start, start+n) of s counted in UTF-16 code units.
func utf16Slice(s string, start, n int) string {
	u := utf16.Encode([]rune(s))
	return string(utf16.Decode(u[start : start+n]))
}

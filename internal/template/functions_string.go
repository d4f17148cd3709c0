package template

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

func stringFunctions() map[string]builtin {
	str1 := func(f func(string) (any, error)) builtin {
		return builtin{min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			return f(s)
		}}
	}
	return map[string]builtin{
		"base64": str1(func(s string) (any, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil }),
		"base64ToString": str1(func(s string) (any, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, errorf("the argument is not valid base64")
			}
			return string(b), nil
		}),
		"base64ToJson": str1(func(s string) (any, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, errorf("the argument is not valid base64")
			}
			v, err := decodeJSON(b)
			if err != nil {
				return nil, errorf("the decoded value is not valid JSON: %v", err)
			}
			return v, nil
		}),
		"dataUri": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, ok := scalarString(a[0])
			if !ok {
				s = stringOf(a[0])
			}
			return "data:text/plain;charset=utf8;base64," + base64.StdEncoding.EncodeToString([]byte(s)), nil
		}},
		"dataUriToString": str1(dataURIToString),
		"endsWith": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, t, err := twoStrings(a)
			if err != nil {
				return nil, err
			}
			return strings.HasSuffix(strings.ToLower(s), strings.ToLower(t)), nil
		}},
		"startsWith": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, t, err := twoStrings(a)
			if err != nil {
				return nil, err
			}
			return strings.HasPrefix(strings.ToLower(s), strings.ToLower(t)), nil
		}},
		"format": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			f, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			return dotnetFormat(f, a[1:])
		}},
		"guid": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			parts, err := allStrings(a)
			if err != nil {
				return nil, err
			}
			return GUID(parts...), nil
		}},
		"uniqueString": {min: 1, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			parts, err := allStrings(a)
			if err != nil {
				return nil, err
			}
			return UniqueString(parts...), nil
		}},
		"join": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			arr, err := argArray(a, 0)
			if err != nil {
				return nil, err
			}
			sep, err := argString(a, 1)
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(arr))
			for i, e := range arr {
				s, ok := scalarString(e)
				if !ok {
					return nil, errorf("element %d is %s: join takes an array of strings", i, typeName(e))
				}
				parts[i] = s
			}
			return strings.Join(parts, sep), nil
		}},
		"newGuid": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			if !s.allowDefaults {
				return nil, errorf("the template function 'newGuid' is not expected at this location: it can only be used in the default value of a parameter")
			}
			if s.st.env.NewGUID != nil {
				return s.st.env.NewGUID(), nil
			}
			var b [16]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, &EvalError{Msg: "newGuid failed", Err: err}
			}
			b[6] = b[6]&0x0f | 0x40
			b[8] = b[8]&0x3f | 0x80
			return formatUUID(b), nil
		}},
		"padLeft": {min: 2, max: 3, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, ok := scalarString(a[0])
			if !ok {
				return nil, errorf("argument 1 must be a String or Integer, not %s", typeName(a[0]))
			}
			n, err := argInt(a, 1)
			if err != nil {
				return nil, err
			}
			if n > 16*1024 {
				return nil, errorf("the total length %d is too large", n)
			}
			pad := " "
			if len(a) == 3 {
				if pad, err = argString(a, 2); err != nil {
					return nil, err
				}
				if strLen(pad) != 1 {
					return nil, errorf("the padding character must be a single character")
				}
			}
			if l := int64(strLen(s)); l < n {
				s = strings.Repeat(pad, int(n-l)) + s
			}
			return s, nil
		}},
		"replace": {min: 3, max: 3, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			old, err := argString(a, 1)
			if err != nil {
				return nil, err
			}
			nw, err := argString(a, 2)
			if err != nil {
				return nil, err
			}
			if old == "" {
				return nil, errorf("the string to replace must not be empty")
			}
			return strings.ReplaceAll(s, old, nw), nil
		}},
		"split": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			var seps []string
			switch d := a[1].(type) {
			case string:
				seps = []string{d}
			case []any:
				for _, e := range d {
					es, ok := e.(string)
					if !ok {
						return nil, errorf("the delimiters must be strings, found %s", typeName(e))
					}
					seps = append(seps, es)
				}
			default:
				return nil, errorf("argument 2 must be a String or an Array of strings, not %s", typeName(a[1]))
			}
			out := []any{}
			for _, p := range splitMulti(s, seps) {
				out = append(out, p)
			}
			return out, nil
		}},
		"string": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) { return stringOf(a[0]), nil }},
		"substring": {min: 1, max: 3, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			l := int64(strLen(s))
			start := int64(0)
			if len(a) > 1 {
				if start, err = argInt(a, 1); err != nil {
					return nil, err
				}
			}
			n := l - start
			if len(a) > 2 {
				if n, err = argInt(a, 2); err != nil {
					return nil, err
				}
			}
			if start < 0 || n < 0 || start > l || start+n > l {
				return nil, errorf("the index and length parameters must refer to a location within the string. The index parameter: '%d', the length parameter: '%d', the length of the string parameter: '%d'", start, n, l)
			}
			return utf16Slice(s, int(start), int(n)), nil
		}},
		"toLower": str1(func(s string) (any, error) { return strings.ToLower(s), nil }),
		"toUpper": str1(func(s string) (any, error) { return strings.ToUpper(s), nil }),
		"trim":    str1(func(s string) (any, error) { return strings.TrimFunc(s, unicode.IsSpace), nil }),
		"uri": {min: 2, max: 2, fn: func(_ *scope, _ string, a []any) (any, error) {
			base, rel, err := twoStrings(a)
			if err != nil {
				return nil, err
			}
			b, err := url.Parse(base)
			if err != nil || !b.IsAbs() {
				return nil, errorf("the base URI '%s' is not an absolute URI", base)
			}
			r, err := url.Parse(rel)
			if err != nil {
				return nil, errorf("the relative URI '%s' is not valid", rel)
			}
			return b.ResolveReference(r).String(), nil
		}},
		"uriComponent": str1(func(s string) (any, error) { return escapeDataString(s), nil }),
		"uriComponentToString": str1(func(s string) (any, error) {
			out, err := url.PathUnescape(s)
			if err != nil {
				return nil, errorf("the argument is not a valid URI component")
			}
			return out, nil
		}),
	}
}

func twoStrings(a []any) (string, string, error) {
	s, err := argString(a, 0)
	if err != nil {
		return "", "", err
	}
	t, err := argString(a, 1)
	return s, t, err
}

func allStrings(a []any) ([]string, error) {
	out := make([]string, len(a))
	for i, v := range a {
		s, ok := v.(string)
		if !ok {
			return nil, errorf("all arguments must be strings; argument %d is %s", i+1, typeName(v))
		}
		out[i] = s
	}
	return out, nil
}

// splitMulti splits on any of the separators, as .NET String.Split(string[]).
func splitMulti(s string, seps []string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); {
		matched := ""
		for _, sep := range seps {
			if sep != "" && strings.HasPrefix(s[i:], sep) && len(sep) > len(matched) {
				matched = sep
			}
		}
		if matched != "" {
			out = append(out, s[start:i])
			i += len(matched)
			start = i
			continue
		}
		i++
	}
	return append(out, s[start:])
}

// escapeDataString is .NET Uri.EscapeDataString: everything but the RFC 3986
// unreserved characters is percent-encoded.
func escapeDataString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func dataURIToString(s string) (any, error) {
	if !strings.HasPrefix(strings.ToLower(s), "data:") {
		return nil, errorf("the argument is not a data URI")
	}
	comma := strings.IndexByte(s, ',')
	if comma < 0 {
		return nil, errorf("the data URI has no ',' before its data")
	}
	meta, data := s[5:comma], s[comma+1:]
	if strings.HasSuffix(strings.ToLower(meta), ";base64") {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, errorf("the data URI's base64 data is not valid")
		}
		return string(b), nil
	}
	out, err := url.PathUnescape(data)
	if err != nil {
		return nil, errorf("the data URI's data is not validly escaped")
	}
	return out, nil
}

// dotnetFormat implements .NET composite formatting: {index[,alignment][:format]}
// with {{ and }} escapes, and the N, D, X, F, P, E and G numeric formats.
func dotnetFormat(f string, args []any) (string, error) {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch c {
		case '{':
			if i+1 < len(f) && f[i+1] == '{' {
				b.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				return "", errorf("the format string is not valid: an opening brace has no closing brace")
			}
			spec := f[i+1 : i+end]
			i += end
			idxPart, fmtPart, _ := strings.Cut(spec, ":")
			idxPart, alignPart, hasAlign := strings.Cut(idxPart, ",")
			idx, err := strconv.Atoi(strings.TrimSpace(idxPart))
			if err != nil || idx < 0 {
				return "", errorf("the format string is not valid: '{%s}' is not a valid placeholder", spec)
			}
			if idx >= len(args) {
				return "", errorf("the format string refers to argument %d but only %d were given", idx, len(args))
			}
			s, err := formatItem(args[idx], fmtPart)
			if err != nil {
				return "", err
			}
			if hasAlign {
				w, err := strconv.Atoi(strings.TrimSpace(alignPart))
				if err != nil {
					return "", errorf("the format string is not valid: bad alignment in '{%s}'", spec)
				}
				if pad := abs(w) - strLen(s); pad > 0 {
					if w > 0 {
						s = strings.Repeat(" ", pad) + s
					} else {
						s += strings.Repeat(" ", pad)
					}
				}
			}
			b.WriteString(s)
		case '}':
			if i+1 < len(f) && f[i+1] == '}' {
				i++
			}
			b.WriteByte('}')
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func formatItem(v any, spec string) (string, error) {
	if spec == "" {
		switch v.(type) {
		case map[string]any, []any:
			return compactJSON(v, '\''), nil
		}
		return stringOf(v), nil
	}
	f, isNum := asFloat(v)
	if !isNum {
		return stringOf(v), nil
	}
	kind := spec[0]
	prec := -1
	if len(spec) > 1 {
		p, err := strconv.Atoi(spec[1:])
		if err != nil {
			return "", errorf("the format specifier '%s' is not supported", spec)
		}
		prec = p
	}
	_, isInt := v.(int64)
	switch kind {
	case 'N', 'n':
		if prec < 0 {
			prec = 2
		}
		return groupThousands(strconv.FormatFloat(roundAway(f, prec), 'f', prec, 64)), nil
	case 'F', 'f':
		if prec < 0 {
			prec = 2
		}
		return strconv.FormatFloat(roundAway(f, prec), 'f', prec, 64), nil
	case 'D', 'd':
		if !isInt {
			return "", errorf("the format specifier '%s' needs an Integer", spec)
		}
		n := v.(int64)
		s := strconv.FormatInt(absInt(n), 10)
		if prec > len(s) {
			s = strings.Repeat("0", prec-len(s)) + s
		}
		if n < 0 {
			s = "-" + s
		}
		return s, nil
	case 'X', 'x':
		if !isInt {
			return "", errorf("the format specifier '%s' needs an Integer", spec)
		}
		s := strconv.FormatUint(uint64(v.(int64)), 16)
		if kind == 'X' {
			s = strings.ToUpper(s)
		}
		if prec > len(s) {
			s = strings.Repeat("0", prec-len(s)) + s
		}
		return s, nil
	case 'P', 'p':
		if prec < 0 {
			prec = 2
		}
		return groupThousands(strconv.FormatFloat(roundAway(f*100, prec), 'f', prec, 64)) + " %", nil
	case 'E', 'e':
		if prec < 0 {
			prec = 6
		}
		s := strconv.FormatFloat(f, 'e', prec, 64)
		mant, exp, _ := strings.Cut(s, "e")
		sign := exp[0]
		digits := exp[1:]
		for len(digits) < 3 {
			digits = "0" + digits
		}
		e := "e"
		if kind == 'E' {
			e = "E"
		}
		return mant + e + string(sign) + digits, nil
	case 'G', 'g':
		return stringOf(v), nil
	}
	return "", errorf("the format specifier '%s' is not supported", spec)
}

func absInt(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// roundAway rounds half away from zero at prec decimals, as .NET formatting does.
func roundAway(f float64, prec int) float64 {
	p := math.Pow(10, float64(prec))
	return math.Round(f*p) / p
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

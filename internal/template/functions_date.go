package template

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

func dateFunctions() map[string]builtin {
	return map[string]builtin{
		"utcNow": {min: 0, max: 1, fn: func(s *scope, _ string, a []any) (any, error) {
			if !s.allowDefaults {
				return nil, errorf("the template function 'utcNow' is not expected at this location: it can only be used in the default value of a parameter")
			}
			f := "yyyyMMddTHHmmssZ"
			if len(a) == 1 {
				var err error
				if f, err = argString(a, 0); err != nil {
					return nil, err
				}
			}
			return formatDotNetTime(s.st.now().UTC(), f)
		}},
		"dateTimeAdd": {min: 2, max: 3, fn: func(_ *scope, _ string, a []any) (any, error) {
			base, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			dur, err := argString(a, 1)
			if err != nil {
				return nil, err
			}
			t, err := parseDateTime(base)
			if err != nil {
				return nil, err
			}
			t, err = addISODuration(t, dur)
			if err != nil {
				return nil, err
			}
			f := "G"
			if len(a) == 3 {
				if f, err = argString(a, 2); err != nil {
					return nil, err
				}
			}
			return formatDotNetTime(t, f)
		}},
		"dateTimeFromEpoch": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			n, err := argInt(a, 0)
			if err != nil {
				return nil, err
			}
			return time.Unix(n, 0).UTC().Format("2006-01-02T15:04:05Z"), nil
		}},
		"dateTimeToEpoch": {min: 1, max: 1, fn: func(_ *scope, _ string, a []any) (any, error) {
			s, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			t, err := parseDateTime(s)
			if err != nil {
				return nil, err
			}
			return t.Unix(), nil
		}},
	}
}

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999Z07:00",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z",
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04Z07:00",
	"2006-01-02",
	"20060102T150405Z",
	"1/2/2006 3:04:05 PM",
	"1/2/2006 15:04:05",
	"1/2/2006",
}

// parseDateTime accepts the ISO 8601 and invariant-culture forms ARM parses;
// values without a zone are UTC.
func parseDateTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errorf("the string '%s' is not a valid date and time", s)
}

// addISODuration adds an ISO 8601 duration (P1Y2M3DT4H5M6S, P2W, -PT1H).
func addISODuration(t time.Time, d string) (time.Time, error) {
	bad := func() (time.Time, error) {
		return time.Time{}, errorf("the duration '%s' is not a valid ISO 8601 duration", d)
	}
	s := d
	sign := 1
	if strings.HasPrefix(s, "-") {
		sign = -1
		s = s[1:]
	}
	if !strings.HasPrefix(s, "P") || len(s) < 2 {
		return bad()
	}
	s = s[1:]
	inTime := false
	var years, months, days int
	var dur time.Duration
	seen := false
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return bad()
			}
			inTime = true
			s = s[1:]
			continue
		}
		j := 0
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		if j == 0 || j == len(s) {
			return bad()
		}
		num, unit := s[:j], s[j]
		s = s[j+1:]
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad()
		}
		n := int(f)
		seen = true
		switch {
		case !inTime && unit == 'Y':
			years += n
		case !inTime && unit == 'M':
			months += n
		case !inTime && unit == 'W':
			days += 7 * n
		case !inTime && unit == 'D':
			days += n
		case inTime && unit == 'H':
			dur += time.Duration(f * float64(time.Hour))
		case inTime && unit == 'M':
			dur += time.Duration(f * float64(time.Minute))
		case inTime && unit == 'S':
			dur += time.Duration(f * float64(time.Second))
		default:
			return bad()
		}
	}
	if !seen {
		return bad()
	}
	return t.AddDate(sign*years, sign*months, sign*days).Add(time.Duration(sign) * dur), nil
}

// standardFormats maps .NET standard date and time format strings to custom
// patterns (invariant/en-US culture, as ARM uses).
var standardFormats = map[string]string{
	"d": "M/d/yyyy",
	"D": "dddd, MMMM d, yyyy",
	"f": "dddd, MMMM d, yyyy h:mm tt",
	"F": "dddd, MMMM d, yyyy h:mm:ss tt",
	"g": "M/d/yyyy h:mm tt",
	"G": "M/d/yyyy h:mm:ss tt",
	"m": "MMMM d",
	"M": "MMMM d",
	"o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
	"O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
	"r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
	"R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
	"s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
	"t": "h:mm tt",
	"T": "h:mm:ss tt",
	"u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
	"y": "MMMM yyyy",
	"Y": "MMMM yyyy",
}

// formatDotNetTime formats t (UTC) with a .NET date and time format string.
func formatDotNetTime(t time.Time, f string) (string, error) {
	if f == "" {
		f = "G"
	}
	if p, ok := standardFormats[f]; ok {
		f = p
	} else if len(f) == 1 {
		return "", errorf("the date and time format '%s' is not valid", f)
	}
	var b strings.Builder
	run := func(i int) int {
		j := i
		for j < len(f) && f[j] == f[i] {
			j++
		}
		return j - i
	}
	for i := 0; i < len(f); {
		c := f[i]
		n := run(i)
		switch c {
		case 'y':
			switch {
			case n == 1:
				fmt.Fprintf(&b, "%d", t.Year()%100)
			case n == 2:
				fmt.Fprintf(&b, "%02d", t.Year()%100)
			default:
				fmt.Fprintf(&b, "%0*d", n, t.Year())
			}
		case 'M':
			switch n {
			case 1:
				fmt.Fprintf(&b, "%d", int(t.Month()))
			case 2:
				fmt.Fprintf(&b, "%02d", int(t.Month()))
			case 3:
				b.WriteString(t.Month().String()[:3])
			default:
				b.WriteString(t.Month().String())
			}
		case 'd':
			switch n {
			case 1:
				fmt.Fprintf(&b, "%d", t.Day())
			case 2:
				fmt.Fprintf(&b, "%02d", t.Day())
			case 3:
				b.WriteString(t.Weekday().String()[:3])
			default:
				b.WriteString(t.Weekday().String())
			}
		case 'H':
			fmt.Fprintf(&b, "%0*d", min(n, 2), t.Hour())
		case 'h':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%0*d", min(n, 2), h)
		case 'm':
			fmt.Fprintf(&b, "%0*d", min(n, 2), t.Minute())
		case 's':
			fmt.Fprintf(&b, "%0*d", min(n, 2), t.Second())
		case 'f', 'F':
			if n > 7 {
				return "", errorf("the date and time format '%s' is not valid", f)
			}
			frac := fmt.Sprintf("%09d", t.Nanosecond())[:n]
			if c == 'F' {
				frac = strings.TrimRight(frac, "0")
			}
			b.WriteString(frac)
		case 't':
			ampm := "AM"
			if t.Hour() >= 12 {
				ampm = "PM"
			}
			b.WriteString(ampm[:min(n, 2)])
		case 'K':
			b.WriteString("Z")
		case 'z':
			switch n {
			case 1:
				b.WriteString("+0")
			case 2:
				b.WriteString("+00")
			default:
				b.WriteString("+00:00")
			}
		case '\'', '"':
			end := strings.IndexByte(f[i+1:], c)
			if end < 0 {
				return "", errorf("the date and time format '%s' has an unterminated quote", f)
			}
			b.WriteString(f[i+1 : i+1+end])
			i += end + 2
			continue
		case '\\':
			if i+1 < len(f) {
				b.WriteByte(f[i+1])
			}
			i += 2
			continue
		case '%':
			i++
			continue
		default:
			b.WriteByte(c)
			i++
			continue
		}
		i += n
	}
	return b.String(), nil
}

package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// assignment is one --set PATH=VALUE.
type assignment struct {
	raw   string
	path  []pathElem
	value string
}

// pathElem is a map key or (index >= 0) a list index.
type pathElem struct {
	key   string
	index int
}

// topLevel are the keys of an ARM resource outside "properties"; any other
// first path element is taken to be under "properties" (like az accepts
// upgradePolicy.mode for properties.upgradePolicy.mode).
func isTopLevel(key string) bool {
	switch strings.ToLower(key) {
	case "id", "name", "type", "location", "tags", "sku", "plan", "identity", "zones",
		"extendedlocation", "etag", "properties", "systemdata", "managedby", "placement":
		return true
	}
	return false
}

func parseAssignment(s string) (assignment, error) {
	p, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(p) == "" {
		return assignment{}, usageErrorf("--set %q: PATH=VALUE expected", s)
	}
	path, err := parsePath(strings.TrimSpace(p))
	if err != nil {
		return assignment{}, usageErrorf("--set %q: %v", s, err)
	}
	if path[0].index >= 0 {
		return assignment{}, usageErrorf("--set %q: the path must start with a property name", s)
	}
	if !isTopLevel(path[0].key) {
		path = append([]pathElem{{key: "properties", index: -1}}, path...)
	}
	return assignment{raw: s, path: path, value: v}, nil
}

// parsePath splits a.b[0].c into elements.
func parsePath(p string) ([]pathElem, error) {
	var out []pathElem
	for _, part := range strings.Split(p, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key == "" && (len(out) == 0 || rest == "") {
			return nil, fmt.Errorf("empty path element in %q", p)
		}
		if key != "" {
			out = append(out, pathElem{key: key, index: -1})
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			n, err := strconv.Atoi(idx)
			if !ok || err != nil || n < 0 {
				return nil, fmt.Errorf("bad index in %q", p)
			}
			out = append(out, pathElem{index: n})
			if after == "" {
				break
			}
			if !strings.HasPrefix(after, "[") {
				return nil, fmt.Errorf("bad index in %q", p)
			}
			rest = after[1:]
		}
	}
	return out, nil
}

// applyAssignments sets the assignments on the JSON form of cur and decodes
// the result into next (both are the SDK's types, so the document is
// exactly what goes on the wire).
func applyAssignments(cur, next any, as []assignment) error {
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	for _, a := range as {
		if err := setPath(doc, a.path, a.value); err != nil {
			return usageErrorf("--set %q: %v", a.raw, err)
		}
	}
	if b, err = json.Marshal(doc); err != nil {
		return err
	}
	if err := json.Unmarshal(b, next); err != nil {
		return usageErrorf("--set: the result is not a valid scale set: %v", err)
	}
	return nil
}

// parseValue reads a --set value: JSON if it parses, else the string;
// a value replacing a string stays a string unless it is quoted JSON.
func parseValue(raw string, old any) any {
	if _, wasString := old.(string); wasString && !strings.HasPrefix(strings.TrimSpace(raw), `"`) {
		return raw
	}
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err == nil {
		return v
	}
	return raw
}

// setPath sets doc at path to the raw value, creating missing objects.
func setPath(doc map[string]any, path []pathElem, raw string) error {
	var cur any = doc
	for i, el := range path {
		last := i == len(path)-1
		if el.index >= 0 {
			list, ok := cur.([]any)
			if !ok {
				return fmt.Errorf("%s is not a list", describePath(path[:i]))
			}
			if el.index >= len(list) {
				return fmt.Errorf("index %d out of range for %s (length %d)", el.index, describePath(path[:i]), len(list))
			}
			if last {
				list[el.index] = parseValue(raw, list[el.index])
				return nil
			}
			cur = list[el.index]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", describePath(path[:i]))
		}
		key := el.key
		for k := range m {
			if strings.EqualFold(k, el.key) {
				key = k
				break
			}
		}
		if last {
			m[key] = parseValue(raw, m[key])
			return nil
		}
		next, exists := m[key]
		if !exists || next == nil {
			if path[i+1].index >= 0 {
				return fmt.Errorf("%s does not exist", describePath(path[:i+1]))
			}
			next = map[string]any{}
			m[key] = next
		}
		cur = next
	}
	return nil
}

func describePath(path []pathElem) string {
	var sb strings.Builder
	for i, el := range path {
		if el.index >= 0 {
			fmt.Fprintf(&sb, "[%d]", el.index)
			continue
		}
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(el.key)
	}
	if sb.Len() == 0 {
		return "the document"
	}
	return sb.String()
}

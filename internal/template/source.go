package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// positions maps JSON paths ("resources[0].properties.name") to byte offsets
// of the values in the source.
type positions map[string]int

// childPath appends an object key or array index to a JSON path.
func childPath(path string, key any) string {
	switch k := key.(type) {
	case int:
		return path + "[" + strconv.Itoa(k) + "]"
	case string:
		simple := k != ""
		for i := 0; i < len(k); i++ {
			if !isIdentPart(k[i]) {
				simple = false
				break
			}
		}
		if !simple {
			return path + "['" + strings.ReplaceAll(k, "'", "''") + "']"
		}
		if path == "" {
			return k
		}
		return path + "." + k
	}
	return path
}

// stripComments blanks // and /* */ comments outside strings (ARM accepts
// them), keeping every offset and newline in place.
func stripComments(src []byte) []byte {
	out := bytes.Clone(src)
	inStr := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for i < len(out) && out[i] != '\n' {
				out[i] = ' '
				i++
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			out[i], out[i+1] = ' ', ' '
			i += 2
			for i < len(out) && !(out[i] == '*' && i+1 < len(out) && out[i+1] == '/') {
				if out[i] != '\n' {
					out[i] = ' '
				}
				i++
			}
			if i < len(out) {
				out[i], out[i+1] = ' ', ' '
				i++
			}
		}
	}
	return out
}

// decodeWithPositions parses src and records where every value starts.
func decodeWithPositions(src []byte) (any, positions, error) {
	data := stripComments(src)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	pos := positions{}
	var parse func(path string, depth int) (any, error)
	parse = func(path string, depth int) (any, error) {
		if depth > 512 {
			return nil, &json.SyntaxError{Offset: dec.InputOffset()}
		}
		pos[path] = skipSeparators(data, int(dec.InputOffset()))
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				m := map[string]any{}
				for dec.More() {
					kt, err := dec.Token()
					if err != nil {
						return nil, err
					}
					k, ok := kt.(string)
					if !ok {
						return nil, fmt.Errorf("an object key must be a string")
					}
					v, err := parse(childPath(path, k), depth+1)
					if err != nil {
						return nil, err
					}
					m[k] = v
				}
				if _, err := dec.Token(); err != nil {
					return nil, err
				}
				return m, nil
			case '[':
				arr := []any{}
				for i := 0; dec.More(); i++ {
					v, err := parse(childPath(path, i), depth+1)
					if err != nil {
						return nil, err
					}
					arr = append(arr, v)
				}
				if _, err := dec.Token(); err != nil {
					return nil, err
				}
				return arr, nil
			}
			return nil, fmt.Errorf("unexpected '%s'", t)
		case json.Number:
			return numberValue(t), nil
		default:
			return t, nil
		}
	}
	v, err := parse("", 0)
	if err != nil {
		return nil, nil, syntaxError(data, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		off := int(dec.InputOffset())
		line, col := lineCol(data, off)
		return nil, nil, &Error{Code: CodeInvalidTemplate, Line: line, Column: col,
			Message: "the template is not valid JSON: unexpected data after the end of the document"}
	}
	return v, pos, nil
}

func syntaxError(data []byte, dec *json.Decoder, err error) error {
	off := int(dec.InputOffset())
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = int(se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		off = len(data)
	}
	line, col := lineCol(data, off)
	return &Error{Code: CodeInvalidTemplate, Line: line, Column: col,
		Message: fmt.Sprintf("the template is not valid JSON: %v", err), Err: err}
}

func skipSeparators(data []byte, off int) int {
	for off < len(data) {
		switch data[off] {
		case ' ', '\t', '\n', '\r', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

// lineCol converts a byte offset to a 1-based line and column.
func lineCol(data []byte, off int) (int, int) {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

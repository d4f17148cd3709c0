package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// table is the table/tsv rendering of a result.
type table struct {
	header []string
	rows   [][]string
}

// print writes v in the chosen output format: json marshals v (SDK objects
// marshal as on the wire); table and tsv use tbl.
func (r *rootOptions) print(v any, tbl func() table) error {
	w := r.streams.Out
	switch r.output {
	case "none":
		return nil
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "tsv":
		t := tbl()
		for _, row := range t.rows {
			if _, err := fmt.Fprintln(w, strings.Join(cells(row), "\t")); err != nil {
				return err
			}
		}
		return nil
	default:
		return writeTable(w, tbl())
	}
}

func writeTable(w io.Writer, t table) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	dashes := make([]string, len(t.header))
	for i, h := range t.header {
		dashes[i] = strings.Repeat("-", max(len(h), 1))
	}
	fmt.Fprintln(tw, strings.Join(dashes, "\t"))
	for _, row := range t.rows {
		fmt.Fprintln(tw, strings.Join(cells(row), "\t"))
	}
	return tw.Flush()
}

// cells makes values safe for tab-separated output.
func cells(row []string) []string {
	out := make([]string, len(row))
	for i, c := range row {
		out[i] = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, c)
	}
	return out
}

// str dereferences a string pointer of any string type.
func str[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// num formats an integer pointer ("" for nil).
func num[T ~int32 | ~int64](p *T) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}

// boolean formats a bool pointer ("" for nil).
func boolean(p *bool) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}

func ptr[T any](v T) *T { return &v }

// strPtrs converts strings to the SDK's []*string.
func strPtrs(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

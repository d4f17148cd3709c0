package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	jmespath "github.com/jmespath-community/go-jmespath"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
)

// Output follows the Azure CLI's conventions: a command's result is turned
// into plain JSON data, --query (JMESPath) is applied to it, and the result
// is rendered in the -o format: json (az's default: indented, keys sorted),
// jsonc (json coloured like az when stdout is a terminal), yaml, tsv, table
// or none. Without --query, table uses the command's own columns (az's table
// transformers); with --query, table and tsv render the query's result
// generically, as az does.

// outputFormats are the -o choices.
var outputFormats = []string{"json", "jsonc", "table", "tsv", "yaml", "none"}

// defaultOutput is az's default output format.
const defaultOutput = "json"

// outputEnv are the environment variables that set the default output
// format, the first set one wins: vmssctl's own, then az's.
var outputEnv = []string{"VMSSCTL_OUTPUT", "AZURE_CORE_OUTPUT"}

// outputOptions are the global output flags (-o, --query) and what they
// resolve to.
type outputOptions struct {
	output    string // -o; resolved by resolveOutput
	queryText string // --query
	query     *query // compiled --query, nil without one
}

func (r *rootOptions) addOutputFlags(f *pflag.FlagSet) {
	f.StringVarP(&r.output, "output", "o", "", "output format: "+strings.Join(outputFormats, ", ")+
		` (default json, or $VMSSCTL_OUTPUT, $AZURE_CORE_OUTPUT, the config file's "output")`)
	f.StringVar(&r.queryText, "query", "", "JMESPath query applied to the result before it is printed, e.g. \"[].instanceId\" (https://jmespath.org)")
}

// resolveOutput picks the output format (the flag, else the environment,
// else the config file, else json) and compiles --query.
func (r *rootOptions) resolveOutput() error {
	format, from := r.output, "argument --output/-o"
	for _, k := range outputEnv {
		if v := r.getenv(k); format == "" && v != "" {
			format, from = v, "$"+k
		}
	}
	if format == "" {
		format, from = r.configuredOutput()
	}
	if format == "" {
		format = defaultOutput
	}
	format = strings.ToLower(strings.TrimSpace(format))
	if !slices.Contains(outputFormats, format) {
		return usageErrorf("%s: invalid choice: %q (choose from '%s')", from, format, strings.Join(outputFormats, "', '"))
	}
	r.output = format
	if r.queryText != "" {
		q, err := compileQuery(r.queryText)
		if err != nil {
			return &usageError{msg: "argument --query: " + err.Error()}
		}
		r.query = q
	}
	return nil
}

// configuredOutput is the config file's default output format and where it
// came from. An unreadable file is not reported here: the command reports
// it when it connects.
func (r *rootOptions) configuredOutput() (string, string) {
	path, _ := r.configFile()
	b, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	var cfg clientConfig
	if json.Unmarshal(b, &cfg) != nil {
		return "", ""
	}
	return cfg.Output, fmt.Sprintf("config %s: output", path)
}

// table is the command's own table rendering of a result (az's table
// transformer).
type table struct {
	header []string
	rows   [][]string
}

// print writes v, a command's result, in the chosen output format. v is
// encoded as JSON first (SDK objects as on the wire); --query applies to
// that; tbl is the command's table, used for -o table without --query.
func (r *rootOptions) print(v any, tbl func() table) error {
	w := r.streams.Out
	if r.output == "none" {
		return nil
	}
	if r.output == "table" && r.query == nil {
		return writeTable(w, tbl())
	}
	data, err := toData(v)
	if err != nil {
		return err
	}
	order := keyOrder(nil)
	if r.query != nil {
		if data, err = r.query.expr.Search(data); err != nil {
			return fmt.Errorf("--query %q: %w", r.query.text, err)
		}
		order = r.query.keyOrders
	}
	switch r.output {
	case "json", "jsonc":
		b, err := marshalJSON(data)
		if err != nil {
			return err
		}
		if r.output == "jsonc" && r.colorOK() {
			b = colorJSON(b)
		}
		_, err = w.Write(b)
		return err
	case "yaml":
		// az's yaml: block style, two-space indents, keys sorted.
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(integral(data)); err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		return enc.Close()
	case "tsv":
		return writeTSV(w, data, order)
	default: // table of a query's result
		t, err := autoTable(data, order)
		if err != nil {
			return err
		}
		if len(t.header) == 0 {
			return nil
		}
		return writeTable(w, t)
	}
}

// toData converts v to plain JSON data (maps, slices, float64, string,
// bool, nil): what JMESPath and the generic formats work on.
func toData(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	var data any
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return data, nil
}

// integral turns whole numbers back into integers, so that yaml writes
// 1000000 and not 1e+06.
func integral(data any) any {
	switch x := data.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	case map[string]any:
		for k, v := range x {
			x[k] = integral(v)
		}
	case []any:
		for i, v := range x {
			x[i] = integral(v)
		}
	}
	return data
}

// marshalJSON is az's JSON: indented by two spaces, keys sorted, no HTML
// escaping, a final newline.
func marshalJSON(data any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(data); err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return buf.Bytes(), nil
}

// query is a compiled --query.
type query struct {
	text string
	expr jmespath.JMESPath
	// keyOrders are the key lists of the query's multi-select hashes
	// ({a: x, b: y}), in the order written: table and tsv columns follow
	// them as az's do.
	keyOrders keyOrder
}

func compileQuery(text string) (*query, error) {
	ast, err := parsing.NewParser().Parse(text)
	if err != nil {
		var se parsing.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JMESPath query: %s\n%s", se.Error(), se.HighlightLocation())
		}
		return nil, fmt.Errorf("invalid JMESPath query %q: %w", text, err)
	}
	expr, err := jmespath.Compile(text)
	if err != nil {
		return nil, fmt.Errorf("invalid JMESPath query %q: %w", text, err)
	}
	q := &query{text: text, expr: expr}
	var walk func(n parsing.ASTNode)
	walk = func(n parsing.ASTNode) {
		if n.NodeType == parsing.ASTMultiSelectHash {
			var keys []string
			for _, kv := range n.Children {
				if k, ok := kv.Value.(string); ok {
					keys = append(keys, k)
				}
			}
			q.keyOrders = append(q.keyOrders, keys)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(ast)
	return q, nil
}

// keyOrder orders an object's keys: as a multi-select hash of the query
// wrote them when one has exactly these keys, else sorted.
type keyOrder [][]string

func (o keyOrder) keys(m map[string]any) []string {
	for _, ks := range o {
		if len(ks) == len(m) && !slices.ContainsFunc(ks, func(k string) bool { _, ok := m[k]; return !ok }) {
			return ks
		}
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// writeTSV writes data as az's tsv: a list is one row per element, anything
// else one row; an object's row is its values (nested objects empty, lists
// their length), a list's row its elements.
func writeTSV(w io.Writer, data any, order keyOrder) error {
	items, ok := data.([]any)
	if !ok {
		items = []any{data}
	}
	for _, item := range items {
		var row []string
		switch x := item.(type) {
		case map[string]any:
			for _, k := range order.keys(x) {
				row = append(row, tsvCell(x[k]))
			}
		case []any:
			for _, v := range x {
				row = append(row, tsvCell(v))
			}
		default:
			row = []string{tsvCell(x)}
		}
		if _, err := fmt.Fprintln(w, strings.Join(cells(row), "\t")); err != nil {
			return err
		}
	}
	return nil
}

func tsvCell(v any) string {
	switch x := v.(type) {
	case []any:
		return strconv.Itoa(len(x))
	case map[string]any:
		return ""
	}
	return scalar(v)
}

// scalar formats a JSON scalar: strings as they are, numbers without
// exponent, booleans as true/false, null as "".
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// autoTable is az's table of a query's result: one row per list element;
// an object's scalar values under its capitalised keys (except id, type
// and etag), a list's elements as Column1.., a scalar as Result.
func autoTable(data any, order keyOrder) (table, error) {
	items, ok := data.([]any)
	if !ok {
		items = []any{data}
	}
	var t table
	col := map[string]int{}
	var rows []map[string]string
	for _, item := range items {
		row := map[string]string{}
		add := func(name string, v any) {
			if _, ok := col[name]; !ok {
				col[name] = len(t.header)
				t.header = append(t.header, name)
			}
			row[name] = scalar(v)
		}
		switch x := item.(type) {
		case map[string]any:
			for _, k := range order.keys(x) {
				switch v := x[k]; v.(type) {
				case nil, map[string]any, []any:
				default:
					if k != "id" && k != "type" && k != "etag" {
						add(strings.ToUpper(k[:1])+k[1:], v)
					}
				}
			}
		case []any:
			for i, v := range x {
				add(fmt.Sprintf("Column%d", i+1), v)
			}
		default:
			add("Result", x)
		}
		rows = append(rows, row)
	}
	if len(t.header) == 0 && len(items) > 0 && items[0] != nil {
		return t, errors.New("table output unavailable: the result has no scalar fields; use --query to select some, or another --output")
	}
	for _, row := range rows {
		r := make([]string, len(t.header))
		for name, v := range row {
			r[col[name]] = v
		}
		t.rows = append(t.rows, r)
	}
	return t, nil
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

// colorOK tells whether jsonc may colour: stdout is a terminal and colour is
// not turned off ($NO_COLOR, or az's $AZURE_CORE_NO_COLOR).
func (r *rootOptions) colorOK() bool {
	if r.getenv("NO_COLOR") != "" {
		return false
	}
	if b, err := strconv.ParseBool(r.getenv("AZURE_CORE_NO_COLOR")); err == nil && b {
		return false
	}
	f, ok := r.streams.Out.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI colours of az's jsonc (pygments' terminal formatter): keys bright
// blue, strings yellow, numbers and true/false/null blue.
const (
	colorKey     = "\x1b[94m"
	colorString  = "\x1b[33m"
	colorNumber  = "\x1b[34m"
	colorLiteral = "\x1b[34m"
	colorReset   = "\x1b[39;49;00m"
)

// colorJSON colours valid JSON text for a terminal.
func colorJSON(b []byte) []byte {
	var out bytes.Buffer
	paint := func(color string, tok []byte) {
		out.WriteString(color)
		out.Write(tok)
		out.WriteString(colorReset)
	}
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(b))
			k := j
			for k < len(b) && (b[k] == ' ' || b[k] == '\n' || b[k] == '\t' || b[k] == '\r') {
				k++
			}
			if k < len(b) && b[k] == ':' {
				paint(colorKey, b[i:j])
			} else {
				paint(colorString, b[i:j])
			}
			i = j
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(b) && strings.IndexByte("0123456789.eE+-", b[j]) >= 0 {
				j++
			}
			paint(colorNumber, b[i:j])
			i = j
		case c >= 'a' && c <= 'z':
			j := i + 1
			for j < len(b) && b[j] >= 'a' && b[j] <= 'z' {
				j++
			}
			paint(colorLiteral, b[i:j])
			i = j
		default:
			out.WriteByte(c)
			i++
		}
	}
	return out.Bytes()
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

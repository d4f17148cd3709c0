package template

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseExpression(t *testing.T) {
	for _, tc := range []struct {
		src, want string // want: the parsed tree rendered back, or "" with err
		err       string
	}{
		{src: "concat('a', 'b')", want: "concat('a', 'b')"},
		{src: "  parameters( 'x' ) . y [ 0 ] ", want: "parameters('x').y[0]"},
		{src: "'it''s'", want: "'it''s'"},
		{src: "add(-1, +2)", want: "add(-1, 2)"},
		{src: "json('1.5')", want: "json('1.5')"},
		{src: "float(1.25)", want: "float(1.25)"},
		{src: "contoso.uniqueName('x')", want: "contoso.uniqueName('x')"},
		{src: "a().b.c(1)", err: "unexpected token"},
		{src: "f()['k'][0].p", want: "f()['k'][0].p"},
		{src: "f(g(h(1)))", want: "f(g(h(1)))"},
		{src: "", err: "empty"},
		{src: "f(", err: "ends unexpectedly"},
		{src: "f(1,)", err: "a function call, string or number is expected"},
		{src: "f(1 2)", err: "',' or ')' is expected"},
		{src: "f() g()", err: "unexpected token"},
		{src: "'open", err: "not terminated"},
		{src: "x", err: "'(' is expected"},
		{src: "f().", err: "property name is expected"},
		{src: "f()[1", err: "']' is expected"},
		{src: "f(#)", err: "unexpected character"},
		{src: "99999999999999999999", err: "out of range"},
		{src: strings.Repeat("f(", 300) + strings.Repeat(")", 300), err: "nested too deeply"},
	} {
		n, err := ParseExpression(tc.src)
		if tc.err != "" {
			var se *SyntaxError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &se) {
				t.Errorf("ParseExpression(%q) = %v, %v; want a SyntaxError containing %q", tc.src, n, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseExpression(%q): %v", tc.src, err)
			continue
		}
		if got := nodeString(n); got != tc.want {
			t.Errorf("ParseExpression(%q) = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestSplitExpression(t *testing.T) {
	for _, tc := range []struct {
		in, inner, lit string
		expr           bool
	}{
		{"[f()]", "f()", "", true},
		{"[[f()]", "", "[f()]", false},
		{"[f()] ", "", "[f()] ", false},
		{"text", "", "text", false},
		{"[", "", "[", false},
		{"[]", "", "", true},
	} {
		inner, lit, isExpr := splitExpression(tc.in)
		if inner != tc.inner || lit != tc.lit || isExpr != tc.expr {
			t.Errorf("splitExpression(%q) = %q, %q, %v", tc.in, inner, lit, isExpr)
		}
	}
}

// FuzzParseExpression: the parser never panics, anything it accepts renders
// back to text that parses to the same tree, and evaluation of accepted
// expressions never panics. The seeds run in every normal `go test`.
func FuzzParseExpression(f *testing.F) {
	for _, seed := range []string{
		"concat('a', 'b')",
		"parameters('p').x[0]",
		"'it''s'",
		"add(-1, 2)",
		"if(equals(1, 1), 'a', 'b')",
		"resourceId('Microsoft.Network/virtualNetworks', 'v')",
		"uniqueString(resourceGroup().id)",
		"createObject('a', createArray(1, 2))['a'][1]",
		"contoso.fn('x')",
		"map(range(0, 3), lambda('i', mul(lambdaVariables('i'), 2)))",
		"format('{0:N2}', 1234.5)",
		"f(",
		"''''",
		"1.5",
		"[",
		"a.b.c",
		"f()[g()[h()]]",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		n, err := ParseExpression(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("ParseExpression(%q) returned %T, not a *SyntaxError", src, err)
			}
			if se.Offset < 0 || se.Offset > len(src) {
				t.Fatalf("ParseExpression(%q): offset %d out of range", src, se.Offset)
			}
			return
		}
		text := nodeString(n)
		n2, err := ParseExpression(text)
		if err != nil {
			t.Fatalf("rendering of %q is %q, which does not parse: %v", src, text, err)
		}
		if again := nodeString(n2); again != text {
			t.Fatalf("round trip of %q: %q then %q", src, text, again)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = EvaluateString(ctx, testEnv(), "["+src+"]")
	})
}

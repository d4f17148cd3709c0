package template

import (
	"fmt"
	"strconv"
	"strings"
)

// The expression language: a JSON string value that starts with '[' and ends
// with ']' is an expression; one that starts with "[[" is a literal whose
// first bracket is dropped. Inside: function calls (optionally namespaced,
// ns.fn(...)), string literals in single quotes with '' for a quote, integer
// (and decimal) numbers, property access .name and indexing [expr].

// Node is a parsed expression.
type Node interface{ pos() int }

type strLit struct {
	at int
	v  string
}

type numLit struct {
	at int
	v  any // int64 or float64
}

type callNode struct {
	at        int
	namespace string
	name      string
	args      []Node
}

type propNode struct {
	at   int
	x    Node
	name string
}

type indexNode struct {
	at  int
	x   Node
	idx Node
}

func (n *strLit) pos() int    { return n.at }
func (n *numLit) pos() int    { return n.at }
func (n *callNode) pos() int  { return n.at }
func (n *propNode) pos() int  { return n.at }
func (n *indexNode) pos() int { return n.at }

// SyntaxError is a malformed expression; Offset is the character position
// within the expression text (after the opening bracket).
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("the language expression is not valid at position %d: %s", e.Offset, e.Msg)
}

// splitExpression reports whether s is a template expression and returns its
// inner text, or the literal string value (with "[[" unescaped).
func splitExpression(s string) (inner string, literal string, isExpr bool) {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if s[1] == '[' {
			return "", s[1:], false
		}
		return s[1 : len(s)-1], "", true
	}
	return "", s, false
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tLParen
	tRParen
	tComma
	tDot
	tLBrack
	tRBrack
)

type token struct {
	kind tokKind
	at   int
	text string
	num  any
}

// punctTokens maps the one-character tokens to their kinds (tEOF: none).
var punctTokens = [256]tokKind{'(': tLParen, ')': tRParen, ',': tComma, '.': tDot, '[': tLBrack, ']': tRBrack}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case punctTokens[c] != tEOF:
			toks = append(toks, token{kind: punctTokens[c], at: i})
			i++
		case c == '\'':
			start := i
			i++
			var b strings.Builder
			closed := false
			for i < len(src) {
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(src[i])
				i++
			}
			if !closed {
				return nil, &SyntaxError{Offset: start, Msg: "the string literal is not terminated"}
			}
			toks = append(toks, token{kind: tString, at: start, text: b.String()})
		case c == '-' || c == '+' || (c >= '0' && c <= '9'):
			start := i
			if c == '-' || c == '+' {
				i++
			}
			digits := 0
			for i < len(src) && src[i] >= '0' && src[i] <= '9' {
				i++
				digits++
			}
			isFloat := false
			if i < len(src) && src[i] == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9' {
				isFloat = true
				i++
				for i < len(src) && src[i] >= '0' && src[i] <= '9' {
					i++
				}
			}
			if digits == 0 {
				return nil, &SyntaxError{Offset: start, Msg: fmt.Sprintf("unexpected character '%c'", c)}
			}
			text := src[start:i]
			var num any
			if isFloat {
				f, err := strconv.ParseFloat(text, 64)
				if err != nil {
					return nil, &SyntaxError{Offset: start, Msg: "the number is not valid"}
				}
				num = f
			} else {
				n, err := strconv.ParseInt(text, 10, 64)
				if err != nil {
					return nil, &SyntaxError{Offset: start, Msg: "the integer is out of range"}
				}
				num = n
			}
			toks = append(toks, token{kind: tNumber, at: start, text: text, num: num})
		case isIdentStart(c):
			start := i
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, at: start, text: src[start:i]})
		default:
			return nil, &SyntaxError{Offset: i, Msg: fmt.Sprintf("unexpected character '%c'", c)}
		}
	}
	toks = append(toks, token{kind: tEOF, at: len(src)})
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 200

type parser struct {
	toks  []token
	i     int
	depth int
}

// ParseExpression parses the text inside an expression's brackets.
func ParseExpression(src string) (Node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEOF {
		return nil, &SyntaxError{Offset: 0, Msg: "the expression is empty"}
	}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &SyntaxError{Offset: t.at, Msg: "unexpected token after the end of the expression"}
	}
	return n, nil
}

func (p *parser) peek() token  { return p.toks[p.i] }
func (p *parser) peek2() token { return p.toks[min(p.i+1, len(p.toks)-1)] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

func (p *parser) expr() (Node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, &SyntaxError{Offset: p.peek().at, Msg: "the expression is nested too deeply"}
	}
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch t := p.peek(); t.kind {
		case tDot:
			p.next()
			id := p.next()
			if id.kind != tIdent {
				return nil, &SyntaxError{Offset: id.at, Msg: "a property name is expected after '.'"}
			}
			n = &propNode{at: t.at, x: n, name: id.text}
		case tLBrack:
			p.next()
			idx, err := p.expr()
			if err != nil {
				return nil, err
			}
			if c := p.next(); c.kind != tRBrack {
				return nil, &SyntaxError{Offset: c.at, Msg: "']' is expected"}
			}
			n = &indexNode{at: t.at, x: n, idx: idx}
		default:
			return n, nil
		}
	}
}

func (p *parser) primary() (Node, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return &strLit{at: t.at, v: t.text}, nil
	case tNumber:
		return &numLit{at: t.at, v: t.num}, nil
	case tIdent:
		call := &callNode{at: t.at, name: t.text}
		if p.peek().kind == tDot && p.peek2().kind == tIdent && p.toks[min(p.i+2, len(p.toks)-1)].kind == tLParen {
			p.next()
			call.namespace = t.text
			call.name = p.next().text
		}
		if l := p.next(); l.kind != tLParen {
			return nil, &SyntaxError{Offset: l.at, Msg: fmt.Sprintf("'(' is expected after the function name '%s'", t.text)}
		}
		if p.peek().kind == tRParen {
			p.next()
			return call, nil
		}
		for {
			arg, err := p.expr()
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, arg)
			switch c := p.next(); c.kind {
			case tComma:
				continue
			case tRParen:
				return call, nil
			default:
				return nil, &SyntaxError{Offset: c.at, Msg: "',' or ')' is expected"}
			}
		}
	case tEOF:
		return nil, &SyntaxError{Offset: t.at, Msg: "the expression ends unexpectedly"}
	}
	return nil, &SyntaxError{Offset: t.at, Msg: "a function call, string or number is expected"}
}

// walk visits every node of an expression.
func walk(n Node, f func(Node)) {
	f(n)
	switch x := n.(type) {
	case *callNode:
		for _, a := range x.args {
			walk(a, f)
		}
	case *propNode:
		walk(x.x, f)
	case *indexNode:
		walk(x.x, f)
		walk(x.idx, f)
	}
}

// String renders a node back to expression text (used in messages and tests).
func nodeString(n Node) string {
	switch x := n.(type) {
	case *strLit:
		return "'" + strings.ReplaceAll(x.v, "'", "''") + "'"
	case *numLit:
		switch v := x.v.(type) {
		case int64:
			return strconv.FormatInt(v, 10)
		case float64:
			if s := floatString(v); strings.ContainsAny(s, ".eEIN") {
				return s
			} else {
				return s + ".0"
			}
		}
	case *callNode:
		var b strings.Builder
		if x.namespace != "" {
			b.WriteString(x.namespace + ".")
		}
		b.WriteString(x.name + "(")
		for i, a := range x.args {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(nodeString(a))
		}
		b.WriteString(")")
		return b.String()
	case *propNode:
		return nodeString(x.x) + "." + x.name
	case *indexNode:
		return nodeString(x.x) + "[" + nodeString(x.idx) + "]"
	}
	return ""
}

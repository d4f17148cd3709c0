package template

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Parameters, user-defined functions and variables.

func (st *state) loadParameters(input map[string]any) error {
	decls, key := st.tmpl.section("parameters")
	st.params = map[string]*paramState{}
	for name, d := range decls {
		path := childPath(key, name)
		decl, ok := d.(map[string]any)
		if !ok {
			return st.tmpl.errAt(path, "the template parameter '%s' must be an object with a 'type'", name)
		}
		tv, ok := lookupKey(decl, "type")
		ts, isStr := tv.(string)
		if !ok || !isStr {
			return st.tmpl.errAt(path, "the template parameter '%s' has no 'type'", name)
		}
		typ := strings.ToLower(ts)
		switch typ {
		case "string", "securestring", "int", "bool", "object", "secureobject", "array":
		default:
			return st.tmpl.errAt(childPath(path, "type"), "the template parameter '%s' has the type '%s', which is not one of 'string', 'securestring', 'int', 'bool', 'object', 'secureObject', 'array'", name, ts)
		}
		if _, dup := st.params[strings.ToLower(name)]; dup {
			return st.tmpl.errAt(path, "the template parameter '%s' is defined more than once", name)
		}
		st.params[strings.ToLower(name)] = &paramState{name: name, path: path, decl: decl, typ: typ}
	}
	var unknown []string
	for k, v := range input {
		p, ok := st.params[strings.ToLower(k)]
		if !ok {
			unknown = append(unknown, k)
			continue
		}
		p.input, p.hasInput = Normalize(v), true
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var declared []string
		for _, p := range st.params {
			declared = append(declared, p.name)
		}
		sort.Strings(declared)
		return &Error{Code: CodeInvalidTemplate, Path: "parameters",
			Message: fmt.Sprintf("the template parameters '%s' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are '%s'",
				strings.Join(unknown, ", "), strings.Join(declared, ", "))}
	}
	return nil
}

func (st *state) sortedParams() []*paramState {
	out := make([]*paramState, 0, len(st.params))
	for _, p := range st.params {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return st.before(out[i].path, out[j].path) })
	return out
}

// before orders paths by source position, then by name.
func (st *state) before(a, b string) bool {
	if st.tmpl.pos != nil {
		pa, oka := st.tmpl.pos[a]
		pb, okb := st.tmpl.pos[b]
		if oka && okb && pa != pb {
			return pa < pb
		}
	}
	return a < b
}

// parameter returns a parameter's checked value, evaluating its default on
// first use (defaults may refer to other parameters).
func (st *state) parameter(ctx context.Context, name string) (any, error) {
	p, ok := st.params[strings.ToLower(name)]
	if !ok {
		return nil, errorf("the template parameter '%s' is not found", name)
	}
	if p.done {
		return p.value, nil
	}
	if p.busy {
		return nil, errorf("the template parameter '%s' refers to itself through its default value", name)
	}
	p.busy = true
	defer func() { p.busy = false }()
	v, err := st.evalParameter(ctx, p)
	if err != nil {
		return nil, err
	}
	p.value, p.done = v, true
	return v, nil
}

func (st *state) evalParameter(ctx context.Context, p *paramState) (any, error) {
	sc := st.rootScope(ctx)
	sc.noResource = true
	var v any
	fromInput := p.hasInput
	if fromInput {
		v = p.input
	} else {
		def, ok := lookupKey(p.decl, "defaultValue")
		if !ok {
			return nil, &Error{Code: CodeInvalidTemplate, Path: p.path, Message: fmt.Sprintf("the value for the template parameter '%s' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details", p.name),
				Line: lineOr(st.tmpl, p.path), Column: colOr(st.tmpl, p.path)}
		}
		dk, _ := realKey(p.decl, "defaultValue")
		dsc := *sc
		dsc.allowDefaults = true
		ev, err := dsc.evalValue(def)
		if err != nil {
			return nil, st.tmpl.wrap(childPath(p.path, dk), err)
		}
		v = ev
	}
	invalid := func(format string, a ...any) error {
		line, col := st.tmpl.lineOf(p.path)
		code := CodeInvalidTemplate
		if fromInput {
			code = CodeInvalidTemplateDeployment
		}
		return &Error{Code: code, Path: p.path, Line: line, Column: col,
			Message: fmt.Sprintf("the provided value for the template parameter '%s' is not valid. ", p.name) + fmt.Sprintf(format, a...)}
	}
	cv, err := coerceParam(p.typ, v)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if av, ok := lookupKey(p.decl, "allowedValues"); ok {
		allowed, ok := av.([]any)
		if !ok {
			return nil, st.tmpl.errAt(childPath(p.path, "allowedValues"), "the allowed values of the template parameter '%s' must be an array", p.name)
		}
		check := []any{cv}
		if arr, isArr := cv.([]any); isArr {
			check = arr
		}
		for _, e := range check {
			if !allowedContains(allowed, e) {
				var names []string
				for _, a := range allowed {
					names = append(names, stringOf(a))
				}
				return nil, invalid("The value '%s' is not part of the allowed value(s): '%s'", stringOf(e), strings.Join(names, ","))
			}
		}
	}
	if n, ok := cv.(int64); ok {
		if lo, ok := declInt(p.decl, "minValue"); ok && n < lo {
			return nil, invalid("The value must be greater than or equal to '%d'", lo)
		}
		if hi, ok := declInt(p.decl, "maxValue"); ok && n > hi {
			return nil, invalid("The value must be less than or equal to '%d'", hi)
		}
	}
	length := -1
	switch x := cv.(type) {
	case string:
		length = strLen(x)
	case []any:
		length = len(x)
	}
	if length >= 0 {
		if lo, ok := declInt(p.decl, "minLength"); ok && int64(length) < lo {
			return nil, invalid("Length of the value should be greater than or equal to '%d'", lo)
		}
		if hi, ok := declInt(p.decl, "maxLength"); ok && int64(length) > hi {
			return nil, invalid("Length of the value should be less than or equal to '%d'", hi)
		}
	}
	return cv, nil
}

func lineOr(t *Template, path string) int { l, _ := t.lineOf(path); return l }
func colOr(t *Template, path string) int  { _, c := t.lineOf(path); return c }

func declInt(decl map[string]any, key string) (int64, bool) {
	v, ok := lookupKey(decl, key)
	if !ok {
		return 0, false
	}
	n, err := toInt(v)
	return n, err == nil
}

func allowedContains(allowed []any, v any) bool {
	for _, a := range allowed {
		if as, ok := a.(string); ok {
			if vs, ok := v.(string); ok && strings.EqualFold(as, vs) {
				return true
			}
			continue
		}
		if deepEqual(a, v) {
			return true
		}
	}
	return false
}

// coerceParam checks a value against a parameter type, converting what ARM
// converts: "5" for an int, "true" for a bool.
func coerceParam(typ string, v any) (any, error) {
	switch strings.ToLower(typ) {
	case "string", "securestring":
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("expected a value of type 'String', but received a value of type '%s'", typeName(v))
	case "int":
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if n, err := toInt(x); err == nil {
				return n, nil
			}
		case string:
			if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return n, nil
			}
		}
		return nil, fmt.Errorf("expected a value of type 'Integer', but received a value of type '%s'", typeName(v))
	case "bool":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, fmt.Errorf("expected a value of type 'Boolean', but received a value of type '%s'", typeName(v))
	case "object", "secureobject":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
		return nil, fmt.Errorf("expected a value of type 'Object', but received a value of type '%s'", typeName(v))
	case "array":
		if a, ok := v.([]any); ok {
			return a, nil
		}
		return nil, fmt.Errorf("expected a value of type 'Array', but received a value of type '%s'", typeName(v))
	case "", "any":
		return v, nil
	}
	return nil, fmt.Errorf("the type '%s' is not supported", typ)
}

// ---- user-defined functions ----

func (st *state) loadFunctions() error {
	st.functions = map[string]*userFunc{}
	raw, ok := lookupKey(st.tmpl.raw, "functions")
	if !ok || raw == nil {
		return nil
	}
	key, _ := realKey(st.tmpl.raw, "functions")
	groups, ok := raw.([]any)
	if !ok {
		return st.tmpl.errAt(key, "the template 'functions' property must be an array of namespaces")
	}
	for i, g := range groups {
		gpath := childPath(key, i)
		grp, ok := g.(map[string]any)
		if !ok {
			return st.tmpl.errAt(gpath, "a function namespace must be an object with 'namespace' and 'members'")
		}
		ns, _ := lookupKey(grp, "namespace")
		nss, ok := ns.(string)
		if !ok || nss == "" {
			return st.tmpl.errAt(gpath, "the function namespace must have a 'namespace' name")
		}
		mv, _ := lookupKey(grp, "members")
		members, ok := mv.(map[string]any)
		if !ok {
			return st.tmpl.errAt(gpath, "the function namespace '%s' must have 'members'", nss)
		}
		for name, m := range members {
			mpath := childPath(childPath(gpath, "members"), name)
			def, ok := m.(map[string]any)
			if !ok {
				return st.tmpl.errAt(mpath, "the function '%s.%s' must be an object", nss, name)
			}
			fn := &userFunc{}
			if pv, ok := lookupKey(def, "parameters"); ok {
				ps, ok := pv.([]any)
				if !ok {
					return st.tmpl.errAt(mpath, "the parameters of function '%s.%s' must be an array", nss, name)
				}
				for _, p := range ps {
					pm, _ := p.(map[string]any)
					pn, _ := lookupKey(pm, "name")
					pt, _ := lookupKey(pm, "type")
					pns, ok1 := pn.(string)
					pts, ok2 := pt.(string)
					if !ok1 || !ok2 || pns == "" {
						return st.tmpl.errAt(mpath, "every parameter of function '%s.%s' needs a 'name' and a 'type'", nss, name)
					}
					fn.params = append(fn.params, funcParam{name: pns, typ: pts})
				}
			}
			ov, _ := lookupKey(def, "output")
			out, ok := ov.(map[string]any)
			if !ok {
				return st.tmpl.errAt(mpath, "the function '%s.%s' must have an 'output' with 'type' and 'value'", nss, name)
			}
			fn.output, _ = lookupKey(out, "value")
			if ot, ok := lookupKey(out, "type"); ok {
				fn.outputType, _ = ot.(string)
			}
			st.functions[strings.ToLower(nss)+"."+strings.ToLower(name)] = fn
		}
	}
	return nil
}

// ---- variables ----

func (st *state) loadVariables() error {
	vars, key := st.tmpl.section("variables")
	st.vars = map[string]*varState{}
	for name, raw := range vars {
		path := childPath(key, name)
		if strings.EqualFold(name, "copy") {
			loops, ok := raw.([]any)
			if !ok {
				return st.tmpl.errAt(path, "the variables 'copy' property must be an array of copy loops")
			}
			for i, l := range loops {
				lp := childPath(path, i)
				loop, ok := l.(map[string]any)
				if !ok {
					return st.tmpl.errAt(lp, "a variable copy loop must be an object with 'name', 'count' and 'input'")
				}
				nv, _ := lookupKey(loop, "name")
				n, ok := nv.(string)
				if !ok || n == "" {
					return st.tmpl.errAt(lp, "a variable copy loop must have a 'name'")
				}
				st.vars[strings.ToLower(n)] = &varState{name: n, path: lp, copyLoop: loop}
			}
			continue
		}
		st.vars[strings.ToLower(name)] = &varState{name: name, path: path, raw: raw}
	}
	return nil
}

func (st *state) sortedVars() []*varState {
	out := make([]*varState, 0, len(st.vars))
	for _, v := range st.vars {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return st.before(out[i].path, out[j].path) })
	return out
}

func (st *state) variable(ctx context.Context, name string) (any, error) {
	v, ok := st.vars[strings.ToLower(name)]
	if !ok {
		return nil, errorf("the template variable '%s' is not found", name)
	}
	if v.done {
		return v.value, nil
	}
	if v.busy {
		return nil, errorf("the template variable '%s' refers to itself", name)
	}
	v.busy = true
	defer func() { v.busy = false }()
	sc := st.rootScope(ctx)
	sc.noResource = true
	var val any
	var err error
	if v.copyLoop != nil {
		out := map[string]any{}
		if err = sc.expandPropertyCopies([]any{v.copyLoop}, out); err == nil {
			val = out[v.name]
		}
	} else {
		val, err = sc.evalValue(v.raw)
	}
	if err != nil {
		return nil, st.tmpl.wrap(v.path, err)
	}
	v.value, v.done = val, true
	return val, nil
}

package template

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Prepare evaluates a template against parameter values (plain values, keyed
// by parameter name; see ParameterValues for the request form) and env: it
// checks and coerces the parameters, evaluates variables, expands resources
// with their copy loops and nested children, resolves dependsOn, and
// evaluates every resource body that does not need deployed resources.
func Prepare(ctx context.Context, t *Template, params map[string]any, env Env) (*Deployment, error) {
	st := &state{env: &env, tmpl: t}
	if err := st.loadFunctions(); err != nil {
		return nil, err
	}
	if err := st.loadParameters(params); err != nil {
		return nil, err
	}
	if err := st.loadVariables(); err != nil {
		return nil, err
	}
	d := &Deployment{
		Parameters:       map[string]any{},
		SecureParameters: map[string]bool{},
		Variables:        map[string]any{},
		st:               st,
	}
	for _, p := range st.sortedParams() {
		v, err := st.parameter(ctx, p.name)
		if err != nil {
			return nil, err
		}
		d.Parameters[p.name] = v
		if p.typ == "securestring" || p.typ == "secureobject" {
			d.SecureParameters[p.name] = true
		}
	}
	for _, v := range st.sortedVars() {
		val, err := st.variable(ctx, v.name)
		if err != nil {
			return nil, err
		}
		d.Variables[v.name] = val
	}
	resRaw, _ := lookupKey(t.raw, "resources")
	resKey, _ := realKey(t.raw, "resources")
	if err := st.expand(ctx, resRaw.([]any), resKey, nil, st.rootScope(ctx)); err != nil {
		return nil, err
	}
	st.expanded = true
	if err := st.evaluateBodies(ctx); err != nil {
		return nil, err
	}
	if err := st.resolveDependencies(); err != nil {
		return nil, err
	}
	d.Resources = st.resources
	return d, nil
}

// ---- parameters ----

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

// ---- resources ----

var metaKeys = map[string]bool{"copy": true, "condition": true, "dependson": true, "resources": true, "comments": true, "existing": true}

func (st *state) expand(ctx context.Context, raws []any, path string, parent *Resource, sc *scope) error {
	for i, r := range raws {
		p := childPath(path, i)
		obj, ok := r.(map[string]any)
		if !ok {
			return st.tmpl.errAt(p, "a template resource must be an object")
		}
		cv, hasCopy := lookupKey(obj, "copy")
		if !hasCopy {
			if err := st.expandOne(ctx, obj, p, parent, sc, nil, 0); err != nil {
				return err
			}
			continue
		}
		ck, _ := realKey(obj, "copy")
		cpath := childPath(p, ck)
		copyObj, ok := cv.(map[string]any)
		if !ok {
			return st.tmpl.errAt(cpath, "the resource copy property must be an object with 'name' and 'count'")
		}
		name, count, err := sc.copyHeader(copyObj)
		if err != nil {
			return st.tmpl.wrap(cpath, err)
		}
		info := CopyInfo{Name: name, Count: count, Mode: "Parallel"}
		if mv, ok := lookupKey(copyObj, "mode"); ok {
			ms, _ := mv.(string)
			switch strings.ToLower(ms) {
			case "parallel":
			case "serial":
				info.Mode = "Serial"
				info.BatchSize = 1
			default:
				return st.tmpl.errAt(childPath(cpath, "mode"), "the copy mode '%v' is not valid: it must be 'Serial' or 'Parallel'", mv)
			}
		}
		if bv, ok := lookupKey(copyObj, "batchSize"); ok {
			ev, err := sc.evalValue(bv)
			if err != nil {
				return st.tmpl.wrap(childPath(cpath, "batchSize"), err)
			}
			n, err := toInt(ev)
			if err != nil || n < 1 || n > maxCopy {
				return st.tmpl.errAt(childPath(cpath, "batchSize"), "the copy batchSize must be an integer between 1 and %d", maxCopy)
			}
			if info.Mode == "Serial" {
				info.BatchSize = int(n)
			}
		}
		for idx := 0; idx < count; idx++ {
			ci := info
			ci.Index = idx
			if err := st.expandOne(ctx, obj, p, parent, sc.withLoop(name, idx), &ci, idx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *state) evalField(sc *scope, obj map[string]any, path, key string) (any, bool, error) {
	k, ok := realKey(obj, key)
	if !ok {
		return nil, false, nil
	}
	v, err := sc.evalValue(obj[k])
	if err != nil {
		return nil, true, st.tmpl.wrap(childPath(path, k), err)
	}
	return v, true, nil
}

func (st *state) evalStringField(sc *scope, obj map[string]any, path, key string, required bool) (string, error) {
	v, ok, err := st.evalField(sc, obj, path, key)
	if err != nil {
		return "", err
	}
	if !ok {
		if required {
			return "", st.tmpl.errAt(path, "the template resource must have a '%s'", key)
		}
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", st.tmpl.errAt(childPath(path, key), "the template resource '%s' must be a string, not %s", key, typeName(v))
	}
	return s, nil
}

func (st *state) expandOne(ctx context.Context, obj map[string]any, path string, parent *Resource, sc *scope, ci *CopyInfo, idx int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &Resource{Path: path, Condition: true, Copy: ci, raw: obj, sc: sc, parent: parent, defIndex: idx}
	if cv, ok, err := st.evalField(sc, obj, path, "condition"); err != nil {
		return err
	} else if ok {
		b, err := toBool(cv)
		if err != nil {
			return st.tmpl.errAt(childPath(path, "condition"), "the resource condition must be a Boolean, not %s", typeName(cv))
		}
		r.Condition = b.(bool)
	}
	if parent != nil && !parent.Condition {
		r.Condition = false
	}
	if ev, ok := lookupKey(obj, "existing"); ok {
		b, _ := ev.(bool)
		r.Existing = b
	}
	name, err := st.evalStringField(sc, obj, path, "name", true)
	if err != nil {
		return err
	}
	typ, err := st.evalStringField(sc, obj, path, "type", true)
	if err != nil {
		return err
	}
	if parent != nil {
		if !strings.HasPrefix(strings.ToLower(typ), strings.ToLower(parent.Type)+"/") {
			typ = parent.Type + "/" + typ
		}
		if !strings.HasPrefix(strings.ToLower(name), strings.ToLower(parent.Name)+"/") {
			name = parent.Name + "/" + name
		}
	}
	r.Name, r.Type = name, typ
	if !strings.Contains(typ, "/") || !strings.Contains(strings.SplitN(typ, "/", 2)[0], ".") {
		return st.tmpl.errAt(childPath(path, "type"), "the resource type '%s' is not valid: it must be a namespace and type, as in 'Microsoft.Network/virtualNetworks'", typ)
	}
	if r.APIVersion, err = st.evalStringField(sc, obj, path, "apiVersion", false); err != nil {
		return err
	}
	if r.APIVersion == "" {
		profile := st.tmpl.APIProfile
		if pv, ok := lookupKey(obj, "apiProfile"); ok {
			profile, _ = pv.(string)
		}
		r.APIVersion = ProfileAPIVersion(profile, typ)
		if r.APIVersion == "" {
			if profile != "" {
				return st.tmpl.errAt(path, "the resource type '%s' has no 'apiVersion' and the API profile '%s' does not cover it", typ, profile)
			}
			return st.tmpl.errAt(path, "the template resource '%s' of type '%s' must have an 'apiVersion' (or the template an 'apiProfile')", name, typ)
		}
	}
	if r.Scope, err = st.evalStringField(sc, obj, path, "scope", false); err != nil {
		return err
	}
	if r.SubscriptionID, err = st.evalStringField(sc, obj, path, "subscriptionId", false); err != nil {
		return err
	}
	if r.ResourceGroup, err = st.evalStringField(sc, obj, path, "resourceGroup", false); err != nil {
		return err
	}
	id, err := st.resourceID(r)
	if err != nil {
		return st.tmpl.wrap(childPath(path, "name"), err)
	}
	r.ID = id
	if dv, ok, err := st.evalField(sc, obj, path, "dependsOn"); err != nil {
		return err
	} else if ok {
		arr, isArr := dv.([]any)
		if !isArr {
			return st.tmpl.errAt(childPath(path, "dependsOn"), "dependsOn must be an array of resource names or ids")
		}
		for i, e := range arr {
			s, isStr := e.(string)
			if !isStr {
				return st.tmpl.errAt(childPath(childPath(path, "dependsOn"), i), "dependsOn entries must be strings, not %s", typeName(e))
			}
			r.deps = append(r.deps, s)
		}
	}
	st.resources = append(st.resources, r)
	if cv, ok := lookupKey(obj, "resources"); ok {
		ck, _ := realKey(obj, "resources")
		children, isArr := cv.([]any)
		if !isArr {
			return st.tmpl.errAt(childPath(path, ck), "nested 'resources' must be an array")
		}
		if err := st.expand(ctx, children, childPath(path, ck), r, sc); err != nil {
			return err
		}
	}
	return nil
}

// resourceID composes a resource's id from its scope, type and name.
func (st *state) resourceID(r *Resource) (string, error) {
	typeSegs := strings.Split(r.Type, "/")
	nameSegs := strings.Split(r.Name, "/")
	if len(nameSegs) != len(typeSegs)-1 {
		return "", errorf("the template resource '%s' for type '%s' has incorrect segment lengths. A nested resource type must have identical number of segments as its resource name. A root resource type must have segment length one greater than its resource name", r.Name, r.Type)
	}
	for _, n := range nameSegs {
		if n == "" {
			return "", errorf("the template resource name '%s' has an empty segment", r.Name)
		}
	}
	if r.Scope != "" {
		return providerID(strings.TrimRight(r.Scope, "/"), r.Type, []string{r.Name})
	}
	sub := st.env.Subscription.SubscriptionID
	if r.SubscriptionID != "" {
		sub = r.SubscriptionID
	}
	if strings.EqualFold(r.Type, "Microsoft.Resources/resourceGroups") {
		return "/subscriptions/" + sub + "/resourceGroups/" + r.Name, nil
	}
	prefix := "/subscriptions/" + sub
	rg := ""
	if st.env.ResourceGroup != nil {
		rg = st.env.ResourceGroup.Name
	}
	if r.ResourceGroup != "" {
		rg = r.ResourceGroup
	}
	if rg != "" {
		prefix += "/resourceGroups/" + rg
	}
	return providerID(prefix, r.Type, []string{r.Name})
}

// body is the request body of a resource before evaluation.
func (r *Resource) rawBody() map[string]any {
	out := make(map[string]any, len(r.raw))
	for k, v := range r.raw {
		if metaKeys[strings.ToLower(k)] {
			continue
		}
		out[k] = v
	}
	return out
}

func (r *Resource) finishBody(body map[string]any) map[string]any {
	for _, k := range []string{"name", "type", "apiVersion"} {
		if rk, ok := realKey(body, k); ok {
			delete(body, rk)
		}
	}
	body["name"], body["type"], body["apiVersion"] = r.Name, r.Type, r.APIVersion
	return body
}

func (st *state) evaluateBodies(ctx context.Context) error {
	for _, r := range st.resources {
		raw, _ := r.splitBody()
		// Resources named in reference() and list*() become dependencies.
		st.scanRuntimeCalls(r, raw)
		body, err := r.evalBody(r.sc)
		if err != nil {
			if errors.Is(err, errRuntime) {
				r.NeedsRuntime = true
				continue
			}
			return st.tmpl.wrap(r.Path, err)
		}
		r.Body = body
	}
	return nil
}

// isDeployment reports a nested deployment (Microsoft.Resources/deployments).
func (r *Resource) isDeployment() bool {
	return strings.EqualFold(r.Type, "Microsoft.Resources/deployments")
}

// splitBody returns the body to evaluate and, for nested deployments, the
// inline template held out of it: its expressions belong to the nested
// deployment (PrepareNested), not to this one.
func (r *Resource) splitBody() (raw map[string]any, held func(map[string]any)) {
	raw = r.rawBody()
	held = func(map[string]any) {}
	if !r.isDeployment() {
		return raw, held
	}
	pk, ok := realKey(raw, "properties")
	if !ok {
		return raw, held
	}
	props, ok := raw[pk].(map[string]any)
	if !ok {
		return raw, held
	}
	tk, ok := realKey(props, "template")
	if !ok {
		return raw, held
	}
	cp := make(map[string]any, len(props))
	for k, v := range props {
		if k != tk {
			cp[k] = v
		}
	}
	raw[pk] = cp
	tmpl := props[tk]
	return raw, func(body map[string]any) {
		if p, ok := body[pk].(map[string]any); ok {
			p[tk] = deepCopy(tmpl)
		}
	}
}

func (r *Resource) evalBody(sc *scope) (map[string]any, error) {
	raw, restore := r.splitBody()
	v, err := sc.evalValue(raw)
	if err != nil {
		return nil, err
	}
	body := v.(map[string]any)
	restore(body)
	return r.finishBody(body), nil
}

func (st *state) scanRuntimeCalls(r *Resource, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			st.scanRuntimeCalls(r, e)
		}
	case []any:
		for _, e := range x {
			st.scanRuntimeCalls(r, e)
		}
	case string:
		inner, _, isExpr := splitExpression(x)
		if !isExpr {
			return
		}
		n, err := st.cache.parse(inner)
		if err != nil {
			return
		}
		walk(n, func(n Node) {
			c, ok := n.(*callNode)
			if !ok || c.namespace != "" || len(c.args) == 0 {
				return
			}
			name := strings.ToLower(c.name)
			if name != "reference" && !strings.HasPrefix(name, "list") {
				return
			}
			tv, err := r.sc.eval(c.args[0])
			if err != nil {
				return
			}
			target, ok := tv.(string)
			if !ok {
				return
			}
			if t, err := st.resolveTarget(target); err == nil && t != nil && t != r {
				r.refDeps = append(r.refDeps, t)
			}
		})
	}
}

// resolveTarget finds the template's own resource for a reference() target:
// a resource id, a name, or "type/name". Nil when an id names a resource the
// template does not deploy.
func (st *state) resolveTarget(target string) (*Resource, error) {
	if strings.HasPrefix(target, "/") {
		for _, r := range st.resources {
			if canonicalID(r.ID) == canonicalID(target) {
				return r, nil
			}
		}
		return nil, nil
	}
	var found []*Resource
	for _, r := range st.resources {
		if strings.EqualFold(r.Name, target) || strings.EqualFold(r.Type+"/"+r.Name, target) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, errorf("the resource '%s' is not defined in the template", target)
	case 1:
		return found[0], nil
	}
	return nil, errorf("the resource name '%s' is ambiguous: more than one resource in the template has it; use resourceId()", target)
}

// matchDependency resolves one dependsOn entry: a copy loop name, a
// resource id, a name, or "type/name".
func (st *state) matchDependency(d string) []*Resource {
	var out []*Resource
	for _, r := range st.resources {
		if r.Copy != nil && strings.EqualFold(r.Copy.Name, d) {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		return out
	}
	ld := canonicalID(d)
	for _, r := range st.resources {
		id := canonicalID(r.ID)
		switch {
		case strings.HasPrefix(d, "/") && id == ld,
			!strings.HasPrefix(d, "/") && strings.EqualFold(r.Name, d),
			strings.EqualFold(r.Type+"/"+r.Name, d),
			!strings.HasPrefix(d, "/") && strings.HasSuffix(id, "/providers/"+ld):
			out = append(out, r)
		}
	}
	if len(out) == 0 && !strings.Contains(d, "/") {
		// A nested child may be named by its own segment ("front" for "vnet/front").
		for _, r := range st.resources {
			if r.parent != nil && strings.EqualFold(r.Name[strings.LastIndexByte(r.Name, '/')+1:], d) {
				out = append(out, r)
			}
		}
	}
	return out
}

// canonicalID lower-cases an id and writes resource groups the one way
// (subscriptionResourceId gives .../providers/Microsoft.Resources/resourceGroups/x).
func canonicalID(id string) string {
	return strings.ReplaceAll(strings.ToLower(id), "/providers/microsoft.resources/resourcegroups/", "/resourcegroups/")
}

func (st *state) resolveDependencies() error {
	seen := map[string]*Resource{}
	for _, r := range st.resources {
		if !r.Condition || r.Existing {
			continue
		}
		key := canonicalID(r.ID)
		if other, dup := seen[key]; dup {
			return st.tmpl.errAt(r.Path, "the resource '%s' is defined multiple times in a template (also at '%s')", r.ID, other.Path)
		}
		seen[key] = r
	}
	// Instances of each serial copy loop, by definition path.
	serial := map[string][]*Resource{}
	for _, r := range st.resources {
		if r.Copy != nil && r.Copy.Mode == "Serial" {
			serial[r.Path] = append(serial[r.Path], r)
		}
	}
	for _, r := range st.resources {
		ids := map[string]bool{}
		add := func(t *Resource) {
			if t == r || !t.Condition || ids[strings.ToLower(t.ID)] {
				return
			}
			ids[strings.ToLower(t.ID)] = true
			r.DependsOn = append(r.DependsOn, t.ID)
		}
		for i, d := range r.deps {
			matches := st.matchDependency(d)
			if len(matches) == 0 {
				return st.tmpl.errAt(childPath(childPath(r.Path, "dependsOn"), i), "the resource '%s' is not defined in the template", d)
			}
			for _, m := range matches {
				if m == r {
					return st.tmpl.errAt(childPath(childPath(r.Path, "dependsOn"), i), "the resource '%s' depends on itself", r.ID)
				}
				add(m)
			}
		}
		if r.parent != nil {
			add(r.parent)
		}
		for _, t := range r.refDeps {
			add(t)
		}
		if r.Copy != nil && r.Copy.Mode == "Serial" && r.Copy.BatchSize > 0 {
			batch := r.defIndex / r.Copy.BatchSize
			if batch > 0 {
				for _, o := range serial[r.Path] {
					if o.defIndex/r.Copy.BatchSize == batch-1 {
						add(o)
					}
				}
			}
		}
	}
	return st.checkCycles()
}

func (st *state) checkCycles() error {
	byID := map[string]*Resource{}
	for _, r := range st.resources {
		if r.Condition {
			byID[strings.ToLower(r.ID)] = r
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[*Resource]int{}
	var visit func(r *Resource, chain []string) error
	visit = func(r *Resource, chain []string) error {
		color[r] = grey
		chain = append(chain, r.ID)
		for _, d := range r.DependsOn {
			t := byID[strings.ToLower(d)]
			if t == nil {
				continue
			}
			switch color[t] {
			case grey:
				return st.tmpl.errAt(t.Path, "circular dependency detected on resource: '%s'. Please see https://aka.ms/arm-syntax-resources for usage details (cycle: %s)", t.ID, strings.Join(append(chain, t.ID), " -> "))
			case white:
				if err := visit(t, chain); err != nil {
					return err
				}
			}
		}
		color[r] = black
		return nil
	}
	for _, r := range st.resources {
		if r.Condition && color[r] == white {
			if err := visit(r, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// EvaluateBody evaluates a resource's body with reference() and list*()
// answered by the Env callbacks. Call it once the resource's dependencies
// have been deployed. For resources without runtime calls it returns Body.
func (d *Deployment) EvaluateBody(ctx context.Context, r *Resource) (map[string]any, error) {
	if !r.NeedsRuntime {
		return deepCopy(r.Body).(map[string]any), nil
	}
	sc := *r.sc
	sc.ctx = ctx
	sc.runtime = true
	body, err := r.evalBody(&sc)
	if err != nil {
		return nil, d.st.tmpl.wrap(r.Path, err)
	}
	return body, nil
}

// PrepareNested prepares the inline template of a nested deployment
// (a Microsoft.Resources/deployments resource) from its evaluated body. With
// expressionEvaluationOptions.scope "inner" the nested template stands alone:
// its own parameters, given by properties.parameters. With the default
// "outer" scope its expressions see this deployment's parameters, variables
// and functions, as in ARM. env is the nested deployment's scope (its
// resource group). A templateLink must be fetched by the caller and passed
// as properties.template.
func (d *Deployment) PrepareNested(ctx context.Context, body map[string]any, env Env) (*Deployment, error) {
	props, _ := lookupKey(body, "properties")
	pm, ok := props.(map[string]any)
	if !ok {
		return nil, &Error{Code: CodeInvalidTemplate, Path: "properties", Message: "the nested deployment has no 'properties'"}
	}
	tv, ok := lookupKey(pm, "template")
	tm, isObj := tv.(map[string]any)
	if !ok || !isObj {
		return nil, &Error{Code: CodeInvalidTemplate, Path: "properties.template", Message: "the nested deployment has no inline 'template' (a templateLink must be resolved by the caller)"}
	}
	t, err := FromValue(tm)
	if err != nil {
		return nil, err
	}
	scopeName := "outer"
	if eo, ok := lookupKey(pm, "expressionEvaluationOptions"); ok {
		if eom, ok := eo.(map[string]any); ok {
			if sv, ok := lookupKey(eom, "scope"); ok {
				scopeName, _ = sv.(string)
			}
		}
	}
	var params map[string]any
	if pv, ok := lookupKey(pm, "parameters"); ok && pv != nil {
		pmap, ok := pv.(map[string]any)
		if !ok {
			return nil, &Error{Code: CodeInvalidTemplate, Path: "properties.parameters", Message: "the nested deployment's parameters must be an object"}
		}
		if params, err = ParameterValues(pmap); err != nil {
			return nil, err
		}
	}
	switch strings.ToLower(scopeName) {
	case "inner":
		return Prepare(ctx, t, params, env)
	case "outer", "":
		if len(params) > 0 {
			return nil, &Error{Code: CodeInvalidTemplate, Path: "properties.parameters", Message: "a nested deployment with the 'outer' expression evaluation scope can't have parameters; use the 'inner' scope"}
		}
		st := &state{env: &env, tmpl: t, params: d.st.params, vars: d.st.vars, functions: d.st.functions}
		nd := &Deployment{Parameters: d.Parameters, SecureParameters: d.SecureParameters, Variables: d.Variables, st: st}
		resRaw, _ := lookupKey(t.raw, "resources")
		resKey, _ := realKey(t.raw, "resources")
		if err := st.expand(ctx, resRaw.([]any), resKey, nil, st.rootScope(ctx)); err != nil {
			return nil, err
		}
		st.expanded = true
		if err := st.evaluateBodies(ctx); err != nil {
			return nil, err
		}
		if err := st.resolveDependencies(); err != nil {
			return nil, err
		}
		nd.Resources = st.resources
		return nd, nil
	}
	return nil, &Error{Code: CodeInvalidTemplate, Path: "properties.expressionEvaluationOptions.scope", Message: fmt.Sprintf("the expression evaluation scope '%s' is not valid: it must be 'inner' or 'outer'", scopeName)}
}

// Outputs evaluates the template's outputs, with reference() and list*()
// answered by the Env callbacks (call it after every resource is deployed).
func (d *Deployment) Outputs(ctx context.Context) (map[string]Output, error) {
	st := d.st
	outs, key := st.tmpl.section("outputs")
	result := map[string]Output{}
	for _, name := range sortedKeys(outs) {
		path := childPath(key, name)
		def, ok := outs[name].(map[string]any)
		if !ok {
			return nil, st.tmpl.errAt(path, "the template output '%s' must be an object with 'type' and 'value'", name)
		}
		sc := st.rootScope(ctx)
		sc.runtime = true
		if cv, ok, err := st.evalField(sc, def, path, "condition"); err != nil {
			return nil, err
		} else if ok {
			b, err := toBool(cv)
			if err != nil {
				return nil, st.tmpl.errAt(childPath(path, "condition"), "the output condition must be a Boolean")
			}
			if !b.(bool) {
				continue
			}
		}
		tv, _ := lookupKey(def, "type")
		typ, ok := tv.(string)
		if !ok {
			return nil, st.tmpl.errAt(path, "the template output '%s' has no 'type'", name)
		}
		var val any
		if cv, ok := lookupKey(def, "copy"); ok {
			ck, _ := realKey(def, "copy")
			loop, isObj := cv.(map[string]any)
			if !isObj {
				return nil, st.tmpl.errAt(childPath(path, ck), "the output copy must be an object with 'count' and 'input'")
			}
			withName := map[string]any{"name": name}
			for k, v := range loop {
				withName[k] = v
			}
			out := map[string]any{}
			if err := sc.expandPropertyCopies([]any{withName}, out); err != nil {
				return nil, st.tmpl.wrap(childPath(path, ck), err)
			}
			val = out[name]
		} else {
			raw, ok := lookupKey(def, "value")
			if !ok {
				return nil, st.tmpl.errAt(path, "the template output '%s' has no 'value'", name)
			}
			vk, _ := realKey(def, "value")
			v, err := sc.evalValue(raw)
			if err != nil {
				return nil, st.tmpl.wrap(childPath(path, vk), err)
			}
			val = v
		}
		cv, err := coerceParam(typ, val)
		if err != nil {
			return nil, st.tmpl.errAt(path, "the template output '%s' is not valid: %v", name, err)
		}
		result[name] = Output{Type: typ, Value: cv}
	}
	return result, nil
}

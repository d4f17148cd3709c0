package template

import (
	"context"
	"fmt"
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
	if err := st.expandResources(ctx); err != nil {
		return nil, err
	}
	d.Resources = st.resources
	return d, nil
}

// expandResources expands the template's resources (copy loops and nested
// templates), evaluates their bodies and orders them by their dependencies.
func (st *state) expandResources(ctx context.Context) error {
	resRaw, _ := lookupKey(st.tmpl.raw, "resources")
	resKey, _ := realKey(st.tmpl.raw, "resources")
	if err := st.expand(ctx, resRaw.([]any), resKey, nil, st.rootScope(ctx)); err != nil {
		return err
	}
	st.expanded = true
	if err := st.evaluateBodies(ctx); err != nil {
		return err
	}
	return st.resolveDependencies()
}

// EvaluateBody evaluates a resource's body with reference() and list*()
// answered by the Env callbacks. Call it once the resource's dependencies
// have been deployed. For resources without runtime calls it returns a copy
// of Body.
func (d *Deployment) EvaluateBody(ctx context.Context, r *Resource) (map[string]any, error) {
	if r.Body != nil {
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
		if err := st.expandResources(ctx); err != nil {
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

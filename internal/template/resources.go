package template

import (
	"context"
	"errors"
	"strings"
)

// Resource expansion: copy loops, nested children, ids, bodies, dependencies.

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
		switch {
		case err == nil:
			r.Body = body
		case !r.Condition:
			// A resource that is not deployed may hold expressions that only
			// make sense when it is (the new-or-existing pattern): ARM does
			// not evaluate its properties, and neither does Prepare.
		case errors.Is(err, errRuntime):
			r.NeedsRuntime = true
		default:
			return st.tmpl.wrap(r.Path, err)
		}
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

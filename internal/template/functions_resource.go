package template

import (
	"fmt"
	"strings"
)

func deploymentFunctions() map[string]builtin {
	return map[string]builtin{
		"parameters": {min: 1, max: 1, fn: func(s *scope, _ string, a []any) (any, error) {
			name, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			if s.inFunction {
				v, ok := s.fnParams[strings.ToLower(name)]
				if !ok {
					return nil, errorf("the function parameter '%s' is not found", name)
				}
				return v, nil
			}
			return s.st.parameter(s.ctx, name)
		}},
		"variables": {min: 1, max: 1, fn: func(s *scope, _ string, a []any) (any, error) {
			name, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			if s.inFunction {
				return nil, errorf("the template function 'variables' is not expected in a user-defined function")
			}
			return s.st.variable(s.ctx, name)
		}},
		"deployment": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			return s.st.deploymentObject(), nil
		}},
		"environment": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			if s.st.env.Environment != nil {
				return deepCopy(s.st.env.Environment), nil
			}
			return map[string]any{"name": "AzureCloud"}, nil
		}},
		"deployer": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			d := s.st.env.Deployer
			return map[string]any{"objectId": d.ObjectID, "tenantId": d.TenantID, "userPrincipalName": d.UserPrincipalName}, nil
		}},
	}
}

func resourceFunctions() map[string]builtin {
	return map[string]builtin{
		"resourceGroup": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			rg := s.st.env.ResourceGroup
			if rg == nil {
				return nil, errorf("the template function 'resourceGroup' is not expected at this location: the deployment is not at resource group scope")
			}
			tags := map[string]any{}
			for k, v := range rg.Tags {
				tags[k] = v
			}
			out := map[string]any{
				"id":         s.st.rgID(),
				"name":       rg.Name,
				"type":       "Microsoft.Resources/resourceGroups",
				"location":   rg.Location,
				"tags":       tags,
				"properties": map[string]any{"provisioningState": "Succeeded"},
			}
			if rg.ManagedBy != "" {
				out["managedBy"] = rg.ManagedBy
			}
			return out, nil
		}},
		"subscription": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			sub := s.st.env.Subscription
			return map[string]any{
				"id":             "/subscriptions/" + sub.SubscriptionID,
				"subscriptionId": sub.SubscriptionID,
				"tenantId":       sub.TenantID,
				"displayName":    sub.DisplayName,
			}, nil
		}},
		"tenant": {min: 0, max: 0, fn: func(s *scope, _ string, _ []any) (any, error) {
			t := s.st.env.Tenant
			return map[string]any{
				"countryCode": t.CountryCode,
				"displayName": t.DisplayName,
				"id":          "/tenants/" + t.TenantID,
				"tenantId":    t.TenantID,
			}, nil
		}},
		"managementGroup": {min: 0, max: 0, fn: func(*scope, string, []any) (any, error) {
			return nil, errorf("the template function 'managementGroup' is not expected at this location: the deployment is not at management group scope")
		}},
		"resourceId": {min: 2, max: -1, fn: func(s *scope, _ string, a []any) (any, error) {
			parts, ti, err := typedIDParts(a, 2, "the resource type must be one of the first three arguments and contain a namespace, as in 'Microsoft.Network/virtualNetworks'")
			if err != nil {
				return nil, err
			}
			sub, rg := s.st.env.Subscription.SubscriptionID, ""
			if s.st.env.ResourceGroup != nil {
				rg = s.st.env.ResourceGroup.Name
			}
			switch ti {
			case 1:
				rg = parts[0]
			case 2:
				sub, rg = parts[0], parts[1]
			}
			prefix := "/subscriptions/" + sub
			if rg != "" {
				prefix += "/resourceGroups/" + rg
			}
			return providerID(prefix, parts[ti], parts[ti+1:])
		}},
		"subscriptionResourceId": {min: 2, max: -1, fn: func(s *scope, _ string, a []any) (any, error) {
			parts, ti, err := typedIDParts(a, 1, "the resource type must be the first or second argument")
			if err != nil {
				return nil, err
			}
			sub := s.st.env.Subscription.SubscriptionID
			if ti == 1 {
				sub = parts[0]
			}
			return providerID("/subscriptions/"+sub, parts[ti], parts[ti+1:])
		}},
		"tenantResourceId": {min: 2, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			parts, err := allStrings(a)
			if err != nil {
				return nil, err
			}
			return providerID("", parts[0], parts[1:])
		}},
		"extensionResourceId": {min: 3, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			parts, err := allStrings(a)
			if err != nil {
				return nil, err
			}
			return providerID(strings.TrimRight(parts[0], "/"), parts[1], parts[2:])
		}},
		"managementGroupResourceId": {min: 2, max: -1, fn: func(_ *scope, _ string, a []any) (any, error) {
			parts, err := allStrings(a)
			if err != nil {
				return nil, err
			}
			ti := typeArgIndex(parts)
			if ti != 1 {
				return nil, errorf("the management group id must be given before the resource type")
			}
			return providerID("/providers/Microsoft.Management/managementGroups/"+parts[0], parts[1], parts[2:])
		}},
		"reference": {min: 1, max: 3, fn: fnReference},
		"references": {min: 1, max: 2, fn: func(*scope, string, []any) (any, error) {
			return nil, errorf("the template function 'references' needs symbolic resource names (languageVersion 2.0), which are not supported")
		}},
		"providers": {min: 1, max: 2, fn: func(s *scope, _ string, a []any) (any, error) {
			if s.noResource {
				return nil, errorf("the template function 'providers' is not expected at this location")
			}
			ns, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			typ := ""
			if len(a) == 2 {
				if typ, err = argString(a, 1); err != nil {
					return nil, err
				}
			}
			if s.st.env.Providers == nil {
				return nil, errorf("the resource provider '%s' is not available", ns)
			}
			v, err := s.st.env.Providers(s.ctx, ns, typ)
			if err != nil {
				return nil, &EvalError{Msg: fmt.Sprintf("providers('%s') failed", ns), Err: err}
			}
			return Normalize(v), nil
		}},
		"pickZones": {min: 3, max: 5, fn: func(s *scope, _ string, a []any) (any, error) {
			ns, err := argString(a, 0)
			if err != nil {
				return nil, err
			}
			typ, err := argString(a, 1)
			if err != nil {
				return nil, err
			}
			loc, err := argString(a, 2)
			if err != nil {
				return nil, err
			}
			count, offset := int64(1), int64(0)
			if len(a) > 3 {
				if count, err = argInt(a, 3); err != nil {
					return nil, err
				}
			}
			if len(a) > 4 {
				if offset, err = argInt(a, 4); err != nil {
					return nil, err
				}
			}
			var zones []string
			if s.st.env.Zones != nil {
				if zones, err = s.st.env.Zones(s.ctx, ns, typ, loc); err != nil {
					return nil, &EvalError{Msg: "pickZones failed", Err: err}
				}
			}
			out := []any{}
			for i := offset; i < offset+count && int(i) < len(zones) && i >= 0; i++ {
				out = append(out, zones[i])
			}
			return out, nil
		}},
	}
}

// typeArgIndex finds the first argument that looks like a resource type
// (a namespace, then a '/').
func typeArgIndex(parts []string) int {
	for i, p := range parts {
		if ns, _, ok := strings.Cut(p, "/"); ok && strings.Contains(ns, ".") {
			return i
		}
	}
	return -1
}

// providerID builds prefix/providers/Ns/t1/n1/t2/n2 from a type and names.
func providerID(prefix, typ string, names []string) (string, error) {
	segs := strings.Split(strings.Trim(typ, "/"), "/")
	if len(segs) < 2 {
		return "", errorf("the resource type '%s' must contain a namespace and a type, as in 'Microsoft.Network/virtualNetworks'", typ)
	}
	var nameSegs []string
	for _, n := range names {
		nameSegs = append(nameSegs, strings.Split(strings.Trim(n, "/"), "/")...)
	}
	if len(nameSegs) != len(segs)-1 {
		return "", errorf("unable to evaluate the resource id of type '%s': it has %d type segment(s) after the namespace but %d name segment(s) were given", typ, len(segs)-1, len(nameSegs))
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("/providers/")
	b.WriteString(segs[0])
	for i, t := range segs[1:] {
		b.WriteString("/" + t + "/" + nameSegs[i])
	}
	return b.String(), nil
}

// fnReference is reference(resourceNameOrId, [apiVersion], ['Full']).
func fnReference(s *scope, _ string, a []any) (any, error) {
	if s.noResource {
		return nil, errorf("the template function 'reference' is not expected at this location: it can be used in resource properties and outputs only")
	}
	target, err := argString(a, 0)
	if err != nil {
		return nil, err
	}
	req := ReferenceRequest{}
	if len(a) > 1 {
		if req.APIVersion, err = argString(a, 1); err != nil {
			return nil, err
		}
	}
	if len(a) > 2 {
		full, err := argString(a, 2)
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(full, "full") {
			return nil, errorf("the third argument must be 'Full', not '%s'", full)
		}
		req.Full = true
	}
	r, err := s.expandedTarget(target)
	if err != nil {
		return nil, err
	}
	if r != nil {
		req.ResourceID = r.ID
		req.Resource = r
		if req.APIVersion == "" {
			req.APIVersion = r.APIVersion
		}
	} else {
		req.ResourceID = target
		if req.APIVersion == "" {
			return nil, errorf("the api-version is required to reference '%s', which is not deployed by this template", target)
		}
	}
	if !s.runtime {
		return nil, errRuntime
	}
	if s.st.env.Reference == nil {
		return nil, errorf("the resource '%s' can't be referenced: no resource resolver is configured", req.ResourceID)
	}
	v, err := s.st.env.Reference(s.ctx, req)
	if err != nil {
		return nil, &EvalError{Msg: fmt.Sprintf("reference('%s') failed", req.ResourceID), Err: err}
	}
	return Normalize(v), nil
}

// expandedTarget resolves the target of reference() or list*() among the
// template's resources. Resource names, types, conditions and copy counts are
// evaluated before any resource exists: there it answers errRuntime.
func (s *scope) expandedTarget(target string) (*Resource, error) {
	if !s.st.expanded {
		return nil, errRuntime
	}
	return s.st.resolveTarget(target)
}

// typedIDParts reads the string arguments of resourceId() or
// subscriptionResourceId() and finds the resource type among the first
// maxIndex+1 of them; badType is the error when it is not there.
func typedIDParts(a []any, maxIndex int, badType string) ([]string, int, error) {
	parts, err := allStrings(a)
	if err != nil {
		return nil, 0, err
	}
	ti := typeArgIndex(parts)
	if ti < 0 || ti > maxIndex {
		return nil, 0, errorf("%s", badType)
	}
	return parts, ti, nil
}

// fnList is every list*() function: listKeys(resourceId, apiVersion, [body]).
func fnList(s *scope, name string, a []any) (any, error) {
	if s.noResource {
		return nil, errorf("the template function '%s' is not expected at this location: it can be used in resource properties and outputs only", name)
	}
	target, err := argString(a, 0)
	if err != nil {
		return nil, err
	}
	apiVersion, err := argString(a, 1)
	if err != nil {
		return nil, err
	}
	req := ListRequest{Function: name, APIVersion: apiVersion, ResourceID: target}
	if len(a) == 3 {
		req.Body = a[2]
	}
	r, err := s.expandedTarget(target)
	if err != nil {
		return nil, err
	}
	if r != nil {
		req.ResourceID = r.ID
		req.Resource = r
	}
	if !s.runtime {
		return nil, errRuntime
	}
	if s.st.env.List == nil {
		return nil, errorf("the function '%s' can't be evaluated: no resource resolver is configured", name)
	}
	v, err := s.st.env.List(s.ctx, req)
	if err != nil {
		return nil, &EvalError{Msg: fmt.Sprintf("%s('%s') failed", name, req.ResourceID), Err: err}
	}
	return Normalize(v), nil
}

// errRuntime marks an evaluation that needs deployed resources; Prepare
// defers such bodies to EvaluateBody.
var errRuntime = &EvalError{Msg: "the value needs deployed resources (reference or list functions) and is evaluated at execution time"}

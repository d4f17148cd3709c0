package deploy

import (
	"reflect"
	"sort"
	"strings"

	"github.com/vmssd/vmssd/internal/template"
)

// What-if change types (ARM's ChangeType and PropertyChangeType).
const (
	ChangeCreate   = "Create"
	ChangeDelete   = "Delete"
	ChangeModify   = "Modify"
	ChangeNoChange = "NoChange"
	ChangeIgnore   = "Ignore"
	ChangeDeploy   = "Deploy" // the result depends on runtime values (reference())
)

// PropertyChange is one property-level difference.
type PropertyChange struct {
	Path               string           `json:"path"`
	PropertyChangeType string           `json:"propertyChangeType"`
	Before             any              `json:"before,omitempty"`
	After              any              `json:"after,omitempty"`
	Children           []PropertyChange `json:"children,omitempty"`
}

// writeOnly are properties a GET never returns (secrets): a template that
// sets them is not a change by itself.
var writeOnly = map[string]bool{
	"adminpassword": true, "customdata": true, "protectedsettings": true, "secrets": true,
}

// ignoredTop are the template body's keys that are not resource state.
var ignoredTop = map[string]bool{"apiversion": true, "dependson": true, "copy": true, "condition": true, "comments": true, "resources": true}

// Diff compares a resource's current state (before, as GET returns it)
// with the body a template would PUT (after). PUT is a merge in vmssd, so
// only the properties the template sets are compared: a property the
// template does not set is not a change. It returns the property changes,
// sorted by path; none means NoChange.
func Diff(before, after map[string]any) []PropertyChange {
	return diffObj("", template.Normalize(before), template.Normalize(after), true)
}

func diffObj(prefix string, before, after any, top bool) []PropertyChange {
	bm, _ := before.(map[string]any)
	am, _ := after.(map[string]any)
	var out []PropertyChange
	for k, av := range am {
		lk := lower(k)
		if top && (ignoredTop[lk] || lk == "name" || lk == "type" || lk == "id") {
			continue
		}
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		bv, ok := lookupFold(bm, k)
		if !ok || bv == nil {
			if writeOnly[lk] || av == nil {
				continue
			}
			out = append(out, PropertyChange{Path: path, PropertyChangeType: ChangeCreate, After: av})
			continue
		}
		if _, isObj := av.(map[string]any); isObj {
			if _, bObj := bv.(map[string]any); bObj {
				if kids := diffObj(path, bv, av, false); len(kids) > 0 {
					out = append(out, kids...)
				}
				continue
			}
		}
		if !equalValues(bv, av) {
			out = append(out, PropertyChange{Path: path, PropertyChangeType: ChangeModify, Before: bv, After: av})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func lookupFold(m map[string]any, k string) (any, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, true
		}
	}
	return nil, false
}

// equalValues compares JSON values; objects inside arrays are compared on
// the keys the template sets, strings that differ only in case are equal
// for location-like values (ARM normalises them).
func equalValues(b, a any) bool {
	switch av := a.(type) {
	case map[string]any:
		return len(diffObj("", b, av, false)) == 0
	case []any:
		bv, ok := b.([]any)
		if !ok || len(bv) != len(av) {
			return false
		}
		for i := range av {
			if !equalValues(bv[i], av[i]) {
				return false
			}
		}
		return true
	case string:
		if bs, ok := b.(string); ok {
			return bs == av || (strings.EqualFold(bs, av) && !strings.ContainsAny(av, " "))
		}
		if b == nil {
			return false
		}
		// ARM coerces "5" into an int property.
		return reflect.DeepEqual(template.Normalize(template.CoerceTo(av, reflect.TypeOf(b))), b)
	}
	return reflect.DeepEqual(b, a)
}

package dashboard

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// CreateView is the "Create scale set" form: the choices it offers, all
// read through the API as the signed-in principal.
type CreateView struct {
	CSRF   string
	Subs   []string
	Groups []RGChoice
	Images []string // publisher:offer:sku:version
	Sizes  []string
	Modes  []string
	// Sub is the subscription the form's lists are for (the first the
	// principal can see, or the one of the set the page shows).
	Sub string
	// Back is the page a refusal returns to (the set page it is on, or
	// home).
	Back string
}

// RGChoice is an existing resource group in the form's picker.
type RGChoice struct{ Sub, Name string }

// Value is the picker's option value ("sub/rg").
func (g RGChoice) Value() string { return g.Sub + "/" + g.Name }

// createOptions reads what the create form offers: subscriptions, their
// resource groups, and for sub (or the first subscription) its platform
// images and VM sizes. A list the principal cannot read stays empty.
func (c client) createOptions(ctx context.Context, sub string) CreateView {
	v := CreateView{Modes: []string{"Manual", "Automatic", "Rolling"}}
	var subs struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		} `json:"value"`
	}
	if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions", resAPI), nil, nil, &subs); err != nil {
		return v
	}
	for _, s := range subs.Value {
		v.Subs = append(v.Subs, s.SubscriptionID)
		var rgs struct{ Value []struct{ Name string } }
		if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions/"+url.PathEscape(s.SubscriptionID)+"/resourcegroups", resAPI), nil, nil, &rgs); err == nil {
			for _, g := range rgs.Value {
				v.Groups = append(v.Groups, RGChoice{Sub: s.SubscriptionID, Name: g.Name})
			}
		}
	}
	if len(v.Subs) == 0 {
		return v
	}
	v.Sub = v.Subs[0]
	if sub != "" && slices.ContainsFunc(v.Subs, func(s string) bool { return strings.EqualFold(s, sub) }) {
		v.Sub = sub
	}
	loc := c.location(ctx, v.Sub)
	base := "/subscriptions/" + url.PathEscape(v.Sub) + "/providers/Microsoft.Compute/locations/" + url.PathEscape(loc)
	var sizes struct{ Value []struct{ Name string } }
	if _, err := c.call(ctx, http.MethodGet, withAPI(base+"/vmSizes", computeAPI), nil, nil, &sizes); err == nil {
		for _, s := range sizes.Value {
			v.Sizes = append(v.Sizes, s.Name)
		}
	}
	v.Images = c.platformImages(ctx, base+"/publishers", nil)
	return v
}

// platformImages walks publishers, offers, SKUs and versions below p into
// "publisher:offer:sku:version" names.
func (c client) platformImages(ctx context.Context, p string, prefix []string) []string {
	var names []struct{ Name string }
	if _, err := c.call(ctx, http.MethodGet, withAPI(p, computeAPI), nil, nil, &names); err != nil {
		return nil
	}
	next := []string{"/artifacttypes/vmimage/offers", "/skus", "/versions"}
	var out []string
	for _, n := range names {
		parts := append(slices.Clone(prefix), n.Name)
		if len(prefix) == len(next) {
			out = append(out, strings.Join(parts, ":"))
			continue
		}
		out = append(out, c.platformImages(ctx, p+"/"+url.PathEscape(n.Name)+next[len(prefix)], parts)...)
	}
	return out
}

// location is the subscription's first location (vmssd serves one).
func (c client) location(ctx context.Context, sub string) string {
	var locs struct{ Value []struct{ Name string } }
	if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions/"+url.PathEscape(sub)+"/locations", resAPI), nil, nil, &locs); err == nil && len(locs.Value) > 0 && locs.Value[0].Name != "" {
		return locs.Value[0].Name
	}
	return "local"
}

// createRequest is what the create form asks for.
type createRequest struct {
	Ref   SetRef
	NewRG bool // the resource group is to be created first
	Body  map[string]any
}

// parseCreate reads the create form into the target set and the PUT body
// (location set by the caller). Pure; what only the API can judge (the
// name's rules, the size, the image's existence, quota) is left to it.
func parseCreate(form url.Values) (createRequest, *armError) {
	val := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	bad := func(msg string) (createRequest, *armError) {
		return createRequest{}, &armError{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: msg}
	}
	req := createRequest{Ref: SetRef{Sub: val("sub"), Name: val("name")}}
	if g := val("new_rg"); g != "" {
		req.Ref.RG, req.NewRG = g, true
	} else if sub, rg, ok := strings.Cut(val("rg"), "/"); ok {
		req.Ref.Sub, req.Ref.RG = sub, rg
	}
	switch {
	case req.Ref.Sub == "" || strings.ContainsAny(req.Ref.Sub, "/?#"):
		return bad("choose a subscription")
	case req.Ref.RG == "":
		return bad("choose a resource group or type the name of a new one")
	case strings.ContainsAny(req.Ref.RG, "/?#"):
		return bad("the resource group name " + strconv.Quote(req.Ref.RG) + " may not contain '/', '?' or '#'")
	case req.Ref.Name == "":
		return bad("type the scale set's name")
	case strings.ContainsAny(req.Ref.Name, "/?#"):
		return bad("the scale set name " + strconv.Quote(req.Ref.Name) + " may not contain '/', '?' or '#'")
	}
	img := strings.Split(val("image"), ":")
	if len(img) != 4 || slices.Contains(img, "") {
		return bad("choose an image as publisher:offer:sku:version")
	}
	n, err := strconv.ParseInt(val("capacity"), 10, 64)
	if err != nil || n < 0 {
		return bad("the instance count must be a whole number of instances")
	}
	if val("size") == "" {
		return bad("choose a VM size")
	}
	mode := cmp.Or(val("mode"), "Manual")
	prefix := computerPrefix(req.Ref.Name)
	req.Body = map[string]any{
		"sku": map[string]any{"name": val("size"), "capacity": n},
		"properties": map[string]any{
			"upgradePolicy": map[string]any{"mode": mode},
			"virtualMachineProfile": map[string]any{
				"osProfile": map[string]any{"computerNamePrefix": prefix, "adminUsername": "azureuser"},
				"storageProfile": map[string]any{
					"imageReference": map[string]any{"publisher": img[0], "offer": img[1], "sku": img[2], "version": img[3]},
				},
			},
		},
	}
	return req, nil
}

// computerPrefix derives a computer name prefix from the set's name: its
// letters, digits and hyphens, at most 9, starting with a letter or digit
// ("vm" when nothing is left). Pure.
func computerPrefix(name string) string {
	var b strings.Builder
	for _, r := range name {
		if b.Len() == 9 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' && b.Len() > 0 {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "vm"
	}
	return b.String()
}

// createSet creates a scale set (and a new resource group if the form
// names one) through the API as the signed-in principal. Success opens the
// new set; a refusal goes back to the form with the ARM error.
func (d *Dashboard) createSet(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	_ = r.ParseForm()
	req, perr := parseCreate(r.PostForm)
	what := "create scale set " + strings.TrimSpace(r.PostFormValue("name"))
	fail := func(ref SetRef, err error) {
		id := d.record(s, ref, what, err)
		back := "/?status=" + strconv.FormatInt(id, 10)
		if b := r.PostFormValue("back"); strings.HasPrefix(b, "/ui/set?") {
			back = b + "&status=" + strconv.FormatInt(id, 10)
		}
		http.Redirect(w, r, back+"#create-h", http.StatusSeeOther)
	}
	if perr != nil {
		fail(SetRef{Sub: r.PostFormValue("sub"), RG: r.PostFormValue("rg"), Name: r.PostFormValue("name")}, perr)
		return
	}
	c := d.client(s)
	loc := c.location(ctx, req.Ref.Sub)
	if req.NewRG {
		rgPath := "/subscriptions/" + url.PathEscape(req.Ref.Sub) + "/resourcegroups/" + url.PathEscape(req.Ref.RG)
		if _, err := c.call(ctx, http.MethodPut, withAPI(rgPath, resAPI), nil, map[string]any{"location": loc}, nil); err != nil {
			what = "create resource group " + req.Ref.RG + " for " + what
			fail(req.Ref, err)
			return
		}
		d.record(s, req.Ref, "create resource group "+req.Ref.RG, nil)
	}
	req.Body["location"] = loc
	hdr := http.Header{"If-None-Match": {"*"}} // never overwrite an existing set
	if _, err := c.call(ctx, http.MethodPut, withAPI(req.Ref.path(), computeAPI), hdr, req.Body, nil); err != nil {
		fail(req.Ref, err)
		return
	}
	d.done(w, r, s, req.Ref, what, nil)
}

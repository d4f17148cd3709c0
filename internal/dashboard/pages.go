package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"whenp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": func(ids []string) string { return strings.Join(ids, ",") },
	"domain": func(csrf string, ref SetRef, scope string, n int) domainActions {
		label := "update domain"
		if scope == "fd" {
			label = "fault domain"
		}
		return domainActions{CSRF: csrf, Ref: ref, Scope: scope, Domain: n, Label: fmt.Sprintf("%s %d", label, n)}
	},
	"add4":     func(a, b, c, d int) int { return a + b + c + d },
	"active":   func(r *rolloutStatus) bool { return r != nil && r.Active() },
	"awaiting": func(r *rolloutStatus) bool { return r != nil && r.Active() && r.Properties.Vmssd.AwaitingApproval },
	"ids": func(ids []int64) string {
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = strconv.FormatInt(id, 10)
		}
		return strings.Join(s, ", ")
	},
}

// home lists the scale sets the principal can see.
func (d *Dashboard) home(w http.ResponseWriter, r *http.Request, s *session, op bool) {
	c := d.client(s)
	sets, err := c.listSets(r.Context())
	cv := c.createOptions(r.Context(), "")
	cv.CSRF = s.csrf
	pd := pageData{Title: "Scale sets", Operator: op, Body: HomeView{Groups: groupSets(sets), Create: cv}}
	if err != nil {
		pd.Error = err.Error()
	}
	d.page(w, r, http.StatusOK, "home", s, pd)
}

// HomeView is the home page: the picker and the create form.
type HomeView struct {
	Groups []Group
	Create CreateView
}

// Group is a resource group's scale sets in the picker.
type Group struct {
	Sub, RG string
	Sets    []SetRef
}

func groupSets(sets []SetRef) []Group {
	sort.Slice(sets, func(i, j int) bool { return strings.ToLower(sets[i].String()) < strings.ToLower(sets[j].String()) })
	var out []Group
	for _, s := range sets {
		if n := len(out); n > 0 && strings.EqualFold(out[n-1].Sub, s.Sub) && strings.EqualFold(out[n-1].RG, s.RG) {
			out[n-1].Sets = append(out[n-1].Sets, s)
			continue
		}
		out = append(out, Group{Sub: s.Sub, RG: s.RG, Sets: []SetRef{s}})
	}
	return out
}

type domainActions struct {
	CSRF   string
	Ref    SetRef
	Scope  string
	Domain int
	Label  string
}

func refOf(r *http.Request) SetRef {
	if pick := r.URL.Query().Get("pick"); pick != "" && r.Method == http.MethodGet {
		if q, err := url.ParseQuery(pick); err == nil {
			return SetRef{Sub: q.Get("sub"), RG: q.Get("rg"), Name: q.Get("name")}
		}
	}
	get := func(k string) string {
		if r.Method == http.MethodPost {
			return r.PostFormValue(k)
		}
		return r.URL.Query().Get(k)
	}
	return SetRef{Sub: get("sub"), RG: get("rg"), Name: get("name")}
}

// SetView is the scale set page.
type SetView struct {
	Ref                                 SetRef
	Query                               string
	Groups                              []Group
	Location                            string
	State                               string
	ETag                                string
	Capacity                            int64
	Size                                string
	Version                             string
	URI                                 string
	Image                               string
	Mode                                string
	Batch                               string
	Unhealthy, UnhealthyUpgraded, Pause string
	Approval                            string
	Tags                                string
	Modes                               []string
	Approvals                           []string
	Heatmap                             template.HTML
	Rollout                             template.HTML
	LBs                                 []LBView
	Create                              CreateView
}

func (d *Dashboard) setPage(w http.ResponseWriter, r *http.Request, s *session, op bool) {
	ctx := r.Context()
	c := d.client(s)
	ref := refOf(r)
	if !ref.valid() {
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: op, Error: "Choose a scale set."})
		return
	}
	set, etag, err := c.getSet(ctx, ref)
	if err != nil {
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: op, Error: err.Error()})
		return
	}
	sets, _ := c.listSets(ctx)
	v := SetView{Ref: ref, Query: ref.Query(), Groups: groupSets(sets), ETag: etag, Location: deref(set.Location),
		Modes: []string{"Manual", "Automatic", "Rolling"}, Approvals: []string{"none", "firstBatch", "eachBatch"}}
	fillModel(&v, set)
	v.Create = c.createOptions(ctx, ref.Sub)
	v.Create.CSRF, v.Create.Back = s.csrf, "/ui/set?"+ref.Query()
	hm, ro, err := d.fragments(ctx, c, ref, s.csrf)
	if err != nil {
		d.page(w, r, http.StatusInternalServerError, "error", s, pageData{Title: "Error", Operator: op, Error: err.Error()})
		return
	}
	v.Heatmap, v.Rollout = hm, ro
	if ids := lbIDs(set); len(ids) > 0 {
		if cells, err := c.cells(ctx, ref); err == nil {
			v.LBs = d.lbViews(ctx, c, set, cells)
		}
	}
	d.page(w, r, http.StatusOK, "set", s, pageData{Title: ref.Name, Operator: op, Body: v})
}

// fillModel reads the model panel's fields from the wire model. Pure.
func fillModel(v *SetView, set *armcompute.VirtualMachineScaleSet) {
	if set.SKU != nil {
		v.Size = deref(set.SKU.Name)
		if set.SKU.Capacity != nil {
			v.Capacity = *set.SKU.Capacity
		}
	}
	tags := map[string]string{}
	for k, val := range set.Tags {
		if val != nil {
			tags[k] = *val
		}
	}
	v.Approval = cmp.Or(tags["vmssd.rolling.approval"], "none")
	b, _ := json.Marshal(tags)
	v.Tags = string(b)
	p := set.Properties
	if p == nil {
		return
	}
	v.State = deref(p.ProvisioningState)
	if up := p.UpgradePolicy; up != nil {
		v.Mode = deref(up.Mode)
		if rp := up.RollingUpgradePolicy; rp != nil {
			v.Batch = itoa(rp.MaxBatchInstancePercent)
			v.Unhealthy = itoa(rp.MaxUnhealthyInstancePercent)
			v.UnhealthyUpgraded = itoa(rp.MaxUnhealthyUpgradedInstancePercent)
			v.Pause = deref(rp.PauseTimeBetweenBatches)
		}
	}
	if vp := p.VirtualMachineProfile; vp != nil && vp.StorageProfile != nil {
		if ir := vp.StorageProfile.ImageReference; ir != nil {
			v.Version = deref(ir.Version)
			v.Image = deref(ir.Publisher) + ":" + deref(ir.Offer) + ":" + deref(ir.SKU)
			if ir.ID != nil {
				v.Image = deref(ir.ID)
			}
		}
		if od := vp.StorageProfile.OSDisk; od != nil && od.Image != nil {
			v.URI = deref(od.Image.URI)
			v.Image = "custom"
		}
	}
}

func itoa(p *int32) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}

// RolloutView is the rollout panel.
type RolloutView struct {
	Ref     SetRef
	CSRF    string
	Latest  *rolloutStatus
	History []historyItem
	Chart   Chart
}

type rolloutStatus struct {
	Properties struct {
		Policy        *armcompute.RollingUpgradePolicy `json:"policy"`
		RunningStatus struct {
			Code           string
			StartTime      *time.Time
			LastAction     string
			LastActionTime *time.Time
		} `json:"runningStatus"`
		Progress struct {
			SuccessfulInstanceCount, FailedInstanceCount, InProgressInstanceCount, PendingInstanceCount int
		} `json:"progress"`
		Error *struct{ Code, Message string } `json:"error"`
		Vmssd struct {
			Phase            string
			Batches          int
			CurrentBatch     []int64
			UpdateDomain     *int
			PauseUntil       *time.Time
			AwaitingApproval bool
			Approvals        int
			Approval         string
			TargetImage      *struct{ Version, ExactVersion string }
			FailedInstances  []int64
		} `json:"vmssd"`
	} `json:"properties"`
}

// Active reports whether the rollout is still running.
func (r *rolloutStatus) Active() bool { return r.Properties.RunningStatus.Code == "RollingForward" }

type historyItem struct {
	Properties struct {
		RunningStatus struct {
			Code      string
			StartTime *time.Time
			EndTime   *time.Time
		} `json:"runningStatus"`
		Progress struct {
			SuccessfulInstanceCount, FailedInstanceCount, InProgressInstanceCount, PendingInstanceCount int
		} `json:"progress"`
		Error                *struct{ Code, Message string } `json:"error"`
		StartedBy            string                          `json:"startedBy"`
		TargetImageReference *struct{ Version, ExactVersion string }
	} `json:"properties"`
}

// RenderHeatmap renders the heatmap fragment for cells (benchmarks and
// tests).
func (d *Dashboard) RenderHeatmap(cells []Cell) (string, error) {
	var b strings.Builder
	err := d.tmpl.ExecuteTemplate(&b, "heatmap", struct {
		CSRF string
		Ref  SetRef
		Grid Grid
	}{"-", SetRef{Sub: "s", RG: "rg", Name: "web"}, BuildGrid(cells)})
	return b.String(), err
}

// fragments renders the heatmap and the rollout panel (the parts SSE
// replaces).
func (d *Dashboard) fragments(ctx context.Context, c client, ref SetRef, csrf string) (template.HTML, template.HTML, error) {
	cells, err := c.cells(ctx, ref)
	if err != nil {
		return "", "", err
	}
	g := BuildGrid(cells)
	samples := d.timeline.add(strings.ToLower(ref.String()), d.opts.Now(), g.Versions)
	var hm, ro strings.Builder
	if err := d.tmpl.ExecuteTemplate(&hm, "heatmap", struct {
		CSRF string
		Ref  SetRef
		Grid Grid
	}{csrf, ref, g}); err != nil {
		return "", "", fmt.Errorf("dashboard: heatmap: %w", err)
	}
	rv := RolloutView{Ref: ref, CSRF: csrf, Chart: BuildChart(samples, 320, 80)}
	var latest rolloutStatus
	if _, err := c.call(ctx, http.MethodGet, withAPI(ref.path()+"/rollingUpgrades/latest", computeAPI), nil, nil, &latest); err == nil {
		rv.Latest = &latest
	}
	var hist struct{ Value []historyItem }
	if _, err := c.call(ctx, http.MethodGet, withAPI(ref.path()+"/osUpgradeHistory", computeAPI), nil, nil, &hist); err == nil {
		rv.History = hist.Value
		if len(rv.History) > 10 {
			rv.History = rv.History[:10]
		}
	}
	if err := d.tmpl.ExecuteTemplate(&ro, "rollout", rv); err != nil {
		return "", "", fmt.Errorf("dashboard: rollout: %w", err)
	}
	return template.HTML(hm.String()), template.HTML(ro.String()), nil
}

// done records an action's outcome in the activity log and the session's
// status line, then sends the browser back to the set.
func (d *Dashboard) done(w http.ResponseWriter, r *http.Request, s *session, ref SetRef, what string, err error) {
	id := d.record(s, ref, what, err)
	http.Redirect(w, r, "/ui/set?"+ref.Query()+"&status="+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

// record adds an action's outcome to the activity log, with the status
// line the session sees, and returns its id.
func (d *Dashboard) record(s *session, ref SetRef, what string, err error) int64 {
	e := Entry{Time: d.opts.Now(), Who: s.identity.ClientID, Sub: ref.Sub, Action: what, Target: ref.String(), OK: err == nil}
	msg := what + ": accepted"
	if err != nil {
		var ae *armError
		if errors.As(err, &ae) {
			e.Code, e.Message = ae.Code, ae.Message
		} else {
			e.Code, e.Message = "Error", err.Error()
		}
		msg = what + " failed: " + e.Code + ": " + e.Message
		if e.Code == "PreconditionFailed" {
			msg = what + " failed: conflict: the scale set was changed by someone else since this page loaded (" + e.Code + "). Nothing was overwritten; review the current model below and apply your change again."
		}
	}
	e.Status = msg
	return d.activity.add(e)
}

func (d *Dashboard) scale(w http.ResponseWriter, r *http.Request, s *session) {
	ref := refOf(r)
	n, err := strconv.ParseInt(strings.TrimSpace(r.PostFormValue("capacity")), 10, 64)
	if err != nil || n < 0 {
		d.done(w, r, s, ref, "scale", &armError{Status: 400, Code: "InvalidParameter", Message: "capacity must be a whole number of instances"})
		return
	}
	_, err = d.client(s).call(r.Context(), http.MethodPatch, withAPI(ref.path(), computeAPI), nil,
		map[string]any{"sku": map[string]any{"capacity": n}}, nil)
	d.done(w, r, s, ref, fmt.Sprintf("scale to %d", n), err)
}

// modelPatch builds the PATCH body for the model panel: only the fields
// the user changed from what the page showed. Pure.
func modelPatch(form url.Values) (map[string]any, []string) {
	changed := func(k string) bool { return strings.TrimSpace(form.Get(k)) != form.Get("orig_"+k) }
	val := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	body := map[string]any{}
	props := map[string]any{}
	var what []string
	if changed("size") {
		body["sku"] = map[string]any{"name": val("size")}
		what = append(what, "size="+val("size"))
	}
	if changed("uri") && val("uri") != "" {
		props["virtualMachineProfile"] = map[string]any{"storageProfile": map[string]any{"osDisk": map[string]any{"image": map[string]any{"uri": val("uri")}}}}
		what = append(what, "uri="+val("uri"))
	} else if changed("version") {
		props["virtualMachineProfile"] = map[string]any{"storageProfile": map[string]any{"imageReference": map[string]any{"version": val("version")}}}
		what = append(what, "version="+val("version"))
	}
	up := map[string]any{}
	if changed("mode") {
		up["mode"] = val("mode")
		what = append(what, "mode="+val("mode"))
	}
	rp := map[string]any{}
	for _, f := range []struct{ form, wire string }{
		{"batch", "maxBatchInstancePercent"}, {"unhealthy", "maxUnhealthyInstancePercent"},
		{"unhealthyUpgraded", "maxUnhealthyUpgradedInstancePercent"},
	} {
		if changed(f.form) && val(f.form) != "" {
			n, err := strconv.Atoi(val(f.form))
			if err != nil {
				rp[f.wire] = val(f.form) // the API refuses it with its own message
			} else {
				rp[f.wire] = n
			}
			what = append(what, f.wire+"="+val(f.form))
		}
	}
	if changed("pause") && val("pause") != "" {
		rp["pauseTimeBetweenBatches"] = val("pause")
		what = append(what, "pause="+val("pause"))
	}
	if len(rp) > 0 {
		up["rollingUpgradePolicy"] = rp
	}
	if len(up) > 0 {
		props["upgradePolicy"] = up
	}
	if len(props) > 0 {
		body["properties"] = props
	}
	if changed("approval") {
		tags := map[string]string{}
		_ = json.Unmarshal([]byte(form.Get("tags")), &tags)
		if a := val("approval"); a == "none" {
			delete(tags, "vmssd.rolling.approval")
		} else {
			tags["vmssd.rolling.approval"] = a
		}
		body["tags"] = tags
		what = append(what, "approval="+val("approval"))
	}
	return body, what
}

func (d *Dashboard) updateModel(w http.ResponseWriter, r *http.Request, s *session) {
	ref := refOf(r)
	_ = r.ParseForm()
	body, what := modelPatch(r.PostForm)
	if len(what) == 0 {
		id := d.activity.add(Entry{Time: d.opts.Now(), Who: s.identity.ClientID, Sub: ref.Sub, Action: "update model (unchanged, nothing sent)", Target: ref.String(), OK: true,
			Status: "update model: the model is unchanged, nothing to send"})
		http.Redirect(w, r, "/ui/set?"+ref.Query()+"&status="+strconv.FormatInt(id, 10), http.StatusSeeOther)
		return
	}
	hdr := http.Header{"If-Match": {r.PostFormValue("etag")}}
	_, err := d.client(s).call(r.Context(), http.MethodPatch, withAPI(ref.path(), computeAPI), hdr, body, nil)
	d.done(w, r, s, ref, "update model ("+strings.Join(what, ", ")+")", err)
}

// wireAction maps the dashboard's action names to the API's.
var wireAction = map[string]string{
	"start": "start", "restart": "restart", "powerOff": "powerOff", "deallocate": "deallocate",
	"reimage": "reimage", "upgrade": "manualupgrade", "delete": "delete",
}

func (d *Dashboard) action(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	ref := refOf(r)
	c := d.client(s)
	act, scope := r.PostFormValue("action"), r.PostFormValue("scope")
	if (act == "protect" || act == "unprotect") && scope == "instance" {
		id := strings.TrimSpace(r.PostFormValue("instance"))
		on := act == "protect"
		_, err := c.call(ctx, http.MethodPut, withAPI(ref.path()+"/virtualMachines/"+url.PathEscape(id), computeAPI), nil,
			map[string]any{"properties": map[string]any{"protectionPolicy": map[string]any{"protectFromScaleIn": on, "protectFromScaleSetActions": on}}}, nil)
		d.done(w, r, s, ref, act+" instance "+id, err)
		return
	}
	wire, ok := wireAction[act]
	if !ok {
		d.done(w, r, s, ref, "action "+act, &armError{Status: 400, Code: "InvalidParameter", Message: "unknown action"})
		return
	}
	var ids []string
	what := act
	switch scope {
	case "ud", "fd":
		n, err := strconv.Atoi(r.PostFormValue("domain"))
		if err != nil {
			d.done(w, r, s, ref, act, &armError{Status: 400, Code: "InvalidParameter", Message: "bad domain"})
			return
		}
		cells, err := c.cells(ctx, ref)
		if err != nil {
			d.done(w, r, s, ref, act, err)
			return
		}
		for _, cell := range cells {
			if scope == "ud" && cell.UD == n || scope == "fd" && cell.FD == n {
				ids = append(ids, cell.ID)
			}
		}
		what = fmt.Sprintf("%s %s %d (instances %s)", act, strings.ToUpper(scope), n, strings.Join(ids, ","))
		if len(ids) == 0 {
			d.done(w, r, s, ref, what, &armError{Status: 400, Code: "InvalidParameter", Message: "the domain has no instances"})
			return
		}
	case "instance":
		id := strings.TrimSpace(r.PostFormValue("instance"))
		if id == "" {
			d.done(w, r, s, ref, act, &armError{Status: 400, Code: "InvalidParameter", Message: "choose an instance"})
			return
		}
		ids = []string{id}
		what = act + " instance " + id
	default: // the whole set
		ids = []string{"*"}
		what = act + " all instances"
		if wire == "manualupgrade" || wire == "delete" {
			cells, err := c.cells(ctx, ref)
			if err != nil {
				d.done(w, r, s, ref, what, err)
				return
			}
			ids = ids[:0]
			for _, cell := range cells {
				ids = append(ids, cell.ID)
			}
			slices.SortFunc(ids, cmpID)
		}
	}
	_, err := c.call(ctx, http.MethodPost, withAPI(ref.path()+"/"+wire, computeAPI), nil, map[string]any{"instanceIds": ids}, nil)
	d.done(w, r, s, ref, what, err)
}

// bootLog shows an instance's console (boot diagnostics).
func (d *Dashboard) bootLog(w http.ResponseWriter, r *http.Request, s *session, op bool) {
	ref := refOf(r)
	id := strings.TrimSpace(r.URL.Query().Get("instance"))
	if !ref.valid() || id == "" || strings.ContainsAny(id, "/?#") {
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: op, Error: "Choose an instance."})
		return
	}
	resp, err := d.client(s).call(r.Context(), http.MethodGet, withAPI(ref.path()+"/virtualMachines/"+url.PathEscape(id)+"/bootDiagnostics/serialConsole", computeAPI), nil, nil, nil)
	pd := pageData{Title: "Boot log of " + ref.Name + " instance " + id, Operator: op, Body: struct {
		Ref  SetRef
		Text string
	}{ref, ""}}
	if err != nil {
		pd.Error = err.Error()
	} else {
		pd.Body = struct {
			Ref  SetRef
			Text string
		}{ref, string(resp.Body)}
	}
	d.page(w, r, http.StatusOK, "bootlog", s, pd)
}

func (d *Dashboard) rollout(w http.ResponseWriter, r *http.Request, s *session) {
	ref := refOf(r)
	paths := map[string]string{"start": "/osRollingUpgrade", "cancel": "/rollingUpgrades/cancel", "approve": "/rollingUpgrades/approve"}
	op := r.PostFormValue("op")
	p, ok := paths[op]
	if !ok {
		d.done(w, r, s, ref, "rolling upgrade "+op, &armError{Status: 400, Code: "InvalidParameter", Message: "unknown rolling upgrade action"})
		return
	}
	_, err := d.client(s).call(r.Context(), http.MethodPost, withAPI(ref.path()+p, computeAPI), nil, nil, nil)
	d.done(w, r, s, ref, "rolling upgrade: "+op, err)
}

func (d *Dashboard) activityPage(w http.ResponseWriter, r *http.Request, s *session, op bool) {
	who := s.identity.ClientID
	list := d.activity.list(func(e Entry) bool { return op || strings.EqualFold(e.Who, who) })
	d.page(w, r, http.StatusOK, "activity", s, pageData{Title: "Activity", Operator: op, Body: list})
}

// Table is a generic operator page: rows of columns.
type Table struct {
	Heading string
	Cols    []string
	Rows    [][]string
}

func (d *Dashboard) adminPage(w http.ResponseWriter, r *http.Request, s *session, which string) {
	ctx := r.Context()
	c := d.client(s)
	var t Table
	var err error
	switch which {
	case "images":
		t, err = d.imagesTable(ctx, c)
	case "quotas":
		t, err = quotasTable(ctx, c)
	case "hosts":
		t, err = d.hostsTable(ctx)
	default:
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: true, Error: "There is no such page."})
		return
	}
	pd := pageData{Title: t.Heading, Operator: true, Body: t}
	if err != nil {
		pd.Error = err.Error()
	}
	d.page(w, r, http.StatusOK, "table", s, pd)
}

func (d *Dashboard) imagesTable(ctx context.Context, c client) (Table, error) {
	t := Table{Heading: "Platform images", Cols: []string{"Publisher", "Offer", "SKU", "Version", "OS", "Artifact"}}
	sets := struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		}
	}{}
	if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions", resAPI), nil, nil, &sets); err != nil || len(sets.Value) == 0 {
		return t, err
	}
	var out struct{ Value []map[string]any }
	p := "/subscriptions/" + url.PathEscape(sets.Value[0].SubscriptionID) + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage"
	if _, err := c.call(ctx, http.MethodGet, withAPI(p, adminAPI), nil, nil, &out); err != nil {
		return t, err
	}
	for _, v := range out.Value {
		props, _ := v["properties"].(map[string]any)
		id, _ := v["id"].(string)
		parts := strings.Split(id, "/")
		get := func(k string) string {
			for i := 0; i+1 < len(parts); i++ {
				if strings.EqualFold(parts[i], k) {
					return parts[i+1]
				}
			}
			return ""
		}
		t.Rows = append(t.Rows, []string{get("publishers"), get("offers"), get("skus"), get("versions"), str(props, "osType"), str(props, "digest")})
	}
	return t, nil
}

func quotasTable(ctx context.Context, c client) (Table, error) {
	t := Table{Heading: "Quotas", Cols: []string{"Subscription", "vCPUs used / quota", "Instances used / quota", "Scale sets used / quota", "Storage bytes used / quota"}}
	var out struct{ Value []map[string]any }
	if _, err := c.call(ctx, http.MethodGet, withAPI("/providers/vmssd.Admin/quotas", adminAPI), nil, nil, &out); err != nil {
		return t, err
	}
	for _, v := range out.Value {
		u, _ := v["usage"].(map[string]any)
		pair := func(used, quota string) string {
			return cmp.Or(str(u, used), "0") + " / " + cmp.Or(str(v, quota), "0")
		}
		t.Rows = append(t.Rows, []string{str(v, "subscriptionId"), pair("vcpus", "vcpus"), pair("instances", "instances"),
			pair("scaleSets", "scaleSets"), pair("storageBytes", "storageBytes")})
	}
	return t, nil
}

func str(m map[string]any, k string) string {
	if m == nil {
		return ""
	}
	if v, ok := m[k]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

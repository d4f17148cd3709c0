package e2e

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// scrape is a parsed /metrics exposition.
type scrape map[string]*dto.MetricFamily

func parseExposition(t testing.TB, r io.Reader) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return mfs
}

// scrapeAPI GETs /metrics on the API listener with token ("" sends none)
// and returns the status, and the parsed exposition on 200.
func scrapeAPI(t testing.TB, e *testenv.Env, method, token string) (int, http.Header, scrape) {
	t.Helper()
	req, err := http.NewRequest(method, e.Server.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text exposition", ct)
	}
	return resp.StatusCode, resp.Header, parseExposition(t, resp.Body)
}

// find returns the metric of family name whose labels include want, or nil.
func (s scrape) find(name string, want map[string]string) *dto.Metric {
	mf := s[name]
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if hasLabels(m, want) {
			return m
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// value is a gauge's or counter's value, or a histogram's sample count
// (-1 when the series is missing).
func (s scrape) value(name string, labels map[string]string) float64 {
	m := s.find(name, labels)
	switch {
	case m == nil:
		return -1
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

func setLabels(e *testenv.Env, rg, name string, kv ...string) map[string]string {
	l := map[string]string{"subscription": e.Sub, "resource_group": rg, "scale_set": name}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

// TestMetrics: /metrics on the API listener is for operators only; after a
// scale set is created and healthy it reports its instances by power and
// health state exactly as the API's instance view counts them, the
// create operation's duration, reconciles and queue waits, HTTP requests by
// route template (never a raw path), and the Go runtime and process.
func TestMetrics(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	const rg, name = "rgmetrics", "web"

	// Authentication first: nothing without an operator token.
	code, hdr, _ := scrapeAPI(t, e, http.MethodGet, "")
	if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("anonymous scrape: %d (WWW-Authenticate %q), want 401 with a Bearer challenge", code, hdr.Get("WWW-Authenticate"))
	}
	if code, _, _ := scrapeAPI(t, e, http.MethodGet, "not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("scrape with a bad token: %d, want 401", code)
	}
	r := e.Do(http.MethodPut, "/providers/vmssd.Admin/principals/metrics-tenant?api-version=2024-01-01",
		map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", r.Status, r.Body)
	}
	tenant := e.IssueToken("metrics-tenant", auth.RoleTenant)
	if code, _, _ := scrapeAPI(t, e, http.MethodGet, tenant); code != http.StatusNotFound {
		t.Fatalf("tenant scrape: %d, want 404 as for every operator-only path", code)
	}
	if code, _, _ := scrapeAPI(t, e, http.MethodPost, e.Token); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /metrics: %d, want 405", code)
	}

	e.CreateRG(rg)
	r = e.Do(http.MethodPut, e.VMSSPath(rg, name), testenv.VMSSBody(3, "1.0.0", "Manual"))
	if r.Status != http.StatusCreated {
		t.Fatalf("create scale set: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)
	waitHealthy(t, e, rg, name, 3, 90*time.Second)

	// Operation durations come from the store's watch: poll for the
	// create's completion.
	var s scrape
	testenv.Eventually(t, 10*time.Second, "the create operation in vmssd_operation_duration_seconds", func() bool {
		_, _, s = scrapeAPI(t, e, http.MethodGet, e.Token)
		return s.value("vmssd_operation_duration_seconds", map[string]string{"type": "vmss.put", "result": "Succeeded"}) == 1
	})
	if v := s.value("vmssd_operations_in_progress", map[string]string{"type": "vmss.put"}); v != 0 {
		t.Errorf("vmss.put in progress = %v, want 0", v)
	}
	op := s.find("vmssd_operation_duration_seconds", map[string]string{"type": "vmss.put", "result": "Succeeded"})
	if sum := op.GetHistogram().GetSampleSum(); sum <= 0 || sum > 90 {
		t.Errorf("create took %vs by the metric, want (0, 90]", sum)
	}

	// Instances by power and health state, per scale set.
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"vmssd_scale_set_capacity", nil, 3},
		{"vmssd_scale_set_instances_latest_model", nil, 3},
		{"vmssd_scale_set_instances_by_power_state", []string{"power_state", "running"}, 3},
		{"vmssd_scale_set_instances_by_power_state", []string{"power_state", "stopped"}, 0},
		{"vmssd_scale_set_instances_by_power_state", []string{"power_state", "deallocated"}, 0},
		{"vmssd_scale_set_instances_by_health_state", []string{"health_state", "healthy"}, 3},
		{"vmssd_scale_set_instances_by_health_state", []string{"health_state", "unhealthy"}, 0},
		{"vmssd_scale_set_instances_by_provisioning_state", []string{"provisioning_state", "succeeded"}, 3},
	} {
		if got := s.value(c.metric, setLabels(e, rg, name, c.labels...)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}

	// Stop one instance: the power gauges follow, and agree with the API's
	// own summary (PowerState/... and HealthState/... counts).
	mustAccepted(t, e.Do(http.MethodPost, e.VMSSPath(rg, name)+"/poweroff", map[string]any{"instanceIds": []string{"0"}}))
	testenv.Eventually(t, 60*time.Second, "one stopped instance in the metrics and the instance view", func() bool {
		_, _, s = scrapeAPI(t, e, http.MethodGet, e.Token)
		api := summary(t, e, rg, name)
		if s.value("vmssd_scale_set_instances_by_power_state", setLabels(e, rg, name, "power_state", "stopped")) != 1 || api["PowerState/stopped"] != 1 {
			return false
		}
		for _, p := range []string{"starting", "running", "stopping", "stopped", "deallocating", "deallocated", "unknown"} {
			if got := s.value("vmssd_scale_set_instances_by_power_state", setLabels(e, rg, name, "power_state", p)); got != float64(api["PowerState/"+p]) {
				t.Logf("power %s: metric %v, API %d", p, got, api["PowerState/"+p])
				return false
			}
		}
		for _, h := range []string{"initializing", "healthy", "unhealthy", "unknown"} {
			if got := s.value("vmssd_scale_set_instances_by_health_state", setLabels(e, rg, name, "health_state", h)); got != float64(api["HealthState/"+h]) {
				t.Logf("health %s: metric %v, API %d", h, got, api["HealthState/"+h])
				return false
			}
		}
		return true
	})
	if v := s.value("vmssd_scale_set_instances_by_health_state", setLabels(e, rg, name, "health_state", "healthy")); v != 2 {
		t.Errorf("healthy instances after a power off = %v, want 2", v)
	}

	// The controller's reconciles and queue waits.
	if v := s.value("vmssd_controller_reconcile_duration_seconds", map[string]string{"result": "success"}); v < 1 {
		t.Errorf("successful reconciles = %v, want at least 1", v)
	}
	if v := s.value("vmssd_controller_queue_wait_seconds", nil); v < 1 {
		t.Errorf("queue waits = %v, want at least 1", v)
	}
	if v := s.value("vmssd_controller_queue_depth", nil); v < 0 {
		t.Errorf("vmssd_controller_queue_depth missing")
	}

	// HTTP requests by route template and status.
	putRoute := "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}"
	for _, c := range []struct {
		method, route, code string
		want                float64
	}{
		{"PUT", putRoute, "201", 1},
		{"PUT", "/subscriptions/{sub}/resourceGroups/{rg}", "201", 1},
		{"POST", putRoute + "/{action}", "202", 1},
		{"PUT", "/providers/vmssd.Admin/principals/{id}", "201", 1},
		{"GET", "/metrics", "401", 2},
		{"GET", "/metrics", "404", 1},
		{"POST", "/metrics", "405", 1},
	} {
		l := map[string]string{"method": c.method, "route": c.route, "code": c.code}
		if got := s.value("vmssd_http_requests_total", l); got != c.want {
			t.Errorf("vmssd_http_requests_total%v = %v, want %v", l, got, c.want)
		}
	}
	if v := s.value("vmssd_http_requests_total", map[string]string{"method": "GET", "route": "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{op}", "code": "200"}); v < 1 {
		t.Errorf("operation polls counted %v times, want at least 1", v)
	}
	if v := s.value("vmssd_http_request_duration_seconds", map[string]string{"method": "PUT", "route": putRoute}); v != 1 {
		t.Errorf("PUT scale set durations observed %v, want 1", v)
	}
	// Bounded labels: no raw path (ids, names) in any route label.
	for _, m := range s["vmssd_http_requests_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "route" && (strings.Contains(lp.GetValue(), e.Sub) || strings.Contains(lp.GetValue(), rg)) {
				t.Errorf("route label %q holds a raw path", lp.GetValue())
			}
		}
	}

	// The Go runtime and the process.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_build_info"} {
		if s[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if v := s.value("vmssd_scale_sets", nil); v != 1 {
		t.Errorf("vmssd_scale_sets = %v, want 1", v)
	}

	// A deleted set leaves the per-set gauges.
	r = e.Do(http.MethodDelete, e.VMSSPath(rg, name), nil)
	if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)
	testenv.Eventually(t, 10*time.Second, "the delete in the metrics", func() bool {
		_, _, s = scrapeAPI(t, e, http.MethodGet, e.Token)
		return s.value("vmssd_operation_duration_seconds", map[string]string{"type": "vmss.delete", "result": "Succeeded"}) == 1
	})
	if m := s.find("vmssd_scale_set_instances_by_power_state", setLabels(e, rg, name)); m != nil {
		t.Errorf("deleted set still reported: %v", m)
	}
}

// summary is the API's statusesSummary of a scale set's instance view.
func summary(t testing.TB, e *testenv.Env, rg, name string) map[string]int {
	t.Helper()
	r := e.Do(http.MethodGet, e.VMSSPath(rg, name)+"/instanceView", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("instance view: %d %s", r.Status, r.Body)
	}
	var iv struct {
		VirtualMachine struct {
			StatusesSummary []struct {
				Code  string `json:"code"`
				Count int    `json:"count"`
			} `json:"statusesSummary"`
		} `json:"virtualMachine"`
	}
	if err := r.JSON(&iv); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range iv.VirtualMachine.StatusesSummary {
		out[c.Code] = c.Count
	}
	return out
}

// TestMetricsListener: --metrics-addr serves /metrics over plain HTTP
// without a token (and nothing else); it is off by default.
func TestMetricsListener(t *testing.T) {
	cfg := server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Store: "memory",
		NoDemoImages: true, VMs: "off", GuestBinary: os.Args[0], UnsandboxedProcessImages: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	s, err := server.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.MetricsURL, "http://127.0.0.1:") {
		t.Fatalf("MetricsURL %q", s.MetricsURL)
	}
	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get(s.MetricsURL)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", s.MetricsURL, code, body)
	}
	sc := parseExposition(t, strings.NewReader(string(body)))
	for _, name := range []string{"vmssd_scale_sets", "vmssd_controller_queue_depth", "go_goroutines"} {
		if sc[name] == nil {
			t.Errorf("%s missing from the metrics listener", name)
		}
	}
	if code, _ := get(strings.TrimSuffix(s.MetricsURL, "/metrics") + "/subscriptions"); code != http.StatusNotFound {
		t.Errorf("the metrics listener serves other paths: %d", code)
	}

	// Off by default: the testenv server has no metrics listener.
	e := testenv.Start(t, testenv.Options{Store: "memory"})
	if e.Server.MetricsURL != "" {
		t.Errorf("metrics listener on by default: %s", e.Server.MetricsURL)
	}
}

// metricsRollout is what the rollout test reads of rollingUpgrades/latest.
type metricsRollout struct {
	Properties struct {
		RunningStatus struct {
			Code string `json:"code"`
		} `json:"runningStatus"`
		Progress struct {
			Successful int `json:"successfulInstanceCount"`
			Failed     int `json:"failedInstanceCount"`
			InProgress int `json:"inProgressInstanceCount"`
			Pending    int `json:"pendingInstanceCount"`
		} `json:"progress"`
		Vmssd struct {
			Phase string `json:"phase"`
		} `json:"vmssd"`
	} `json:"properties"`
}

func getRollout(t testing.TB, e *testenv.Env, path string) metricsRollout {
	t.Helper()
	r := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil)
	var ro metricsRollout
	if r.Status != http.StatusOK {
		return ro
	}
	if err := r.JSON(&ro); err != nil {
		t.Fatalf("rollingUpgrades/latest: %v %s", err, r.Body)
	}
	return ro
}

// checkRolloutMetrics compares the rollout gauges of a scrape with
// rollingUpgrades/latest.
func checkRolloutMetrics(t testing.TB, e *testenv.Env, s scrape, rg, name string, ro metricsRollout) {
	t.Helper()
	p := ro.Properties.Progress
	for progress, want := range map[string]int{"successful": p.Successful, "failed": p.Failed, "in_progress": p.InProgress, "pending": p.Pending} {
		if got := s.value("vmssd_rollout_instances", setLabels(e, rg, name, "progress", progress)); got != float64(want) {
			t.Errorf("vmssd_rollout_instances{progress=%q} = %v, rollingUpgrades/latest says %d", progress, got, want)
		}
	}
	for _, st := range []string{"RollingForward", "Cancelled", "Completed", "Faulted"} {
		want := 0.0
		if st == ro.Properties.RunningStatus.Code {
			want = 1
		}
		if got := s.value("vmssd_rollout_state", setLabels(e, rg, name, "state", st)); got != want {
			t.Errorf("vmssd_rollout_state{state=%q} = %v, want %v (API: %s)", st, got, want, ro.Properties.RunningStatus.Code)
		}
	}
}

// TestMetricsRollout: the latest rolling upgrade of a scale set shows in
// the rollout gauges as rollingUpgrades/latest shows it: rolling forward,
// paused between its two batches, then completed.
func TestMetricsRollout(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	const rg, name = "rgrollout", "web"
	e.CreateRG(rg)
	path := e.VMSSPath(rg, name)
	body := testenv.VMSSBody(2, "1.0.0", "Rolling")
	body["properties"].(map[string]any)["upgradePolicy"].(map[string]any)["rollingUpgradePolicy"] = map[string]any{
		"maxBatchInstancePercent": 50, "pauseTimeBetweenBatches": "PT10S"}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, rg, name, 2, 60*time.Second)
	_, _, s := scrapeAPI(t, e, http.MethodGet, e.Token)
	if m := s.find("vmssd_rollout_state", setLabels(e, rg, name)); m != nil {
		t.Errorf("a set that never rolled out has rollout gauges: %v", m)
	}

	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "1.1.0"}}}}}))
	var ro metricsRollout
	defer func() {
		if t.Failed() {
			r := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil)
			t.Logf("rollingUpgrades/latest: %d %s", r.Status, r.Body)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "the rollout paused after its first batch", func() bool {
		ro = getRollout(t, e, path)
		if ro.Properties.RunningStatus.Code != "" && ro.Properties.RunningStatus.Code != "RollingForward" {
			t.Fatalf("the rollout ended %s before its pause: %+v", ro.Properties.RunningStatus.Code, ro)
		}
		return ro.Properties.Vmssd.Phase == "Paused"
	})
	_, _, s = scrapeAPI(t, e, http.MethodGet, e.Token)
	checkRolloutMetrics(t, e, s, rg, name, ro)
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"vmssd_rollout_phase", []string{"phase", "Paused"}, 1},
		{"vmssd_rollout_phase", []string{"phase", "Upgrading"}, 0},
		{"vmssd_rollout_instances", []string{"progress", "successful"}, 1},
		{"vmssd_rollout_instances", []string{"progress", "pending"}, 1},
		{"vmssd_rollout_instances_planned", nil, 2},
		{"vmssd_rollout_batches", nil, 1},
		{"vmssd_rollout_info", []string{"kind", "Model", "started_by", "User"}, 1},
		{"vmssd_scale_set_instances_latest_model", nil, 1},
	} {
		if got := s.value(c.metric, setLabels(e, rg, name, c.labels...)); got != c.want {
			t.Errorf("paused: %s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	if s.find("vmssd_rollout_end_time_seconds", setLabels(e, rg, name)) != nil {
		t.Error("vmssd_rollout_end_time_seconds set while rolling forward")
	}
	if v := s.value("vmssd_rollout_start_time_seconds", setLabels(e, rg, name)); v < float64(time.Now().Add(-5*time.Minute).Unix()) || v > float64(time.Now().Unix()+1) {
		t.Errorf("vmssd_rollout_start_time_seconds = %v, not a moment ago", v)
	}

	testenv.Eventually(t, 60*time.Second, "the rollout completed", func() bool {
		ro = getRollout(t, e, path)
		return ro.Properties.RunningStatus.Code == "Completed"
	})
	_, _, s = scrapeAPI(t, e, http.MethodGet, e.Token)
	checkRolloutMetrics(t, e, s, rg, name, ro)
	if v := s.value("vmssd_rollout_instances", setLabels(e, rg, name, "progress", "successful")); v != 2 {
		t.Errorf("successful instances after completion = %v, want 2", v)
	}
	if v := s.value("vmssd_rollout_phase", setLabels(e, rg, name, "phase", "Paused")); v != 0 {
		t.Errorf("phase Paused = %v after completion, want 0", v)
	}
	if v := s.value("vmssd_rollout_end_time_seconds", setLabels(e, rg, name)); v <= 0 {
		t.Errorf("vmssd_rollout_end_time_seconds = %v after completion", v)
	}
	if v := s.value("vmssd_scale_set_instances_latest_model", setLabels(e, rg, name)); v != 2 {
		t.Errorf("instances on the latest model = %v after completion, want 2", v)
	}
}

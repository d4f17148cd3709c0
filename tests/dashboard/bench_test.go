package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmssd/vmssd/internal/dashboard"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/testenv"
)

// signedIn starts a server and a browser signed in as the operator.
func signedIn(b *testing.B) (*testenv.Env, context.Context) {
	e := testenv.Start(b, testenv.Options{})
	ctx := browserB(b, e)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.Server.URL+"/"),
		chromedp.SetValue(chromedp.ID("client_id"), e.Server.Client.ClientID),
		chromedp.SetValue(chromedp.ID("client_secret"), e.Server.Client.ClientSecret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("who")),
	); err != nil {
		b.Fatalf("sign in: %v", err)
	}
	return e, ctx
}

// BenchmarkCellLatency: the time from an instance record's change in the
// store to the changed cell in the browser's DOM (server-sent event,
// re-render through the API, DOM swap). Reports p50 and p99 in ms.
func BenchmarkCellLatency(b *testing.B) {
	e, ctx := signedIn(b)
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	if r := e.Do(http.MethodPut, path, testenv.VMSSBody(2, "1.0.0", "Manual")); r.Status >= 300 {
		b.Fatalf("create: %d %s", r.Status, r.Body)
	} else if st, m := e.Wait(r, 90*time.Second); st != "Succeeded" {
		b.Fatalf("create: %s %v", st, m)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.Server.URL+"/ui/set?sub="+e.Sub+"&rg=rg&name=web"), chromedp.WaitVisible(chromedp.ID("cell-0"))); err != nil {
		b.Fatal(err)
	}
	// Record when cell 0's protection changes, as the DOM sees it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function(){
		window.seen = {}; var last = document.getElementById('cell-0').dataset.protected;
		new MutationObserver(function(){ var c = document.getElementById('cell-0'); if (!c) return;
			var v = c.dataset.protected; if (v !== last) { last = v; window.seen[v + (window.round||0)] = Date.now(); } })
		.observe(document.getElementById('heatmap'), {childList: true, subtree: true});
		return true })()`)); err != nil {
		b.Fatal(err)
	}
	key := model.InstanceKey(model.SetRef{Sub: e.Sub, RG: "rg", Name: "web"}, 0)
	var lat []float64
	b.ResetTimer()
	for i := range b.N {
		want := i%2 == 0
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`window.round = %d`, i))); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := state.Update[model.Instance](context.Background(), e.Server.Store, key, func(in *model.Instance) error {
			in.ProtectScaleIn = want
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		js := fmt.Sprintf(`window.seen[%q] || 0`, strconv.FormatBool(want)+strconv.Itoa(i))
		deadline := time.Now().Add(10 * time.Second)
		for {
			ms, err := chromedp.Run(ctx, chromedp.Evaluate[int64](js))
			if err == nil && ms > 0 {
				lat = append(lat, float64(ms-t0.UnixMilli()))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("round %d: the cell did not change", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(pct(lat, 50), "p50-ms")
	b.ReportMetric(pct(lat, 99), "p99-ms")
}

func pct(s []float64, p int) float64 {
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// BenchmarkRender1000: the heatmap of 1,000 instances (5 update domains x
// 5 fault domains), as the server renders it (template) and as Chromium
// swaps it in and lays it out (innerHTML + layout + next frame). Reports
// both in ms.
func BenchmarkRender1000(b *testing.B) {
	e, ctx := signedIn(b)
	d := dashboard.New(dashboard.Options{Store: e.Server.Store, Logger: slog.New(slog.DiscardHandler)})
	powers := []string{"running", "starting", "stopping", "stopped", "deallocated"}
	var cells []dashboard.Cell
	for i := range 1000 {
		cells = append(cells, dashboard.Cell{ID: strconv.Itoa(i), UD: i % 5, FD: (i / 5) % 5, Power: powers[i%len(powers)],
			Health: "healthy", Latest: i%3 != 0, Version: "1.0.0", IP: fmt.Sprintf("10.0.%d.%d", i/250, 4+i%250)})
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.Server.URL+"/ui/activity"), chromedp.WaitVisible(chromedp.ID("activity"))); err != nil {
		b.Fatal(err)
	}
	var server, browser []float64
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		html, err := d.RenderHeatmap(cells)
		if err != nil {
			b.Fatal(err)
		}
		server = append(server, float64(time.Since(t0).Microseconds())/1000)
		lit, _ := json.Marshal(html)
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`new Promise(function(done){
			var el = document.getElementById('bench') || document.body.appendChild(Object.assign(document.createElement('div'), {id: 'bench'}));
			var t0 = performance.now(); el.innerHTML = `+string(lit)+`; void el.offsetHeight;
			requestAnimationFrame(function(){ requestAnimationFrame(function(){ done(performance.now() - t0) }) }) })`, chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#bench .cell').length`)); n != 1000 {
			b.Fatalf("%d cells rendered", n)
		}
		browser = append(browser, ms)
	}
	b.StopTimer()
	slices.Sort(server)
	slices.Sort(browser)
	b.ReportMetric(pct(server, 50), "template-p50-ms")
	b.ReportMetric(pct(browser, 50), "browser-p50-ms")
	b.ReportMetric(pct(browser, 99), "browser-p99-ms")
}

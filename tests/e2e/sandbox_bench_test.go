package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver/process"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
	"github.com/vmssd/vmssd/internal/testenv"
)

// BenchmarkSandbox50 measures 50 sandboxed instances created to healthy
// through the API (a real vmssd binary), then the floor: the same 50
// bundles (config.json and mounted root file systems vmssd prepared)
// started with runc run directly, all at once, until each guest answers
// its health probe inside its network namespace. It reports both and
// their ratio (goal: at most 1.3).
//
//	go test ./tests/e2e -run '^$' -bench Sandbox50 -benchtime 3x
func BenchmarkSandbox50(b *testing.B) {
	if !testenv.CanSandbox() {
		if os.Getenv("VMSSD_E2E") == "1" {
			b.Fatal("VMSSD_E2E=1: this host cannot sandbox (runc, root)")
		}
		b.Skip("this host cannot sandbox (runc, root)")
	}
	const n = 50
	var vmssdTotal, floorTotal time.Duration
	for i := 0; b.Loop(); i++ {
		dataDir := b.TempDir()
		p := startProc(b, dataDir, freePort(b))
		e := attach(b, dataDir, p.url)
		e.CreateRG("rg")
		start := time.Now()
		r := e.Do(http.MethodPut, e.VMSSPath("rg", "s"), testenv.VMSSBody(n, "latest", "Manual"))
		if r.Status != http.StatusCreated {
			b.Fatalf("create: %d %s", r.Status, r.Body)
		}
		waitHealthyFast(b, e, "rg", "s", n)
		vmssdTotal += time.Since(start)
		if got := strings.Count(string(e.Do(http.MethodGet, e.VMSSPath("rg", "s")+"/virtualMachines?$expand=instanceView", nil).Body), "Isolation/runc"); got != n {
			b.Fatalf("%d of %d instances sandboxed", got, n)
		}

		// The floor: vmssd goes (its containers stay), the containers are
		// removed, and their bundles are started again with runc alone.
		b.StopTimer()
		p.kill()
		floorTotal += runcFloor(b, dataDir, n)
		testenv.KillInstances(dataDir)
		b.StartTimer()
	}
	v, f := vmssdTotal.Seconds()/float64(b.N), floorTotal.Seconds()/float64(b.N)
	b.ReportMetric(v, "s/create50-to-healthy")
	b.ReportMetric(f, "s/runc-run50-to-healthy")
	b.ReportMetric(v/f, "ratio")
	b.Logf("vmssd %.3fs, runc floor %.3fs, ratio %.2f", v, f, v/f)
}

// runcFloor deletes the n containers of the vmssd on dataDir and times
// starting their bundles again with runc run until every guest is healthy.
func runcFloor(b *testing.B, dataDir string, n int) time.Duration {
	runDir := process.DefaultRunDir(testenv.InstancesRoot(dataDir))
	rt, err := sandbox.NewRuntime("", filepath.Join(runDir, "runc"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sts, err := rt.List(ctx)
	if err != nil || len(sts) != n {
		b.Fatalf("%d containers (%v), want %d", len(sts), err, n)
	}
	type bundle struct{ id, dir, port string }
	var bundles []bundle
	for _, st := range sts {
		if err := rt.Delete(ctx, st.ID); err != nil {
			b.Fatal(err)
		}
		cfg, err := sandbox.ReadBundle(st.Bundle)
		if err != nil {
			b.Fatal(err)
		}
		port := ""
		for _, kv := range cfg.Process.Env {
			if v, ok := strings.CutPrefix(kv, "VMSSD_PORT="); ok {
				port = v
			}
		}
		bundles = append(bundles, bundle{st.ID, st.Bundle, port})
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, bd := range bundles {
		wg.Go(func() {
			pid, err := rt.Run(ctx, bd.id, bd.dir, devnull)
			if err != nil {
				errs <- err
				return
			}
			ns, err := sandbox.OpenNetns(pid)
			if err != nil {
				errs <- err
				return
			}
			defer ns.Close()
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if healthyIn(ctx, ns, net.JoinHostPort("127.0.0.1", bd.port)) {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			errs <- fmt.Errorf("%s not healthy", bd.id)
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return d
}

// healthyIn reports whether GET /health answers 200 at addr in ns.
func healthyIn(ctx context.Context, ns *sandbox.Netns, addr string) bool {
	c, err := ns.Dial(ctx, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET /health HTTP/1.0\r\nHost: guest\r\n\r\n"); err != nil {
		return false
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return false
	}
	return strings.HasPrefix(string(buf), "HTTP/1.0 200") || strings.HasPrefix(string(buf), "HTTP/1.1 200")
}

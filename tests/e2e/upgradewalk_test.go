package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/cli"
	"github.com/vmssd/vmssd/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// availSampler watches a scale set's availability throughout a test: it
// reads the instance views every 100ms for each instance's update domain
// and health endpoint, then asks every guest at once whether it serves; an
// instance is down when its guest does not answer 200. It records the
// largest number of update domains that had an instance down at the same
// moment. While the server is down there are no views to read (and a
// sandboxed guest's endpoint is forwarded by vmssd itself), so those samples
// are only counted.
type availSampler struct {
	mu      sync.Mutex
	maxDown int
	worst   map[int][]string // UD -> instances down, at the worst moment
	samples int
	offline int // samples taken while the server did not answer (or did not know yet)
	// crashFrom, crashTo bound the crash: vmssd forwards a sandboxed
	// guest's endpoint itself, so from the kill until the restarted server
	// has its forwards back no guest answers. Samples then with every
	// instance down are the crash's outage, not the walk's; they are
	// counted apart. Anything less than all (two domains of five) still
	// fails the test.
	crashFrom, crashTo time.Time
	crashOutage        int
	stop               chan struct{}
	done               chan struct{}
	endpoint           map[string]sampledVM
}

type sampledVM struct {
	ud       int
	endpoint string
}

func startAvailSampler(t *testing.T, e *testenv.Env, rg, name string) *availSampler {
	s := &availSampler{stop: make(chan struct{}), done: make(chan struct{}), endpoint: map[string]sampledVM{}}
	url := e.Server.URL + e.VMSSPath(rg, name) + "/virtualMachines?$expand=instanceView&api-version=" + e.API
	token, hc := e.Token, e.HTTP
	probe := http.Client{Timeout: 500 * time.Millisecond}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			online := false
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := hc.Do(req); err == nil {
				var page struct {
					Value []vm `json:"value"`
				}
				if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&page) == nil &&
					!slices.ContainsFunc(page.Value, func(v vm) bool { return v.power() == "PowerState/unknown" }) {
					// (Right after a restart the server answers before its
					// host re-adopted the guests: their power is unknown.)
					online = true
					s.endpoint = map[string]sampledVM{}
					for _, v := range page.Value {
						s.endpoint[v.InstanceID] = sampledVM{ud: v.Properties.InstanceView.PlatformUpdateDomain, endpoint: v.endpoint()}
					}
				}
				resp.Body.Close()
			}
			s.mu.Lock()
			s.samples++
			s.mu.Unlock()
			if !online {
				// No instance views: a sandboxed guest's endpoint is
				// forwarded by vmssd itself, so nothing can be judged.
				s.mu.Lock()
				s.offline++
				s.mu.Unlock()
				continue
			}
			// All guests are asked at once, so that the sample is one
			// moment and not a sweep across a domain change.
			down := map[int][]string{}
			var dmu sync.Mutex
			var wg sync.WaitGroup
			for id, v := range s.endpoint {
				wg.Add(1)
				go func() {
					defer wg.Done()
					serving := false
					if v.endpoint != "" {
						if r, err := probe.Get("http://" + v.endpoint + "/health"); err == nil {
							serving = r.StatusCode == http.StatusOK
							r.Body.Close()
						}
					}
					if !serving {
						dmu.Lock()
						down[v.ud] = append(down[v.ud], id)
						dmu.Unlock()
					}
				}()
			}
			wg.Wait()
			s.mu.Lock()
			now := time.Now()
			if len(down) > 1 && allDown(down, len(s.endpoint)) && !s.crashFrom.IsZero() && now.After(s.crashFrom) &&
				(s.crashTo.IsZero() || now.Before(s.crashTo)) {
				s.crashOutage++
				s.mu.Unlock()
				continue
			}
			if len(down) > s.maxDown {
				s.maxDown, s.worst = len(down), down
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.finish)
	return s
}

// allDown reports whether every one of n instances is in down.
func allDown(down map[int][]string, n int) bool {
	k := 0
	for _, ids := range down {
		k += len(ids)
	}
	return k == n
}

func (s *availSampler) crash(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashFrom, s.crashTo = from, to
}

func (s *availSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// TestUpgradeWalkSurvivesCrash runs `vmssctl vmss upgrade --all-domains`
// against a vmssd process, SIGKILLs the server in the middle of the walk
// and starts it again a little later: the CLI retries while the server is
// away, then finishes the walk. Every instance ends on the new version,
// exactly once, and a sampler proves that no two update domains were ever
// down at the same time, before, during or after the crash.
func TestUpgradeWalkSurvivesCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		killAt string // stderr text of the walk after which the server dies
		delay  time.Duration
	}{
		{"in domain 1", "update domain 1 batch 1/1", 0},
		{"in domain 3", "update domain 3 batch 1/1", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			t.Cleanup(func() { testenv.KillInstances(dataDir) })
			addr := freePort(t)
			p := startProc(t, dataDir, addr)
			e := attach(t, dataDir, p.url)
			e.CreateRG("rg")
			createSet(t, e, dataDir, 10, "1.0.0")
			waitHealthy(t, e, "rg", "ss", 10, 60*time.Second)
			s := startAvailSampler(t, e, "rg", "ss")

			env := map[string]string{"VMSSCTL_CONFIG": filepath.Join(dataDir, "vmssctl.json"), "HOME": t.TempDir()}
			var out bytes.Buffer
			var errOut syncBuffer
			code := make(chan int, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			go func() {
				code <- cli.Execute(ctx, []string{"vmss", "upgrade", "-g", "rg", "-n", "ss", "--new-version", "1.1.0",
					"--all-domains", "-y", "--retry-timeout", "2m", "-o", "json"}, nil, &out, &errOut, func(k string) string { return env[k] })
			}()

			testenv.Eventually(t, 2*time.Minute, "the walk at "+tc.killAt, func() bool { return strings.Contains(errOut.String(), tc.killAt) })
			time.Sleep(tc.delay)
			s.crash(time.Now(), time.Time{})
			p.kill()
			time.Sleep(6 * time.Second) // longer than the SDK's own retries: the walk's retrier takes over
			p = startProc(t, dataDir, addr)
			// The restarted server re-adopts the guests and forwards their
			// endpoints again within moments.
			s.crash(s.crashFrom, time.Now().Add(5*time.Second))
			e = attach(t, dataDir, p.url)

			var rc int
			select {
			case rc = <-code:
			case <-time.After(3 * time.Minute):
				t.Fatalf("the walk did not end; stderr:\n%s", errOut.String())
			}
			s.finish()
			stderr := errOut.String()
			if rc != cli.ExitOK {
				t.Fatalf("walk: exit %d\n%s", rc, stderr)
			}
			if !strings.Contains(stderr, "retrying for up to 2m0s") || !strings.Contains(stderr, "The server answers again") {
				t.Errorf("the walk did not say it waited for the server:\n%s", stderr)
			}
			var sum struct {
				Status string `json:"status"`
				Steps  []struct {
					UpdateDomain int    `json:"updateDomain"`
					Status       string `json:"status"`
				} `json:"steps"`
			}
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("summary: %v: %q", err, out.String())
			}
			var uds []int
			for _, st := range sum.Steps {
				uds = append(uds, st.UpdateDomain)
			}
			if sum.Status != "Succeeded" || !slices.Equal(uds, []int{0, 1, 2, 3, 4}) {
				t.Errorf("summary: %+v", sum)
			}

			// Exactly the capacity, each guest once, all on the new version.
			checkExact(t, e, dataDir, 10, "1.1.0")
			for _, v := range listVMs(t, e, "rg", "ss") {
				if !v.Properties.LatestModelApplied {
					t.Errorf("instance %s not on the latest model", v.InstanceID)
				}
			}

			s.mu.Lock()
			defer s.mu.Unlock()
			t.Logf("sampler: %d samples, %d while the server was down, %d in the crash's outage; at worst %d update domains down: %v",
				s.samples, s.offline, s.crashOutage, s.maxDown, s.worst)
			if s.maxDown > 1 {
				t.Errorf("%d update domains were down at once: %v", s.maxDown, fmt.Sprint(s.worst))
			}
			if s.offline == 0 || s.samples < 20 {
				t.Errorf("the sampler did not watch throughout: %d samples, %d offline", s.samples, s.offline)
			}
		})
	}
}

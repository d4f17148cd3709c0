// Package drivertest is the conformance suite of driver.Driver
// implementations, and the test guest the suite talks to.
//
// A driver package runs the suite from its tests:
//
//	func TestMain(m *testing.M) {
//		drivertest.MaybeGuest()
//		os.Exit(m.Run())
//	}
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, newDriver, func(t *testing.T) string {
//			return drivertest.ProcessImage(t, "1.0.0")
//		})
//	}
//
// The images the suite gets must run the test guest (see MaybeGuest): the
// suite drives it over HTTP, at the address of Status.HealthURL, to write
// files on the instance's disk and read them back.
package drivertest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
)

// Timing of the suite.
const (
	waitTimeout = 30 * time.Second
	pollEvery   = 50 * time.Millisecond
)

// Run runs the conformance suite. newDriver returns a new driver keeping its
// state in root (the suite calls it again on the same root after closing the
// first driver, to test Recover); the suite calls Recover, Delete and Close
// itself. image returns a new image directory for the driver (each call a
// new one), whose guest is the test guest.
func Run(t *testing.T, newDriver func(t *testing.T, root string) driver.Driver, image func(t *testing.T) (imageDir string)) {
	s := &suite{newDriver: newDriver, image: image}
	tests := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"CreateRunsInstance", s.testCreate},
		{"InvalidImage", s.testInvalidImage},
		{"UnknownInstance", s.testUnknown},
		{"StopKeepsDisk", s.testStop},
		{"Deallocate", s.testDeallocate},
		{"Restart", s.testRestart},
		{"ReimageGivesFreshDisk", s.testReimage},
		{"DeleteLeavesNothing", s.testDelete},
		{"CrashRestart", s.testCrashRestart},
		{"RecoverReadopts", s.testRecover},
		{"Concurrent", s.testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, s.setup(t))
		})
	}
}

type suite struct {
	newDriver func(t *testing.T, root string) driver.Driver
	image     func(t *testing.T) string
}

// env is one test's driver and root.
type env struct {
	t    *testing.T
	ctx  context.Context
	root string
	drv  driver.Driver
}

func (s *suite) setup(t *testing.T) *env {
	e := &env{t: t, ctx: t.Context(), root: t.TempDir()}
	e.drv, _ = s.open(t, e.root)
	return e
}

// open returns a recovered driver on root. At the end of the test, unless
// the test closed it, it deletes the driver's instances and closes it.
func (s *suite) open(t *testing.T, root string) (driver.Driver, []driver.Status) {
	t.Helper()
	drv := s.newDriver(t, root)
	closed := false
	t.Cleanup(func() {
		if closed {
			return
		}
		ctx := context.Background()
		if sts, err := drv.List(ctx); err == nil {
			for _, st := range sts {
				if err := drv.Delete(ctx, st.ID); err != nil {
					t.Errorf("cleanup: delete %s: %v", st.ID, err)
				}
			}
		}
		if err := drv.Close(); err != nil {
			t.Errorf("cleanup: close: %v", err)
		}
	})
	sts, err := drv.Recover(t.Context())
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return closeTracking{drv, &closed}, sts
}

// closeTracking remembers that a test closed its driver.
type closeTracking struct {
	driver.Driver
	closed *bool
}

func (c closeTracking) Close() error {
	*c.closed = true
	return c.Driver.Close()
}

// newSpec returns a spec for a new instance of imageDir.
func newSpec(imageDir string) driver.Spec {
	id := "dt-" + strings.ToLower(rand.Text()[:12])
	return driver.Spec{
		ID:          id,
		ImageDir:    imageDir,
		ImageDigest: digestOf(imageDir),
		Size:        "Standard_B1s",
		// The suite's images are the operator's; a sandboxing driver must
		// pass it either way.
		OperatorImage: true,
		Metadata: driver.Metadata{
			SubscriptionID:    "00000000-0000-0000-0000-000000000000",
			ResourceGroupName: "rg",
			VMScaleSetName:    "ss",
			Name:              "ss_0",
			InstanceID:        "0",
			VMID:              id,
			ComputerName:      "ss000000",
			Location:          "local",
			VMSize:            "Standard_B1s",
			FaultDomain:       1,
			UpdateDomain:      2,
			OSType:            "Linux",
			ImageVersion:      "1.0.0",
			ModelVersion:      1,
		},
	}
}

func digestOf(imageDir string) string {
	sum := sha256.Sum256([]byte(imageDir))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// create creates spec and waits until it runs and is healthy.
func (e *env) create(spec driver.Spec) driver.Status {
	e.t.Helper()
	st, err := e.drv.Create(e.ctx, spec)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	if st.ID != spec.ID || st.ImageDigest != spec.ImageDigest {
		e.t.Errorf("Create: status has id %q image %q, want %q %q", st.ID, st.ImageDigest, spec.ID, spec.ImageDigest)
	}
	switch st.Power {
	case driver.PowerStarting, driver.PowerRunning:
	default:
		e.t.Errorf("Create: power %q, want starting or running", st.Power)
	}
	return e.waitRunning(spec.ID, nil)
}

// waitRunning waits until the instance is running, its health URL answers
// 200 and cond (if any) holds.
func (e *env) waitRunning(id string, cond func(driver.Status) bool) driver.Status {
	e.t.Helper()
	var (
		last    driver.Status
		lastErr error
	)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		st, err := e.drv.Inspect(e.ctx, id)
		last, lastErr = st, err
		if err == nil && st.Power == driver.PowerRunning && st.HealthURL != "" && (cond == nil || cond(st)) {
			code, body, err := httpDo(http.MethodGet, st.HealthURL, "")
			if err == nil && code == http.StatusOK {
				return st
			}
			lastErr = fmt.Errorf("GET %s: %d %q %v", st.HealthURL, code, body, err)
		}
		time.Sleep(pollEvery)
	}
	e.t.Fatalf("instance %s not running and healthy after %s: last status %+v, last error %v", id, waitTimeout, last, lastErr)
	return driver.Status{}
}

// guest calls the test guest of a running instance.
func (e *env) guest(st driver.Status, method, path, body string) (int, string) {
	e.t.Helper()
	u, err := url.Parse(st.HealthURL)
	if err != nil {
		e.t.Fatalf("health URL %q: %v", st.HealthURL, err)
	}
	u.Path, u.RawQuery = path, ""
	code, resp, err := httpDo(method, u.String(), body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, u, err)
	}
	return code, resp
}

// writeMarker writes a file on the instance's disk through its guest.
func (e *env) writeMarker(st driver.Status, name, content string) {
	e.t.Helper()
	if code, body := e.guest(st, http.MethodPut, "/files/"+name, content); code != http.StatusNoContent {
		e.t.Fatalf("write %s: %d %q", name, code, body)
	}
}

// readMarker reads a file of the instance's disk through its guest; ok is
// false when the file does not exist.
func (e *env) readMarker(st driver.Status, name string) (content string, ok bool) {
	e.t.Helper()
	code, body := e.guest(st, http.MethodGet, "/files/"+name, "")
	switch code {
	case http.StatusOK:
		return body, true
	case http.StatusNotFound:
		return "", false
	}
	e.t.Fatalf("read %s: %d %q", name, code, body)
	return "", false
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpDo(method, u, body string) (int, string, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// pidAlive reports whether pid is a live, non-zombie process.
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// waitGone waits until pid has exited.
func (e *env) waitGone(pid int) {
	e.t.Helper()
	if pid <= 0 {
		return
	}
	deadline := time.Now().Add(waitTimeout)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			e.t.Fatalf("process %d still alive after %s", pid, waitTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// checkOff checks the status of a powered-off instance.
func checkOff(t *testing.T, op string, st driver.Status, want driver.Power) {
	t.Helper()
	if st.Power != want || st.PID != 0 || st.HealthURL != "" {
		t.Errorf("%s: power %q pid %d health URL %q, want %q, 0, none", op, st.Power, st.PID, st.HealthURL, want)
	}
}

func (s *suite) testCreate(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	if st.PID <= 0 {
		t.Errorf("running instance has pid %d", st.PID)
	}
	if st.Ports["health"] == "" {
		t.Errorf("running instance has no health port: %v", st.Ports)
	}
	if st.Since.IsZero() {
		t.Error("Since is zero")
	}

	// The guest got its metadata.
	code, body := e.guest(st, http.MethodGet, "/metadata", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metadata: %d %q", code, body)
	}
	var md driver.Metadata
	if err := json.Unmarshal([]byte(body), &md); err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if !reflect.DeepEqual(md, spec.Metadata) {
		t.Errorf("guest metadata = %+v, want %+v", md, spec.Metadata)
	}

	// Create is idempotent.
	again, err := e.drv.Create(e.ctx, spec)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if again.PID != st.PID || again.Power != driver.PowerRunning {
		t.Errorf("second Create: pid %d power %q, want %d running", again.PID, again.Power, st.PID)
	}

	list, err := e.drv.List(e.ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].ID != spec.ID {
		t.Errorf("List = %+v, want only %s", list, spec.ID)
	}
	// Start on a running instance changes nothing.
	started, err := e.drv.Start(e.ctx, spec.ID)
	if err != nil || started.PID != st.PID {
		t.Errorf("Start of a running instance: pid %d err %v, want pid %d", started.PID, err, st.PID)
	}
}

func (s *suite) testInvalidImage(t *testing.T, e *env) {
	spec := newSpec(t.TempDir()) // empty: no manifest, nothing usable
	if _, err := e.drv.Create(e.ctx, spec); !errors.Is(err, driver.ErrImageInvalid) {
		t.Errorf("Create with an empty image directory: %v, want ErrImageInvalid", err)
	}
	if _, err := e.drv.Inspect(e.ctx, spec.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Inspect after a failed Create: %v, want ErrNotFound", err)
	}
}

func (s *suite) testUnknown(t *testing.T, e *env) {
	const id = "no-such-instance"
	spec := newSpec(s.image(t))
	spec.ID = id
	ops := []struct {
		name string
		call func() error
	}{
		{"Inspect", func() error { _, err := e.drv.Inspect(e.ctx, id); return err }},
		{"Start", func() error { _, err := e.drv.Start(e.ctx, id); return err }},
		{"Stop", func() error { _, err := e.drv.Stop(e.ctx, id, true); return err }},
		{"Deallocate", func() error { _, err := e.drv.Deallocate(e.ctx, id); return err }},
		{"Restart", func() error { _, err := e.drv.Restart(e.ctx, id); return err }},
		{"Reimage", func() error { _, err := e.drv.Reimage(e.ctx, spec); return err }},
		{"Delete", func() error { return e.drv.Delete(e.ctx, id) }},
	}
	for _, op := range ops {
		if err := op.call(); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("%s of an unknown instance: %v, want ErrNotFound", op.name, err)
		}
	}
}

func (s *suite) testStop(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	e.writeMarker(st, "marker", "kept")

	stopped, err := e.drv.Stop(e.ctx, spec.ID, true)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	checkOff(t, "Stop", stopped, driver.PowerStopped)
	e.waitGone(st.PID)
	if again, err := e.drv.Stop(e.ctx, spec.ID, true); err != nil || again.Power != driver.PowerStopped {
		t.Errorf("Stop of a stopped instance: power %q err %v", again.Power, err)
	}
	// Stay stopped: no supervisor restart.
	time.Sleep(300 * time.Millisecond)
	if cur, err := e.drv.Inspect(e.ctx, spec.ID); err != nil || cur.Power != driver.PowerStopped {
		t.Errorf("stopped instance: power %q err %v, want stopped", cur.Power, err)
	}

	if _, err := e.drv.Start(e.ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st = e.waitRunning(spec.ID, nil)
	if got, ok := e.readMarker(st, "marker"); !ok || got != "kept" {
		t.Errorf("after stop and start, marker = %q (exists %v), want kept", got, ok)
	}

	// A forced stop.
	stopped, err = e.drv.Stop(e.ctx, spec.ID, false)
	if err != nil {
		t.Fatalf("Stop(graceful=false): %v", err)
	}
	checkOff(t, "Stop(graceful=false)", stopped, driver.PowerStopped)
	e.waitGone(st.PID)
}

func (s *suite) testDeallocate(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	e.writeMarker(st, "marker", "kept")

	dealloc, err := e.drv.Deallocate(e.ctx, spec.ID)
	if err != nil {
		t.Fatalf("Deallocate: %v", err)
	}
	checkOff(t, "Deallocate", dealloc, driver.PowerDeallocated)
	if len(dealloc.Ports) != 0 {
		t.Errorf("deallocated instance still has ports %v", dealloc.Ports)
	}
	e.waitGone(st.PID)
	// Stop does not turn deallocated into stopped.
	if again, err := e.drv.Stop(e.ctx, spec.ID, true); err != nil || again.Power != driver.PowerDeallocated {
		t.Errorf("Stop of a deallocated instance: power %q err %v, want deallocated", again.Power, err)
	}

	if _, err := e.drv.Start(e.ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st = e.waitRunning(spec.ID, nil)
	if got, ok := e.readMarker(st, "marker"); !ok || got != "kept" {
		t.Errorf("after deallocate and start, marker = %q (exists %v), want kept", got, ok)
	}
}

func (s *suite) testRestart(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	if _, err := e.drv.Restart(e.ctx, spec.ID); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	st2 := e.waitRunning(spec.ID, func(s driver.Status) bool { return s.PID != st.PID })
	e.waitGone(st.PID)
	if st2.Restarts != st.Restarts {
		t.Errorf("Restart counted as a crash restart: restarts %d -> %d", st.Restarts, st2.Restarts)
	}
	// Restart of a stopped instance starts it.
	if _, err := e.drv.Stop(e.ctx, spec.ID, true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := e.drv.Restart(e.ctx, spec.ID); err != nil {
		t.Fatalf("Restart of a stopped instance: %v", err)
	}
	e.waitRunning(spec.ID, nil)
}

func (s *suite) testReimage(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	e.writeMarker(st, "marker", "old disk")

	spec2 := spec
	spec2.ImageDir = s.image(t)
	spec2.ImageDigest = digestOf(spec2.ImageDir)
	spec2.Metadata.ModelVersion = 2
	got, err := e.drv.Reimage(e.ctx, spec2)
	if err != nil {
		t.Fatalf("Reimage: %v", err)
	}
	if got.ImageDigest != spec2.ImageDigest {
		t.Errorf("Reimage: image %q, want %q", got.ImageDigest, spec2.ImageDigest)
	}
	st2 := e.waitRunning(spec.ID, nil)
	if st2.PID == st.PID {
		t.Errorf("Reimage kept the guest process %d", st.PID)
	}
	if _, ok := e.readMarker(st2, "marker"); ok {
		t.Error("the marker written before Reimage is still on the disk")
	}
	code, body := e.guest(st2, http.MethodGet, "/metadata", "")
	var md driver.Metadata
	if code != http.StatusOK || json.Unmarshal([]byte(body), &md) != nil || md.ModelVersion != 2 {
		t.Errorf("metadata after Reimage: %d %q, want modelVersion 2", code, body)
	}
	if _, err := e.drv.Create(e.ctx, spec2); err != nil {
		t.Errorf("Create with the new image after Reimage: %v", err)
	}

	// Reimage of a stopped instance leaves it running.
	e.writeMarker(st2, "marker", "again")
	if _, err := e.drv.Stop(e.ctx, spec.ID, true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := e.drv.Reimage(e.ctx, spec2); err != nil {
		t.Fatalf("Reimage of a stopped instance: %v", err)
	}
	st3 := e.waitRunning(spec.ID, nil)
	if _, ok := e.readMarker(st3, "marker"); ok {
		t.Error("the marker written before the second Reimage is still on the disk")
	}
}

func (s *suite) testDelete(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	if err := e.drv.Delete(e.ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.waitGone(st.PID)
	if _, err := e.drv.Inspect(e.ctx, spec.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Inspect after Delete: %v, want ErrNotFound", err)
	}
	if list, err := e.drv.List(e.ctx); err != nil || len(list) != 0 {
		t.Errorf("List after Delete = %+v, %v; want empty", list, err)
	}
	if err := e.drv.Delete(e.ctx, spec.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	filepath.WalkDir(e.root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(path, spec.ID) {
			t.Errorf("Delete left %s", path)
		}
		return nil
	})
	// The ID can be used again.
	st2 := e.create(spec)
	if err := e.drv.Delete(e.ctx, spec.ID); err != nil {
		t.Fatalf("Delete of the re-created instance: %v", err)
	}
	e.waitGone(st2.PID)
}

func (s *suite) testCrashRestart(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	e.writeMarker(st, "marker", "kept")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill guest: %v", err)
	}
	st2 := e.waitRunning(spec.ID, func(s driver.Status) bool {
		return s.PID != st.PID && s.Restarts > st.Restarts
	})
	if st2.Restarts != st.Restarts+1 {
		t.Errorf("restarts = %d, want %d", st2.Restarts, st.Restarts+1)
	}
	if st2.Message == "" {
		t.Error("Message does not say why the guest was restarted")
	}
	if got, ok := e.readMarker(st2, "marker"); !ok || got != "kept" {
		t.Errorf("after a crash restart, marker = %q (exists %v), want kept", got, ok)
	}
}

func (s *suite) testRecover(t *testing.T, e *env) {
	spec := newSpec(s.image(t))
	st := e.create(spec)
	stopped := newSpec(s.image(t))
	e.create(stopped)
	if _, err := e.drv.Stop(e.ctx, stopped.ID, true); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	if err := e.drv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close does not stop the guests (a sandboxed guest's loopback forward
	// belongs to vmssd and ends with it: the next Recover opens it again).
	time.Sleep(100 * time.Millisecond)
	if !pidAlive(st.PID) {
		t.Fatalf("guest %d died with Close", st.PID)
	}

	drv2, sts := s.open(t, e.root)
	e.drv = drv2
	byID := map[string]driver.Status{}
	for _, s := range sts {
		byID[s.ID] = s
	}
	if got := byID[spec.ID]; got.PID != st.PID || got.Power != driver.PowerRunning {
		t.Errorf("Recover: running instance has pid %d power %q, want %d running (re-adopted)", got.PID, got.Power, st.PID)
	}
	if got := byID[stopped.ID]; got.Power != driver.PowerStopped {
		t.Errorf("Recover: stopped instance has power %q, want stopped", got.Power)
	}
	st2 := e.waitRunning(spec.ID, nil)
	if st2.PID != st.PID || st2.Restarts != st.Restarts {
		t.Errorf("after Recover: pid %d restarts %d, want %d %d (not restarted)", st2.PID, st2.Restarts, st.PID, st.Restarts)
	}
	time.Sleep(300 * time.Millisecond) // no duplicate, no late restart
	if cur, err := e.drv.Inspect(e.ctx, spec.ID); err != nil || cur.PID != st.PID {
		t.Errorf("after Recover: pid %d err %v, want %d", cur.PID, err, st.PID)
	}

	// The new driver supervises the re-adopted guest.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill guest: %v", err)
	}
	e.waitRunning(spec.ID, func(s driver.Status) bool {
		return s.PID != st.PID && s.Restarts > st.Restarts
	})
}

func (s *suite) testConcurrent(t *testing.T, e *env) {
	img := s.image(t)
	const n = 4
	specs := make([]driver.Spec, n)
	for i := range specs {
		specs[i] = newSpec(img)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, spec := range specs {
		wg.Go(func() {
			_, errs[i] = e.drv.Create(e.ctx, spec)
		})
		wg.Go(func() { e.drv.List(e.ctx) })
	}
	wg.Wait()
	ports := map[string]string{}
	for i, spec := range specs {
		if errs[i] != nil {
			t.Fatalf("Create %s: %v", spec.ID, errs[i])
		}
		st := e.waitRunning(spec.ID, nil)
		if other, dup := ports[st.Ports["health"]]; dup {
			t.Errorf("%s and %s share the health address %s", spec.ID, other, st.Ports["health"])
		}
		ports[st.Ports["health"]] = spec.ID
	}
	for i, spec := range specs {
		wg.Go(func() {
			if i%2 == 0 {
				_, errs[i] = e.drv.Restart(e.ctx, spec.ID)
			} else {
				_, errs[i] = e.drv.Stop(e.ctx, spec.ID, true)
			}
		})
		wg.Go(func() { e.drv.Inspect(e.ctx, spec.ID) })
	}
	wg.Wait()
	for i, spec := range specs {
		if errs[i] != nil {
			t.Errorf("Restart/Stop %s: %v", spec.ID, errs[i])
		}
	}
	for i, spec := range specs {
		wg.Go(func() { errs[i] = e.drv.Delete(e.ctx, spec.ID) })
	}
	wg.Wait()
	for i, spec := range specs {
		if errs[i] != nil {
			t.Errorf("Delete %s: %v", spec.ID, errs[i])
		}
	}
	if list, err := e.drv.List(e.ctx); err != nil || len(list) != 0 {
		t.Errorf("List after deleting everything = %+v, %v", list, err)
	}
}

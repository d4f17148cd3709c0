package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/fsutil"
)

type testState struct {
	State
	Port int `json:"port,omitempty"`
}

type testInstance struct {
	Base
	st testState
}

func (in *testInstance) Common() *State     { return &in.st.State }
func (in *testInstance) StateSnapshot() any { return in.st }
func (in *testInstance) StatePtr() any      { return &in.st }

var errClosed = errors.New("test: closed")

func newTestTable(t *testing.T) *Table[*testInstance] {
	t.Helper()
	tab := NewTable("test", t.TempDir(), errClosed, slog.New(slog.DiscardHandler), func(id, dir string) *testInstance {
		in := &testInstance{}
		in.Init(id, dir)
		return in
	})
	t.Cleanup(func() { tab.Close() })
	return tab
}

func TestOpLock(t *testing.T) {
	l := make(OpLock, 1)
	if err := l.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if l.TryLock() {
		t.Error("TryLock of a held lock")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a held lock: %v", err)
	}
	l.Unlock()
	if !l.TryLock() {
		t.Error("TryLock of a free lock")
	}
}

func TestTableLocking(t *testing.T) {
	tab := newTestTable(t)
	ctx := t.Context()
	if _, err := tab.Lock(ctx, "a"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Lock of an unknown id: %v", err)
	}
	in, err := tab.LockOrAdd(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Not created yet: invisible to Lock, Inspect and List.
	in.Op.Unlock()
	if _, err := tab.Lock(ctx, "a"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Lock of an instance being created: %v", err)
	}
	if got := tab.Statuses(func(*testInstance) driver.Status { return driver.Status{} }); len(got) != 0 {
		t.Errorf("Statuses lists an instance being created: %v", got)
	}
	in.Mu.Lock()
	in.Created = true
	in.Mu.Unlock()
	got, err := tab.Lock(ctx, "a")
	if err != nil || got != in {
		t.Fatalf("Lock: %v %v", got, err)
	}
	// A held Op lock: a second Lock waits until its context ends.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := tab.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a busy instance: %v", err)
	}
	tab.Drop(in)
	in.Op.Unlock()
	if _, err := tab.Lock(ctx, "a"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Lock after Drop: %v", err)
	}
	tab.Close()
	if _, err := tab.Get("a"); !errors.Is(err, errClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if tab.Go(func() {}) {
		t.Error("Go after Close ran")
	}
}

func TestRecoverWalk(t *testing.T) {
	tab := newTestTable(t)
	root := tab.Root()
	mk := func(name string, files map[string]any) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, name), 0o700); err != nil {
			t.Fatal(err)
		}
		for f, v := range files {
			if err := fsutil.WriteJSON(filepath.Join(root, name, f), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(".delete-x-1", nil)                         // interrupted Delete
	mk("half", map[string]any{StateFile: State{}}) // interrupted Create
	mk("ok", map[string]any{SpecFile: driver.Spec{ID: "ok"}, StateFile: testState{State: State{Desired: driver.PowerStopped}, Port: 7}})
	mk("nostate", map[string]any{SpecFile: driver.Spec{ID: "nostate"}})
	mk("wrong", map[string]any{SpecFile: driver.Spec{ID: "other"}})

	loaded := map[string]*testInstance{}
	err := tab.Recover(t.Context(), func(ctx context.Context, id string) error {
		in, ok, err := tab.Load(id)
		if ok {
			loaded[id] = in
			tab.Put(in)
		}
		return err
	})
	if err == nil {
		t.Error("a spec.json with another id is not reported")
	}
	for _, gone := range []string{".delete-x-1", "half"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", gone, err)
		}
	}
	if in := loaded["ok"]; in == nil || in.st.Port != 7 || in.st.Desired != driver.PowerStopped || !in.Created || in.Spec.ID != "ok" {
		t.Errorf("ok loaded as %+v", in)
	}
	if in := loaded["nostate"]; in == nil || in.st.Desired != driver.PowerRunning || in.st.Power != driver.PowerUnknown {
		t.Errorf("an instance without state should run: %+v", in)
	}
	if _, ok := loaded["wrong"]; ok {
		t.Error("an instance whose spec names another id was loaded")
	}
	// Persist writes the driver's whole state, and nothing once removed.
	in := loaded["ok"]
	Update(in, func(st *State) { st.SetPower(driver.PowerStopped, "x") })
	if err := Persist(in); err != nil {
		t.Fatal(err)
	}
	var back testState
	if err := fsutil.ReadJSON(in.Path(StateFile), &back); err != nil || back.Port != 7 || back.Message != "x" {
		t.Errorf("persisted %+v, %v", back, err)
	}
	tab.Drop(in)
	os.Remove(in.Path(StateFile))
	if err := Persist(in); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(in.Path(StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("Persist wrote the state of a removed instance")
	}
}

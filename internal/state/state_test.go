package state

import (
	"context"
	"testing"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

func newOp(t *testing.T, s store.Store, kind, target string, gen int64, now time.Time) *model.Operation {
	t.Helper()
	op, ops := NewOperation(kind, "sub", "local", target, gen, now)
	if _, err := s.Txn(context.Background(), nil, ops...); err != nil {
		t.Fatal(err)
	}
	return op
}

func status(t *testing.T, s store.Store, id string) *model.Operation {
	t.Helper()
	op, _, err := Get[model.Operation](context.Background(), s, model.OperationKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func TestCompletePending(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		observed  int64
		fail      *arm.ErrorDetail
		want1     string // generation 1
		want2     string // generation 2
		remaining int
	}{
		{"observed 1 completes only generation 1", 1, nil, arm.StatusSucceeded, arm.StatusInProgress, 1},
		{"observed 2 completes both", 2, nil, arm.StatusSucceeded, arm.StatusSucceeded, 0},
		{"a failure fails what it completes", 2, &arm.ErrorDetail{Code: "ImageNotFound"}, arm.StatusFailed, arm.StatusFailed, 0},
		{"observed -1 completes everything", -1, nil, arm.StatusSucceeded, arm.StatusSucceeded, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := memstore.New(memstore.Options{})
			defer s.Close()
			o1 := newOp(t, s, "vmss.put", "sub/rg/a", 1, now)
			o2 := newOp(t, s, "vmss.put", "sub/rg/a", 2, now)
			other := newOp(t, s, "vmss.put", "sub/rg/b", 1, now)
			if err := CompletePending(ctx, s, "sub/rg/a", c.observed, c.fail, now); err != nil {
				t.Fatal(err)
			}
			if got := status(t, s, o1.ID).Status; got != c.want1 {
				t.Errorf("generation 1: %s, want %s", got, c.want1)
			}
			if got := status(t, s, o2.ID).Status; got != c.want2 {
				t.Errorf("generation 2: %s, want %s", got, c.want2)
			}
			if got := status(t, s, other.ID).Status; got != arm.StatusInProgress {
				t.Errorf("another target's operation: %s", got)
			}
			if c.fail != nil && status(t, s, o1.ID).Error.Code != "ImageNotFound" {
				t.Errorf("failed operation lacks its error")
			}
			ps, _ := Pending(ctx, s, "sub/rg/a")
			if len(ps) != c.remaining {
				t.Errorf("%d pending left, want %d", len(ps), c.remaining)
			}
		})
	}
}

func TestSweepOrphansAndGC(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	defer s.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	del := newOp(t, s, "vmss.delete", "sub/rg/gone", 3, now)
	put := newOp(t, s, "vmss.put", "sub/rg/gone", 2, now)
	live := newOp(t, s, "vmss.put", "sub/rg/live", 1, now)
	exists := func(_ context.Context, target string) (bool, error) { return target == "sub/rg/live", nil }
	if err := SweepOrphans(ctx, s, exists, now); err != nil {
		t.Fatal(err)
	}
	if got := status(t, s, del.ID).Status; got != arm.StatusSucceeded {
		t.Errorf("deletion of a gone resource: %s, want Succeeded", got)
	}
	if got := status(t, s, put.ID); got.Status != arm.StatusCanceled || got.Error == nil {
		t.Errorf("update of a gone resource: %+v, want Canceled with an error", got)
	}
	if got := status(t, s, live.ID).Status; got != arm.StatusInProgress {
		t.Errorf("operation of a live resource: %s", got)
	}
	// Finished operations are forgotten after the cutoff, running ones never.
	if err := GCOperations(ctx, s, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{del.ID, put.ID} {
		if _, err := s.Get(ctx, model.OperationKey(id)); err == nil {
			t.Errorf("finished operation %s kept past the cutoff", id)
		}
	}
	if status(t, s, live.ID).Status != arm.StatusInProgress {
		t.Errorf("running operation removed")
	}
}

func TestUpdateRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	defer s.Close()
	key := "/counter"
	if _, err := s.Txn(ctx, nil, PutOp(key, &model.ScaleSetStatus{})); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errc := make(chan error, n)
	for range n {
		go func() {
			_, err := Update(ctx, s, key, func(st *model.ScaleSetStatus) error { st.NextInstanceID++; return nil })
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	st, _, _ := Get[model.ScaleSetStatus](ctx, s, key)
	if st.NextInstanceID != n {
		t.Fatalf("counter %d after %d concurrent updates", st.NextInstanceID, n)
	}
	// ErrSkip writes nothing.
	_, rev, _ := Get[model.ScaleSetStatus](ctx, s, key)
	if _, err := Update(ctx, s, key, func(*model.ScaleSetStatus) error { return ErrSkip }); err != nil {
		t.Fatal(err)
	}
	if _, rev2, _ := Get[model.ScaleSetStatus](ctx, s, key); rev2 != rev {
		t.Fatalf("ErrSkip wrote the record")
	}
}

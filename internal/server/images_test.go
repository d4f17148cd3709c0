package server

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/boltstore"
)

type gcFixture struct {
	t    *testing.T
	im   *images
	st   store.Store
	arts *artifact.Store
}

func newGCFixture(t *testing.T) *gcFixture {
	t.Helper()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := artifact.Open(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	return &gcFixture{t: t, im: &images{store: arts, st: st, files: map[string]fileImport{}}, st: st, arts: arts}
}

// add imports a distinct artifact, unpacks it and makes it look unused
// for two hours.
func (f *gcFixture) add(version string) artifact.Digest {
	f.t.Helper()
	var buf bytes.Buffer
	if err := artifact.BuildDemo(&buf, artifact.DemoOptions{Version: version, Healthy: true}); err != nil {
		f.t.Fatal(err)
	}
	d, _, err := f.arts.Import(context.Background(), &buf)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.arts.Unpack(context.Background(), d); err != nil {
		f.t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(f.arts.Dir(), "blobs", "sha256", d.Hex()), old, old); err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *gcFixture) put(key string, v any) {
	f.t.Helper()
	if _, err := f.st.Txn(context.Background(), nil, state.PutOp(key, v)); err != nil {
		f.t.Fatal(err)
	}
}

// TestCollectArtifacts: artifacts an image, a scale set or an instance
// names are kept, as are those used within the grace period (a scale set
// being created resolved its URI); the others are deleted with their
// grants.
func TestCollectArtifacts(t *testing.T) {
	ctx := context.Background()
	f := newGCFixture(t)
	byImage, bySet, byInstance, resolved, granted, unused := f.add("1.0.0"), f.add("1.0.1"), f.add("1.0.2"), f.add("1.0.3"), f.add("1.0.4"), f.add("1.0.5")

	f.put(model.ImageKey("p", "o", "s", "1.0.0"), &model.ImageVersion{Publisher: "p", Offer: "o", SKU: "s", Version: "1.0.0", Digest: string(byImage)})
	f.put(model.PrefixScaleSets+"sub/rg/web", map[string]any{"model": map[string]any{"properties": map[string]any{
		"virtualMachineProfile": map[string]any{"storageProfile": map[string]any{"osDisk": map[string]any{"image": map[string]any{"uri": "artifact:" + string(bySet)}}}}}}})
	f.put(model.PrefixInstances+"sub/rg/web/0", &model.Instance{Sub: "sub", RG: "rg", ScaleSet: "web", Image: model.ResolvedImage{Digest: string(byInstance)}})
	for _, d := range []artifact.Digest{granted, bySet} {
		f.put(model.ArtifactGrantKey("sub", string(d)), state.ArtifactGrant{Digest: string(d), UnpackedBytes: 100})
	}
	// The API resolves a URI before it records a scale set naming it:
	// that use keeps the artifact even though no record names it yet.
	if _, err := f.im.ResolveURI(ctx, "artifact:"+string(resolved)); err != nil {
		t.Fatal(err)
	}

	deleted, err := f.im.collect(ctx, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := map[artifact.Digest]bool{granted: true, unused: true}
	if len(deleted) != len(want) || !want[deleted[0]] || !want[deleted[1]] {
		t.Fatalf("deleted %v, want %v", deleted, want)
	}
	for _, d := range []artifact.Digest{byImage, bySet, byInstance, resolved} {
		if !f.arts.Has(d) {
			t.Errorf("referenced artifact %s was deleted", d)
		}
		if _, err := f.arts.Unpack(ctx, d); err != nil {
			t.Errorf("unpack %s: %v", d, err)
		}
	}
	for d := range want {
		if f.arts.Has(d) {
			t.Errorf("unused artifact %s kept", d)
		}
		if _, err := os.Stat(filepath.Join(f.arts.Dir(), "images", "sha256", d.Hex())); !os.IsNotExist(err) {
			t.Errorf("unpacked %s kept: %v", d, err)
		}
	}
	// The deleted artifact's grant went with it; the used one's stayed.
	if used, _, err := state.StorageUsage(ctx, f.st, "sub"); err != nil || used != 100 {
		t.Errorf("storage usage after collection = %d, %v; want 100", used, err)
	}
	if _, err := f.st.Get(ctx, model.ArtifactGrantKey("sub", string(granted))); err == nil {
		t.Error("the grant of a deleted artifact is still there")
	}
	if _, err := f.im.ResolveURI(ctx, "artifact:"+string(unused)); err == nil {
		t.Error("a deleted artifact still resolves")
	}
}

// TestRunGCAfterImageDelete: deleting the image version that was an
// artifact's only reference gets it collected shortly after.
func TestRunGCAfterImageDelete(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newGCFixture(t)
	d := f.add("2.0.0")
	key := model.ImageKey("p", "o", "s", "2.0.0")
	f.put(key, &model.ImageVersion{Publisher: "p", Offer: "o", SKU: "s", Version: "2.0.0", Digest: string(d)})
	f.im.gc.interval, f.im.gc.grace, f.im.gc.afterDelete = time.Hour, time.Minute, 10*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- f.im.runGC(ctx, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runGC: %v", err)
		}
	}()
	time.Sleep(200 * time.Millisecond) // the first sweep keeps it
	if !f.arts.Has(d) {
		t.Fatal("a referenced artifact was collected")
	}
	if _, err := f.st.Txn(ctx, nil, store.Delete(key)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.arts.Has(d) {
		if time.Now().After(deadline) {
			t.Fatal("the artifact of a deleted image was not collected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

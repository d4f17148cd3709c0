package server_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/testenv"
)

const uploadAPI = "2015-12-01-preview"

func uploadPath(sub string) string {
	return "/subscriptions/" + sub + "/providers/vmssd.Storage/artifacts?api-version=" + uploadAPI
}

const processManifest = `{"format":"vmssd.process/v1","osType":"Linux","entrypoint":["${VMSSD_GUEST}","guest"],"healthProbe":{"protocol":"http","path":"/health"}}`

// artifactOf is a gzip'd tar artifact whose rootfs holds one file of
// content (what it costs unpacked).
func artifactOf(t testing.TB, content io.Reader, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range []*tar.Header{
		{Name: "manifest.json", Mode: 0o644, Size: int64(len(processManifest))},
		{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "rootfs/data", Mode: 0o644, Size: size},
	} {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "manifest.json":
			io.WriteString(tw, processManifest)
		case "rootfs/data":
			if _, err := io.Copy(tw, io.LimitReader(content, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// zeroBomb is an artifact whose rootfs holds n (a multiple of 1 MiB) zero
// bytes: gzip members concatenated (gzip readers read them as one
// stream), the 1 MiB member of zeros compressed once and repeated, so
// that a 1 GiB bomb costs nothing to build.
func zeroBomb(t testing.TB, n int64) []byte {
	t.Helper()
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	var head bytes.Buffer
	tw := tar.NewWriter(&head)
	for _, h := range []*tar.Header{
		{Name: "manifest.json", Mode: 0o644, Size: int64(len(processManifest))},
		{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "rootfs/data", Mode: 0o644, Size: n},
	} {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			io.WriteString(tw, processManifest)
		}
	}
	out := member(head.Bytes()) // the data entry's header is written; tw is left open
	mib := member(make([]byte, 1<<20))
	for range n >> 20 {
		out = append(out, mib...)
	}
	return append(out, member(make([]byte, 1024))...) // the end of the archive
}

func blobs(t testing.TB, e *testenv.Env) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.Config.DataDir, "artifacts", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}

func putRecord(t testing.TB, e *testenv.Env, key string, v any) {
	t.Helper()
	if _, err := e.Server.Store.Txn(context.Background(), nil, state.PutOp(key, v)); err != nil {
		t.Fatal(err)
	}
}

// TestUploadZipBomb: a 1 MiB gzip of 1 GiB of zeros is refused while it
// is read, by the size table's largest OS disk, and leaves nothing.
func TestUploadZipBomb(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	sizes, _, err := state.List[model.VMSize](ctx, e.Server.Store, model.PrefixSizes)
	if err != nil {
		t.Fatal(err)
	}
	for _, sz := range sizes {
		sz.OSDiskSizeMB = 512 // no size takes an image of more than 512 MiB
		putRecord(t, e, model.SizeKey(sz.Name), sz)
	}
	bomb := zeroBomb(t, 1<<30)
	if len(bomb) > 2<<20 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	before := blobs(t, e)
	start := time.Now()
	r := e.Do(http.MethodPost, uploadPath(e.Sub), bomb)
	if r.Status != http.StatusRequestEntityTooLarge || r.ErrorCode() != "ImageTooLarge" ||
		!strings.Contains(string(r.Body), fmt.Sprint(512<<20)) {
		t.Fatalf("upload of a zip bomb: %d %s; want 413 ImageTooLarge naming the bound", r.Status, r.Body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing the bomb took %s", d)
	}
	if after := blobs(t, e); len(after) != len(before) {
		t.Errorf("artifacts %v after a refused upload, want %v", after, before)
	}
	tmp, _ := os.ReadDir(filepath.Join(e.Config.DataDir, "artifacts", "tmp"))
	if len(tmp) != 0 {
		t.Errorf("artifacts/tmp holds %d entries", len(tmp))
	}
	if used, _, err := state.StorageUsage(ctx, e.Server.Store, e.Sub); err != nil || used != 0 {
		t.Errorf("storage usage %d, %v; want 0", used, err)
	}
	// The same shape within the bound is a valid artifact: the bound, not
	// the shape, refused the bomb.
	if r := e.Do(http.MethodPost, uploadPath(e.Sub), zeroBomb(t, 4<<20)); r.Status != http.StatusCreated ||
		!strings.Contains(string(r.Body), `"unpackedBytes":4194304`) {
		t.Errorf("a 4 MiB archive of zeros: %d %s", r.Status, r.Body)
	}
}

// TestUploadStorageQuota: uploads into a subscription count their unpacked
// bytes against its storage quota; concurrent uploads never overshoot it,
// and the refusal is Azure's (409 OperationNotAllowed, QuotaExceeded).
func TestUploadStorageQuota(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	const size = 1 << 20
	putRecord(t, e, model.QuotaKey(e.Sub), model.Quota{Sub: e.Sub, StorageBytes: 2*size + size/2})

	const n = 4 // at most this many uploads run at once
	arts := make([][]byte, n)
	for i := range arts {
		arts[i] = artifactOf(t, rand.Reader, size) // distinct artifacts
	}
	res := make([]*testenv.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i] = e.Do(http.MethodPost, uploadPath(e.Sub), arts[i]) })
	}
	wg.Wait()
	created := 0
	for i, r := range res {
		if r.Status == http.StatusCreated {
			created++
			var up struct {
				UnpackedBytes int64 `json:"unpackedBytes"`
			}
			if err := json.Unmarshal(r.Body, &up); err != nil || up.UnpackedBytes != size {
				t.Errorf("upload %d: %s", i, r.Body)
			}
			continue
		}
		var body struct {
			Error struct {
				Code, Message string
				Details       []struct{ Code string }
			}
		}
		_ = json.Unmarshal(r.Body, &body)
		if r.Status != http.StatusConflict || body.Error.Code != "OperationNotAllowed" ||
			len(body.Error.Details) != 1 || body.Error.Details[0].Code != "QuotaExceeded" ||
			!strings.Contains(body.Error.Message, fmt.Sprintf("Current Limit: %d, Current Usage: %d, Additional Required: ", 2*size+size/2, 2*size)) {
			// Additional Required is the artifact's size when it was read
			// whole, more than the room left when the room cut it short.
			t.Errorf("upload %d: %d %s; want 409 OperationNotAllowed/QuotaExceeded naming limit, usage and need", i, r.Status, r.Body)
		}
	}
	if created != 2 {
		t.Fatalf("%d uploads of 1 MiB accepted under a quota of 2.5 MiB", created)
	}
	if used, _, err := state.StorageUsage(ctx, e.Server.Store, e.Sub); err != nil || used != 2*size {
		t.Fatalf("storage usage %d, %v; want %d", used, err, 2*size)
	}
	// Uploading again what the subscription has costs nothing.
	for i, r := range res {
		if r.Status == http.StatusCreated {
			if again := e.Do(http.MethodPost, uploadPath(e.Sub), arts[i]); again.Status != http.StatusCreated {
				t.Errorf("re-upload: %d %s", again.Status, again.Body)
			}
		}
	}
	// A bomb beyond the quota's room is cut short and refused as quota.
	r := e.Do(http.MethodPost, uploadPath(e.Sub), zeroBomb(t, 256<<20))
	if r.Status != http.StatusConflict || r.ErrorCode() != "OperationNotAllowed" {
		t.Errorf("a bomb beyond the quota: %d %s", r.Status, r.Body)
	}
	if used, _, _ := state.StorageUsage(ctx, e.Server.Store, e.Sub); used != 2*size {
		t.Errorf("storage usage %d after refusals, want %d", used, 2*size)
	}
}

// TestUploadConcurrencyBound: beyond the bound, an upload is refused at
// once with 503 and Retry-After; a freed slot takes the next.
func TestUploadConcurrencyBound(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	const bound = 4
	var (
		pipes []*io.PipeWriter
		wg    sync.WaitGroup
	)
	for range bound {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, err := http.NewRequest(http.MethodPost, e.Server.URL+uploadPath(e.Sub), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.Token)
		wg.Go(func() {
			if resp, err := e.HTTP.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		pw.Write([]byte{0x1f}) // the start of a gzip stream; the rest never comes
	}
	defer func() {
		for _, pw := range pipes {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
		wg.Wait()
	}()
	small := artifactOf(t, zeros{}, 10)
	var busy *testenv.Response
	testenv.Eventually(t, 10*time.Second, "an upload beyond the bound refused", func() bool {
		busy = e.Do(http.MethodPost, uploadPath(e.Sub), small)
		return busy.Status == http.StatusServiceUnavailable
	})
	if busy.ErrorCode() != "ServerBusy" || busy.Header.Get("Retry-After") == "" {
		t.Errorf("refused upload: %d %v %s", busy.Status, busy.Header, busy.Body)
	}
	for _, pw := range pipes {
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}
	wg.Wait()
	pipes = nil
	// The slots free as the handlers return (just after their answers).
	testenv.Eventually(t, 5*time.Second, "an upload after the others ended", func() bool {
		return e.Do(http.MethodPost, uploadPath(e.Sub), small).Status == http.StatusCreated
	})
}

// TestUploadBackingFileTrick: a qcow2 disk whose backing file is the
// operator's credential is refused at import with the client's 400.
func TestUploadBackingFileTrick(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: qemu-img not installed: %v", err)
		}
		t.Skipf("qemu-img not installed: %v", err)
	}
	e := testenv.Start(t, testenv.Options{})
	cred := filepath.Join(e.Config.DataDir, "operator.json")
	disk := filepath.Join(t.TempDir(), "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", cred, "-F", "raw", disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	body, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	manifest := `{"format":"vmssd.qemu/v1","osType":"Linux","qemu":{"disk":"disk.qcow2"},"healthProbe":{"protocol":"http","path":"/health"}}`
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		h    *tar.Header
		body []byte
	}{
		{&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest))}, []byte(manifest)},
		{&tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{&tar.Header{Name: "rootfs/disk.qcow2", Mode: 0o644, Size: int64(len(body))}, body},
	} {
		if err := tw.WriteHeader(f.h); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.body)
	}
	tw.Close()
	zw.Close()
	before := blobs(t, e)
	r := e.Do(http.MethodPost, uploadPath(e.Sub), buf.Bytes())
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidImageArtifact" || !strings.Contains(string(r.Body), "backing file") {
		t.Fatalf("upload of a disk backed by the operator credential: %d %s; want 400 InvalidImageArtifact", r.Status, r.Body)
	}
	secret, err := os.ReadFile(cred)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(r.Body, secret) {
		t.Fatal("the answer carries the credential")
	}
	if after := blobs(t, e); len(after) != len(before) {
		t.Errorf("artifacts %v after a refused upload, want %v", after, before)
	}
}

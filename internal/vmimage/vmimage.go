// Package vmimage builds vmssd's demo virtual machine image for tests. It
// runs scripts/build-guest.sh, which makes a vmssd.qemu/v1 artifact (a
// Debian cloud kernel and a busybox initramfs whose guest serves /health,
// /status and /metadata/instance on port 80; the script documents the
// guest) named ArtifactName(version).
//
// Build is what tests call: it builds an artifact once per test binary and
// (version, unhealthy), reusing an earlier build from the cache directory
// when the script has not changed, and skips the test when the host cannot
// build guests (not Debian amd64, tools missing and not root, no network
// for the first kernel download) unless VMSSD_E2E=1, which turns the skip
// into a failure. Run runs the script itself.
package vmimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables.
const (
	// EnvE2E set to "1" makes missing build prerequisites fail tests
	// instead of skipping them.
	EnvE2E = "VMSSD_E2E"
	// EnvCache is the cache directory, shared with the script (kernel
	// packages, their extracted files and Build's artifacts). Default:
	// os.UserCacheDir()/vmssd/guest-build.
	EnvCache = "VMSSD_GUEST_CACHE"
	// EnvScript overrides the script's path.
	EnvScript = "VMSSD_BUILD_GUEST"
	// EnvRebuild set to "1" makes Build run the script even when its cache
	// holds a build by the same script (to pick up a newer kernel package).
	EnvRebuild = "VMSSD_GUEST_REBUILD"
)

// ScriptPath is the script's path relative to the module root.
const ScriptPath = "scripts/build-guest.sh"

// exitMissing is the script's exit status for a missing prerequisite.
const exitMissing = 3

// buildTimeout bounds one run of the script (the first one downloads the
// kernel package, about 27 MB).
const buildTimeout = 15 * time.Minute

// ErrPrerequisite is wrapped by the errors of Prerequisites and Run when
// the host cannot build guests.
var ErrPrerequisite = errors.New("vmimage: guest build prerequisites missing")

// ArtifactName returns the file name of the artifact the script writes for
// version.
func ArtifactName(version string) string {
	return "vmssd-guest-" + version + ".tar.gz"
}

// Script returns the absolute path of the build script: $VMSSD_BUILD_GUEST,
// or ScriptPath in the module root (found from the working directory up,
// then from this source file).
func Script() (string, error) {
	if p := os.Getenv(EnvScript); p != "" {
		return filepath.Abs(p)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if fileExists(filepath.Join(dir, "go.mod")) {
				p := filepath.Join(dir, filepath.FromSlash(ScriptPath))
				if fileExists(p) {
					return p, nil
				}
				break // another module's root
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w: %s not found above the working directory (set %s)", ErrPrerequisite, ScriptPath, EnvScript)
}

// Prerequisites reports, without running the script, whether this host
// looks able to build guests: Linux on amd64 with bash and Debian's tools;
// unless running as root (the script then installs what is missing), the
// busybox-static, cpio and qemu-utils packages installed. Network access
// for the first kernel download is not checked (Run reports it). The error
// wraps ErrPrerequisite.
func Prerequisites() error {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return fmt.Errorf("%w: the guest builds on linux/amd64 only, not %s/%s", ErrPrerequisite, runtime.GOOS, runtime.GOARCH)
	}
	if _, err := Script(); err != nil {
		return err
	}
	for _, cmd := range []string{"bash", "apt-get", "apt-cache", "dpkg", "dpkg-deb", "dpkg-query", "tar", "gzip", "flock", "sha256sum"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("%w: no %s (a Debian host is needed)", ErrPrerequisite, cmd)
		}
	}
	if os.Geteuid() == 0 {
		return nil
	}
	for _, pkg := range []string{"busybox-static", "cpio", "qemu-utils"} {
		out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", pkg).Output()
		if err != nil || string(out) != "ii " {
			return fmt.Errorf("%w: package %s is not installed (and not running as root to install it)", ErrPrerequisite, pkg)
		}
	}
	return nil
}

// CacheDir returns the cache directory ($VMSSD_GUEST_CACHE, or
// os.UserCacheDir()/vmssd/guest-build, or a directory under os.TempDir()).
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vmssd", "guest-build")
	}
	return filepath.Join(os.TempDir(), "vmssd-guest-build-"+strconv.Itoa(os.Getuid()))
}

// Run runs the build script: it writes ArtifactName(version) into outDir
// (replacing an earlier one atomically) and returns its absolute path.
// A missing prerequisite gives an error wrapping ErrPrerequisite; every
// error carries the end of the script's output.
func Run(ctx context.Context, outDir, version string, unhealthy bool) (string, error) {
	script, err := Script()
	if err != nil {
		return "", err
	}
	outDir, err = filepath.Abs(outDir)
	if err != nil {
		return "", err
	}
	args := []string{script, outDir, version}
	if unhealthy {
		args = append(args, "--unhealthy")
	}
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Env = append(os.Environ(), EnvCache+"="+CacheDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcessGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return filepath.Join(outDir, ArtifactName(version)), nil
	case errors.As(err, &exit) && exit.ExitCode() == exitMissing:
		return "", fmt.Errorf("%w: %s:\n%s", ErrPrerequisite, ScriptPath, tail(out.Bytes()))
	default:
		return "", fmt.Errorf("vmimage: %s %s: %w:\n%s", ScriptPath, strings.Join(args[1:], " "), err, tail(out.Bytes()))
	}
}

// Build returns the path of a built artifact for version (the unhealthy
// variant when unhealthy is true), building it at most once per test
// binary. Builds are kept in CacheDir()/artifacts/ and reused while the
// script is unchanged (see EnvRebuild). Callers must not modify the file.
// Build skips t when the host cannot build guests, or fails it when
// VMSSD_E2E=1.
func Build(t testing.TB, version string, unhealthy bool) string {
	t.Helper()
	if err := Prerequisites(); err != nil {
		SkipOrFail(t, err)
	}
	key := version + "\x00" + strconv.FormatBool(unhealthy)
	buildsMu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = cachedBuild(version, unhealthy) })
	if b.err != nil {
		if errors.Is(b.err, ErrPrerequisite) {
			SkipOrFail(t, b.err)
		}
		t.Fatal(b.err)
	}
	return b.path
}

// SkipOrFail skips t because of err, or fails it when VMSSD_E2E=1.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("%s=1 and the guest cannot be built: %v", EnvE2E, err)
	} else {
		t.Skipf("cannot build the guest (%s=1 to fail instead): %v", EnvE2E, err)
	}
}

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// cachedBuild builds into CacheDir()/artifacts/VERSION[-unhealthy]/ unless
// that directory holds a build by the same script and settings (its stamp).
func cachedBuild(version string, unhealthy bool) (string, error) {
	script, err := Script()
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(script)
	if err != nil {
		return "", fmt.Errorf("vmimage: %w", err)
	}
	h := sha256.New()
	h.Write(src)
	for _, env := range []string{"SOURCE_DATE_EPOCH", "VMSSD_KERNEL_PKG"} {
		fmt.Fprintf(h, "\x00%s=%s", env, os.Getenv(env))
	}
	stamp := hex.EncodeToString(h.Sum(nil)) + "\n"

	variant := version
	if unhealthy {
		variant += "-unhealthy"
	}
	if strings.ContainsAny(variant, `/\`) || variant == "" || variant[0] == '.' {
		return "", fmt.Errorf("vmimage: version %q is not a valid image version", version)
	}
	dir := filepath.Join(CacheDir(), "artifacts", variant)
	path := filepath.Join(dir, ArtifactName(version))
	stampFile := filepath.Join(dir, ".stamp")
	if os.Getenv(EnvRebuild) != "1" && fileExists(path) {
		if old, err := os.ReadFile(stampFile); err == nil && string(old) == stamp {
			return path, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("vmimage: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if _, err := Run(ctx, dir, version, unhealthy); err != nil {
		return "", err
	}
	// The stamp follows the artifact, atomically: a reader that sees it
	// also sees the artifact it describes.
	tmp, err := os.CreateTemp(dir, ".stamp-*")
	if err != nil {
		return "", fmt.Errorf("vmimage: %w", err)
	}
	_, err = tmp.WriteString(stamp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), stampFile)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("vmimage: %w", err)
	}
	return path, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// tail returns the last lines of a command's output.
func tail(b []byte) string {
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}

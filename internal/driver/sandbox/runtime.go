package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// ErrUnavailable is wrapped by Check's error when this host cannot run
// sandboxes (no runc, or vmssd is not root).
var ErrUnavailable = errors.New("sandbox: not available on this host")

// ErrNotExist is wrapped by State's error for an unknown container.
var ErrNotExist = errors.New("sandbox: no such container")

// ConfigFile is the name of a bundle's OCI config.
const ConfigFile = "config.json"

// Check reports whether containers can be run here: the runc binary
// (runcPath, or "runc" in PATH when empty) exists and this process is root.
// It returns the binary's path, or an error wrapping ErrUnavailable.
func Check(runcPath string) (string, error) {
	if runcPath == "" {
		runcPath = "runc"
	}
	p, err := exec.LookPath(runcPath)
	if err != nil {
		return "", fmt.Errorf("%w: runc not found (apt-get install runc): %v", ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: vmssd must run as root to start containers", ErrUnavailable)
	}
	return p, nil
}

// Runtime drives the runc binary. Its methods are safe for concurrent use.
type Runtime struct {
	runc string
	root string
}

// NewRuntime returns a Runtime using the runc binary at runcPath (see Check)
// and keeping runc's container state in root (runc --root), created if
// needed. Give every vmssd its own root.
func NewRuntime(runcPath, root string) (*Runtime, error) {
	p, err := Check(runcPath)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("sandbox: state root %q is not absolute", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return &Runtime{runc: p, root: root}, nil
}

// WriteBundle writes spec as dir/config.json (atomically). The container's
// mapped root must be able to reach the root file system in dir: see
// GuardDir.
func WriteBundle(dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, ConfigFile), spec); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// ReadBundle reads dir/config.json.
func ReadBundle(dir string) (*specs.Spec, error) {
	var s specs.Spec
	if err := fsutil.ReadJSON(filepath.Join(dir, ConfigFile), &s); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return &s, nil
}

// command returns a runc command with the global flags.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.runc, append([]string{"--root", r.root}, args...)...)
	// Own session: the container outlives vmssd and does not get its
	// terminal's signals. runc itself dies with vmssd (the container does
	// not: the signal is not inherited): an orphaned runc still creating a
	// container would race with the next vmssd's recovery.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs a runc command and returns its stdout; errors carry stderr.
func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return out.Bytes(), fmt.Errorf("runc %s: %s", args[0], msg)
	}
	return out.Bytes(), nil
}

// Run creates and starts container id from bundle (runc run --detach). The
// container's standard input is /dev/null and its standard output and
// error are stdio; runc's own errors also go to stdio. It returns the host
// pid of the container's init process.
func (r *Runtime) Run(ctx context.Context, id, bundle string, stdio *os.File) (int, error) {
	if !ValidContainerID(id) {
		return 0, fmt.Errorf("sandbox: invalid container id %q", id)
	}
	pidFile := filepath.Join(bundle, "init.pid")
	logFile := filepath.Join(bundle, "runc.log")
	// What a previous run left, also when runc was killed with vmssd: runc
	// writes the pid file through a temporary "."+name (opened O_EXCL,
	// then renamed), and a runc killed in between leaves it, failing every
	// later run with "file exists".
	for _, f := range []string{pidFile, pidTempFile(pidFile), logFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("sandbox: runc run %s: %w", id, err)
		}
	}
	cmd := r.command(ctx, "--log", logFile, "--log-format", "json",
		"run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id)
	// Both must be the *os.File itself: the container inherits them, and a
	// pipe would keep cmd.Wait waiting for the container to end.
	cmd.Stdout, cmd.Stderr = stdio, stdio
	if err := cmd.Run(); err != nil {
		msg := runcError(logFile)
		if msg == "" {
			msg = err.Error()
		}
		return 0, fmt.Errorf("sandbox: runc run %s: %s", id, msg)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("sandbox: runc run %s: pid file: %w", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("sandbox: runc run %s: bad pid file %q", id, b)
	}
	return pid, nil
}

// pidTempFile is the temporary file runc writes pidFile through.
func pidTempFile(pidFile string) string {
	return filepath.Join(filepath.Dir(pidFile), "."+filepath.Base(pidFile))
}

// runcError returns the last error runc logged in its JSON log file.
func runcError(logFile string) string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	msg := ""
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// State is what runc state reports.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"` // creating, created, running, paused, stopped
	Bundle string `json:"bundle"`
}

// State returns the state of container id, or an error wrapping ErrNotExist.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist") {
			return State{}, fmt.Errorf("sandbox: container %s: %w", id, ErrNotExist)
		}
		return State{}, fmt.Errorf("sandbox: %w", err)
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return State{}, fmt.Errorf("sandbox: runc state %s: %w", id, err)
	}
	return st, nil
}

// Kill sends sig to every process of container id (runc kill --all).
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	if _, err := r.run(ctx, "kill", "--all", id, strconv.Itoa(int(sig))); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// Delete removes container id, killing what still runs in it (runc delete
// --force). Deleting an unknown container is not an error; its state
// directory, when a runc killed while creating it left one without a state
// file (which makes the next run of the id fail), is removed.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if _, err := r.run(ctx, "delete", "--force", id); err != nil {
		if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist") {
			return r.removeStaleState(id)
		}
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// removeStaleState removes the state directory of container id when it
// has no state file (runc sees no container there, yet refuses to create
// one).
func (r *Runtime) removeStaleState(id string) error {
	if !ValidContainerID(id) || id == "." || id == ".." {
		return nil
	}
	dir := filepath.Join(r.root, id)
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("sandbox: stale state of container %s: %w", id, err)
	}
	return nil
}

// List returns the containers runc knows in this runtime's state root.
func (r *Runtime) List(ctx context.Context) ([]State, error) {
	out, err := r.run(ctx, "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var sts []State
	if len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == "null" {
		return nil, nil
	}
	if err := json.Unmarshal(out, &sts); err != nil {
		return nil, fmt.Errorf("sandbox: runc list: %w", err)
	}
	return sts, nil
}

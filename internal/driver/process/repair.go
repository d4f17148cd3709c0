package process

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmssd/vmssd/internal/driver"
)

// lostDir reports whether the directory of in (or its spec.json) is gone
// from under the driver: removed by someone else while vmssd runs.
func (in *instance) lostDir() bool {
	return !exists(in.Path(specFile))
}

// repairLocked rebuilds the directory of in when it vanished: a fresh disk
// from the image and the driver's in-memory spec, manifest and state. A
// guest still running on the lost directory is restarted on the new one.
// It reports whether it repaired anything. Called with op held.
func (d *Driver) repairLocked(ctx context.Context, in *instance) (bool, error) {
	if !in.lostDir() {
		return false, nil
	}
	in.Mu.Lock()
	spec, m, st := in.Spec, in.manifest, in.st
	in.Mu.Unlock()
	d.log.Warn("instance directory vanished; rebuilding it from the image", "id", in.ID, "dir", in.Dir)
	if err := os.MkdirAll(d.opts.Root, 0o700); err != nil {
		return false, fmt.Errorf("process: repair %s: %w", in.ID, err)
	}
	raw, err := json.Marshal(m.Manifest)
	if err != nil {
		return false, fmt.Errorf("process: repair %s: %w", in.ID, err)
	}
	if _, lraw, err := loadImage(spec.ImageDir); err == nil {
		raw = lraw
	}
	iso := in.isolation()
	if iso == IsolationRunc {
		if d.sb == nil {
			return false, fmt.Errorf("process: repair %s: %w: %v", in.ID, driver.ErrSandboxUnavailable, d.sandboxErr)
		}
		unpin, err := d.pinLayer(ctx, spec)
		if err != nil {
			return false, fmt.Errorf("process: repair %s: %w", in.ID, err)
		}
		defer unpin()
	}
	// Whatever is left of it goes: a half-removed directory cannot be
	// trusted.
	trash := filepath.Join(d.opts.Root, ".repair-"+in.ID)
	if err := os.Rename(in.Dir, trash); err == nil {
		defer os.RemoveAll(trash)
	}
	if err := d.buildInstanceDir(ctx, spec, raw, st); err != nil {
		return false, fmt.Errorf("process: repair %s: %w", in.ID, err)
	}
	in.Mu.Lock()
	running := in.proc != nil
	in.Mu.Unlock()
	if running {
		// The guest runs on what was removed: start it on the new disk.
		if err := d.stopProcLocked(ctx, in, false); err != nil {
			return true, fmt.Errorf("process: repair %s: %w", in.ID, err)
		}
	}
	if st.Desired == driver.PowerRunning && running {
		in.LastExit = "lost its instance directory"
		if err := d.spawnLocked(in, true); err != nil {
			delay := in.NextBackoff(d.backoff, 0)
			in.update(func(st *state) {
				st.SetPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
			})
			if perr := in.persist(); perr != nil {
				d.log.Error("persist instance state", "id", in.ID, "err", perr)
			}
			d.goRestart(in, delay)
		}
	}
	return true, in.persist()
}

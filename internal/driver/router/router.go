// Package router is a Driver that puts each instance on the driver for its
// image's format: a process image gets a supervised process, a VM image a
// QEMU virtual machine. A host runs one router, so the controller never has
// to know which kind of instance it manages.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/vmssd/vmssd/internal/driver"
)

// Driver routes by image format.
type Driver struct {
	formats map[string]driver.Driver
	missing map[string]string // format -> why no driver serves it here
	all     []driver.Driver

	mu    sync.Mutex
	owner map[string]driver.Driver
}

// New returns a router. formats maps a manifest format to its driver;
// missing explains formats this host cannot serve (for error messages).
func New(formats map[string]driver.Driver, missing map[string]string) *Driver {
	d := &Driver{formats: formats, missing: missing, owner: map[string]driver.Driver{}}
	seen := map[driver.Driver]bool{}
	for _, sub := range formats {
		if !seen[sub] {
			seen[sub] = true
			d.all = append(d.all, sub)
		}
	}
	return d
}

// Name is "router".
func (d *Driver) Name() string { return "router" }

// Drivers lists the sub-drivers.
func (d *Driver) Drivers() []driver.Driver { return d.all }

func (d *Driver) pick(imageDir string) (driver.Driver, error) {
	b, err := os.ReadFile(filepath.Join(imageDir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", driver.ErrImageInvalid, err)
	}
	var m struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", driver.ErrImageInvalid, err)
	}
	if sub, ok := d.formats[m.Format]; ok {
		return sub, nil
	}
	if why, ok := d.missing[m.Format]; ok {
		return nil, fmt.Errorf("%w: this host cannot run %s images: %s", driver.ErrImageInvalid, m.Format, why)
	}
	return nil, fmt.Errorf("%w: no driver for image format %q", driver.ErrImageInvalid, m.Format)
}

func (d *Driver) of(id string) (driver.Driver, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sub, ok := d.owner[id]; ok {
		return sub, nil
	}
	return nil, fmt.Errorf("%w: %s", driver.ErrNotFound, id)
}

func (d *Driver) setOwner(id string, sub driver.Driver) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sub == nil {
		delete(d.owner, id)
	} else {
		d.owner[id] = sub
	}
}

// Create creates the instance on its image's driver.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	sub, err := d.pick(spec.ImageDir)
	if err != nil {
		return driver.Status{}, err
	}
	if old, err := d.of(spec.ID); err == nil && old != sub {
		if err := old.Delete(ctx, spec.ID); err != nil && !errors.Is(err, driver.ErrNotFound) {
			return driver.Status{}, err
		}
	}
	d.setOwner(spec.ID, sub)
	return sub.Create(ctx, spec)
}

// Reimage rebuilds the instance; an image of another format moves it to
// that format's driver.
func (d *Driver) Reimage(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	sub, err := d.pick(spec.ImageDir)
	if err != nil {
		return driver.Status{}, err
	}
	old, err := d.of(spec.ID)
	if err != nil || old == sub {
		d.setOwner(spec.ID, sub)
		return sub.Reimage(ctx, spec)
	}
	if err := old.Delete(ctx, spec.ID); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return driver.Status{}, err
	}
	d.setOwner(spec.ID, sub)
	return sub.Create(ctx, spec)
}

func (d *Driver) call(id string, f func(driver.Driver) (driver.Status, error)) (driver.Status, error) {
	sub, err := d.of(id)
	if err != nil {
		return driver.Status{}, err
	}
	return f(sub)
}

// Start starts an instance.
func (d *Driver) Start(ctx context.Context, id string) (driver.Status, error) {
	return d.call(id, func(s driver.Driver) (driver.Status, error) { return s.Start(ctx, id) })
}

// Stop stops an instance.
func (d *Driver) Stop(ctx context.Context, id string, graceful bool) (driver.Status, error) {
	return d.call(id, func(s driver.Driver) (driver.Status, error) { return s.Stop(ctx, id, graceful) })
}

// Deallocate deallocates an instance.
func (d *Driver) Deallocate(ctx context.Context, id string) (driver.Status, error) {
	return d.call(id, func(s driver.Driver) (driver.Status, error) { return s.Deallocate(ctx, id) })
}

// Restart restarts an instance.
func (d *Driver) Restart(ctx context.Context, id string) (driver.Status, error) {
	return d.call(id, func(s driver.Driver) (driver.Status, error) { return s.Restart(ctx, id) })
}

// Inspect inspects an instance.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	return d.call(id, func(s driver.Driver) (driver.Status, error) { return s.Inspect(ctx, id) })
}

// Delete deletes an instance.
func (d *Driver) Delete(ctx context.Context, id string) error {
	sub, err := d.of(id)
	if err != nil {
		return err
	}
	if err := sub.Delete(ctx, id); err != nil {
		return err
	}
	d.setOwner(id, nil)
	return nil
}

// List lists every sub-driver's instances.
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	var out []driver.Status
	for _, sub := range d.all {
		sts, err := sub.List(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, sts...)
	}
	return out, nil
}

// Recover recovers every sub-driver and learns who owns what.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	var out []driver.Status
	var errs []error
	for _, sub := range d.all {
		sts, err := sub.Recover(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sub.Name(), err))
		}
		for _, s := range sts {
			d.setOwner(s.ID, sub)
		}
		out = append(out, sts...)
	}
	return out, errors.Join(errs...)
}

// Console returns an instance's console, when its driver captures one.
func (d *Driver) Console(ctx context.Context, id string) ([]byte, error) {
	sub, err := d.of(id)
	if err != nil {
		return nil, err
	}
	cr, ok := sub.(driver.ConsoleReader)
	if !ok {
		return nil, fmt.Errorf("driver %s does not capture consoles", sub.Name())
	}
	return cr.Console(ctx, id)
}

// Close closes every sub-driver.
func (d *Driver) Close() error {
	var errs []error
	for _, sub := range d.all {
		errs = append(errs, sub.Close())
	}
	return errors.Join(errs...)
}

package controller

import (
	"context"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/reconcile"
	"github.com/vmssd/vmssd/internal/store"
)

// Network is what the controller asks of the host-side network manager
// (internal/netctl implements it; nil: no networking).
type Network interface {
	// Attach gives the instance's NICs their private addresses
	// (idempotent: the same ones across restarts and reimages) and returns
	// the driver's view of its primary NIC.
	Attach(ctx context.Context, set *model.ScaleSet, inst *model.Instance) (driver.Network, error)
	// ReleaseOps are the store operations freeing the addresses of one
	// instance (id >= 0) or of the whole set (id < 0), for the transaction
	// that deletes the records.
	ReleaseOps(ctx context.Context, set model.SetRef, id int64) ([]store.Op, error)
	// Leave takes the instance out of load balancer rotation and returns
	// when its connections are drained (or the drain period is over).
	Leave(ctx context.Context, inst *model.Instance) error
	// Rejoin ends the drain after the host acted: the instance returns to
	// rotation when its probe passes.
	Rejoin(ctx context.Context, inst *model.Instance)
	// Health is the load balancer probe's verdict when the set's
	// networkProfile.healthProbe names one (ok false otherwise); gen
	// changes whenever the verdict does (views are cached by Gen).
	Health(inst *model.Instance, observed host.Health) (h host.Health, gen uint64, ok bool)
}

// takesDown says whether a host action takes an instance out of service
// (it leaves load balancer rotation first) and whether it comes back after
// it (it rejoins when the action is done).
func takesDown(k reconcile.ActionKind) (leave, rejoin bool) {
	switch k {
	case reconcile.ActUpgrade, reconcile.ActReimage, reconcile.ActRestart:
		return true, true
	case reconcile.ActStop, reconcile.ActDeallocate, reconcile.ActRemove:
		return true, false
	case reconcile.ActStart:
		return false, true
	}
	return false, false
}

// drainFor drains the instance before action a and returns what to run
// when the action is over (rejoin, or nothing).
func (c *Controller) drainFor(ctx context.Context, inst *model.Instance, a reconcile.Action) func() {
	if c.opts.Network == nil {
		return func() {}
	}
	leave, rejoin := takesDown(a.Kind)
	if leave {
		if err := c.opts.Network.Leave(ctx, inst); err != nil {
			c.log.Warn("load balancer drain failed", "set", inst.Ref().String(), "instance", inst.ID, "err", err)
		}
	}
	if !rejoin {
		return func() {}
	}
	return func() { c.opts.Network.Rejoin(context.WithoutCancel(ctx), inst) }
}

// releaseOps frees an instance's (or a set's, id < 0) private addresses in
// the transaction that deletes its records.
func (c *Controller) releaseOps(ctx context.Context, set model.SetRef, id int64) ([]store.Op, error) {
	if c.opts.Network == nil {
		return nil, nil
	}
	return c.opts.Network.ReleaseOps(ctx, set, id)
}

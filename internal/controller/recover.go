package controller

import (
	"fmt"
	"runtime/debug"
)

// Panics. A bug, or a store that fails in a way nobody foresaw, must not
// end the process: every goroutine the controller starts recovers. A
// reconcile or host action that panics fails like one that returned an
// error (and is retried with backoff); a panic in the watch, the periodic
// sweeps or an event handler is logged and the loop goes on.

// safely runs fn, logging a panic instead of letting it end the process.
func (c *Controller) safely(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("controller panic recovered", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	fn()
}

// recoverErr turns a panic into *err; use as defer c.recoverErr(what, &err).
func recoverErr(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s panic: %v\n%s", what, r, debug.Stack())
	}
}

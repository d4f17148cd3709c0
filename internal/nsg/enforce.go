package nsg

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"sync"
)

// Key names a NIC on a virtual network: the network's id (driver.Network's
// NetworkID) and its private address.
type Key struct{ NetworkID, IP string }

// Enforcer keeps the NSG tables of the namespaces attached in this process
// in step with the wanted rulesets: the network manager says what each NIC
// wants (Want), the drivers say which namespace holds it (Attach). It is
// shared by both sides of one process (Default), which is why it is keyed
// by virtual network and address, not by anything only one side knows.
type Enforcer struct {
	mu     sync.Mutex
	log    *slog.Logger
	wanted map[Key]*Ruleset
	nss    map[string]*attached // by driver instance id
}

type attached struct {
	key     Key
	ns      *os.File
	applied *Ruleset
	ok      bool // applied is in the namespace
}

// NewEnforcer returns an empty Enforcer.
func NewEnforcer(log *slog.Logger) *Enforcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{log: log, wanted: map[Key]*Ruleset{}, nss: map[string]*attached{}}
}

// Default is the process's Enforcer.
var Default = NewEnforcer(slog.Default())

// Want sets the ruleset of NIC k (nil: no NSG applies) and applies it to
// the namespace holding k, if any. It returns the first error applying.
func (e *Enforcer) Want(k Key, rs *Ruleset) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rs == nil {
		delete(e.wanted, k)
	} else {
		e.wanted[k] = rs
	}
	var first error
	for id, a := range e.nss {
		if a.key == k {
			if err := e.apply(id, a); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// Attach records that instance id's NIC k lives in the network namespace of
// process pid and applies its wanted ruleset there (it replaces an earlier
// attachment of id).
func (e *Enforcer) Attach(id string, k Key, pid int) error {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return fmt.Errorf("nsg: namespace of %d: %w", pid, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.nss[id]; old != nil {
		old.ns.Close()
	}
	a := &attached{key: k, ns: f}
	e.nss[id] = a
	return e.apply(id, a)
}

// Detach forgets instance id's namespace.
func (e *Enforcer) Detach(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.nss[id]; a != nil {
		a.ns.Close()
		delete(e.nss, id)
	}
}

// Applied returns the ruleset in instance id's namespace (for tests and
// diagnostics) and whether id is attached.
func (e *Enforcer) Applied(id string) (*Ruleset, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.nss[id]
	if a == nil {
		return nil, false
	}
	return a.applied, true
}

// apply brings a's namespace to its key's wanted ruleset. Called with mu
// held.
func (e *Enforcer) apply(id string, a *attached) error {
	want := e.wanted[a.key]
	if a.ok && reflect.DeepEqual(a.applied, want) {
		return nil
	}
	if err := Apply(int(a.ns.Fd()), want); err != nil {
		a.ok = false
		return fmt.Errorf("nsg: instance %s: %w", id, err)
	}
	a.applied, a.ok = want, true
	e.log.Debug("network security rules applied", "instance", id, "nic", a.key.IP, "nsg", want != nil)
	return nil
}

package nsg

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
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

// attached is a namespace the enforcer keeps in step. It holds no
// descriptor on it (that would keep a namespace, and the veth in it, alive
// after its container ended): it opens it again by pid and checks it is
// still the same namespace (device and inode) each time.
type attached struct {
	key      Key
	pid      int
	dev, ino uint64
	applied  *Ruleset
	ok       bool // applied is in the namespace
}

func nsPath(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/ns/net" }

func nsID(f *os.File) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// open opens a's namespace, or returns nil when it is gone.
func (a *attached) open() *os.File {
	f, err := os.Open(nsPath(a.pid))
	if err != nil {
		return nil
	}
	if dev, ino, err := nsID(f); err != nil || dev != a.dev || ino != a.ino {
		f.Close()
		return nil
	}
	return f
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
// attachment of id). fresh says the namespace is new (no table of ours
// yet); a recovered one may hold a stale table, which goes when no NSG
// applies any more.
func (e *Enforcer) Attach(id string, k Key, pid int, fresh bool) error {
	f, err := os.Open(nsPath(pid))
	if err != nil {
		return fmt.Errorf("nsg: namespace of %d: %w", pid, err)
	}
	defer f.Close()
	dev, ino, err := nsID(f)
	if err != nil {
		return fmt.Errorf("nsg: namespace of %d: %w", pid, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	a := &attached{key: k, pid: pid, dev: dev, ino: ino}
	if fresh {
		a.ok = true // nothing in it: a nil ruleset needs no apply
	} else {
		a.applied = &Ruleset{} // unknown: whatever is wanted gets applied
	}
	e.nss[id] = a
	return e.apply(id, a)
}

// Detach forgets instance id's namespace.
func (e *Enforcer) Detach(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.nss, id)
}

// Wanted returns the ruleset wanted for NIC k (nil: none).
func (e *Enforcer) Wanted(k Key) *Ruleset {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wanted[k]
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
	f := a.open()
	if f == nil {
		delete(e.nss, id) // its namespace ended
		return nil
	}
	defer f.Close()
	if err := Apply(int(f.Fd()), want); err != nil {
		a.ok = false
		return fmt.Errorf("nsg: instance %s: %w", id, err)
	}
	a.applied, a.ok = want, true
	e.log.Debug("network security rules applied", "instance", id, "nic", a.key.IP, "nsg", want != nil)
	return nil
}

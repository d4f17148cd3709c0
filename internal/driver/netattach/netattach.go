// Package netattach attaches instances to virtual networks on a Linux host:
// one Linux bridge per virtual network, a veth pair for a process
// instance's network namespace, a TAP device for a virtual machine.
//
// Isolation. Instances on one bridge reach each other at layer 2; bridges
// are never routed to each other (nothing here enables forwarding between
// them or gives them an address), so different networks, and tenants, are
// isolated even when their address ranges overlap. The host itself is not
// reachable from a bridge: the bridge has no IPv4 address, IPv6 is
// disabled on it, it answers no ARP request (arp_ignore=8) and strict
// reverse-path filtering (rp_filter=1) drops what an instance sends to one
// of the host's other addresses (its source is not routed via the bridge).
// Instances keep reaching the host's services only through what vmssd
// forwards (the loopback forwards). Within one network, a container cannot
// forge its addresses (the process driver runs it without CAP_NET_ADMIN and
// CAP_NET_RAW); a VM's guest owns its NIC and can (there is no source
// filtering on the bridge ports yet).
//
// Names are deterministic, so that Recover can find a link again and the
// sweep can tell ours from anything else: "vb" (bridge), "vs" (host end of
// an instance's veth), "vp" (its other end before it moves into the
// namespace, where it is renamed eth0) and "vt" (a VM's TAP), followed by 4
// hex digits of the scope (one vmssd data directory: the process and qemu
// drivers of one vmssd share their bridges) and 9 of the network or
// instance id. A veth lives as long as the namespace it was moved into (a
// container's): it vanishes with the container. A TAP is not persistent:
// it vanishes when the last descriptor (QEMU's) closes. What a crash can
// leave (a veth whose end was not moved yet, an empty bridge) Sweep
// removes.
package netattach

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/nsg"
)

// Link name prefixes.
const (
	bridgePrefix = "vb"
	vethPrefix   = "vs"
	peerPrefix   = "vp"
	tapPrefix    = "vt"
)

// GuestIfName is the name of the instance's interface inside its network
// namespace.
const GuestIfName = "eth0"

// bridgeMu serializes bridge creation and removal in this process: an
// attachment must not find its bridge removed by a concurrent detach or
// sweep in the window between creating it and adding a port.
var bridgeMu sync.Mutex

// Available says whether this host can attach instances: Linux with root
// (CAP_NET_ADMIN) and a working netlink.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netattach: not root")
	}
	if _, err := linkList(); err != nil {
		return fmt.Errorf("netattach: netlink: %w", err)
	}
	return nil
}

// Validate checks a driver.Network that asks for an attachment (NetworkID
// set): an IPv4 private address, a prefix length, a gateway in the subnet,
// a unicast MAC. Its errors wrap driver.ErrNetworkInvalid.
func Validate(n driver.Network) error {
	if err := validate(n); err != nil {
		return fmt.Errorf("%w: %w", driver.ErrNetworkInvalid, err)
	}
	return nil
}

func validate(n driver.Network) error {
	if n.NetworkID == "" {
		return nil
	}
	ip := net.ParseIP(n.PrivateIP).To4()
	if ip == nil {
		return fmt.Errorf("netattach: private IP %q is not an IPv4 address", n.PrivateIP)
	}
	if n.PrefixLen < 1 || n.PrefixLen > 30 {
		return fmt.Errorf("netattach: prefix length %d out of 1..30", n.PrefixLen)
	}
	if n.Gateway != "" {
		gw := net.ParseIP(n.Gateway).To4()
		subnet := &net.IPNet{IP: ip.Mask(net.CIDRMask(n.PrefixLen, 32)), Mask: net.CIDRMask(n.PrefixLen, 32)}
		if gw == nil || !subnet.Contains(gw) || gw.Equal(ip) {
			return fmt.Errorf("netattach: gateway %q is not another address of %s", n.Gateway, subnet)
		}
	}
	if n.MAC != "" {
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return fmt.Errorf("netattach: MAC %q is not a unicast Ethernet address", n.MAC)
		}
	}
	return nil
}

// Scope is the naming scope of the instances kept under root: the
// directory above it, so that the drivers of one vmssd share bridges.
func Scope(root string) string { return filepath.Dir(filepath.Clean(root)) }

// Names gives the link names of one scope.
type Names struct{ scope string }

// NewNames returns the names of scope (see Scope).
func NewNames(scope string) Names { return Names{scope: hash(scope, 4)} }

func hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

func (n Names) name(prefix, id string) string { return prefix + n.scope + hash(id, 9) }

// Bridge is the bridge of virtual network networkID.
func (n Names) Bridge(networkID string) string { return n.name(bridgePrefix, networkID) }

// Veth is the host end of instance id's veth.
func (n Names) Veth(id string) string { return n.name(vethPrefix, id) }

// Tap is instance id's TAP device.
func (n Names) Tap(id string) string { return n.name(tapPrefix, id) }

func (n Names) peer(id string) string { return n.name(peerPrefix, id) }

// ours says name is one of this scope's links with prefix.
func (n Names) ours(name, prefix string) bool {
	return len(name) == 15 && strings.HasPrefix(name, prefix+n.scope)
}

// MAC returns the MAC of a NIC: n.MAC, or one derived from the instance id
// (locally administered, unicast).
func MAC(id string, n driver.Network) (net.HardwareAddr, error) {
	if n.MAC != "" {
		return net.ParseMAC(n.MAC)
	}
	sum := sha256.Sum256([]byte("mac:" + id))
	hw := net.HardwareAddr(sum[:6])
	hw[0] = hw[0]&0xfe | 0x02
	return hw, nil
}

// ensureBridge returns the bridge of networkID, creating it (no address,
// see the package doc) when missing. Called with bridgeMu held.
func (n Names) ensureBridge(networkID string) (netlink.Link, error) {
	name := n.Bridge(networkID)
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "bridge" {
			return nil, fmt.Errorf("netattach: %s exists and is a %s", name, l.Type())
		}
		return l, nil
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("netattach: add bridge %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netattach: bridge %s: %w", name, err)
	}
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6", "1"},
		{"/proc/sys/net/ipv4/conf/" + name + "/arp_ignore", "8"},
		{"/proc/sys/net/ipv4/conf/" + name + "/rp_filter", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			netlink.LinkDel(l)
			return nil, fmt.Errorf("netattach: bridge %s: %w", name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		netlink.LinkDel(l)
		return nil, fmt.Errorf("netattach: bridge %s up: %w", name, err)
	}
	return l, nil
}

// removeIfEmpty removes bridge name when no link is its port. Called with
// bridgeMu held.
func removeIfEmpty(name string) error {
	br, err := netlink.LinkByName(name)
	if err != nil {
		return nil // gone already
	}
	links, err := linkList()
	if err != nil {
		return fmt.Errorf("netattach: %w", err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return nil
		}
	}
	if err := netlink.LinkDel(br); err != nil && !isNotFound(err) {
		return fmt.Errorf("netattach: remove bridge %s: %w", name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, os.ErrNotExist)
}

// delLink removes link name if it exists.
func delLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		if _, err2 := netlink.LinkByName(name); err2 != nil {
			return nil // removed meanwhile (its namespace ended)
		}
		return fmt.Errorf("netattach: remove %s: %w", name, err)
	}
	return nil
}

// AttachNetns connects the network namespace of process pid (a container's
// init) to n's bridge: a veth whose host end (Veth(id)) is a port of the
// bridge and whose other end becomes eth0 in the namespace, with n's MAC,
// address and default route. A previous attachment of id is replaced.
func (nm Names) AttachNetns(id string, pid int, n driver.Network) error {
	if err := Validate(n); err != nil {
		return err
	}
	hw, err := MAC(id, n)
	if err != nil {
		return err
	}
	host, peer := nm.Veth(id), nm.peer(id)
	if err := delLink(host); err != nil {
		return err
	}
	if err := delLink(peer); err != nil {
		return err
	}
	bridgeMu.Lock()
	defer bridgeMu.Unlock()
	br, err := nm.ensureBridge(n.NetworkID)
	if err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index},
		PeerName:  peer, PeerHardwareAddr: hw,
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("netattach: add veth %s: %w", host, err)
	}
	ok := false
	defer func() {
		if !ok {
			delLink(host)
			delLink(peer)
		}
	}()
	pl, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("netattach: %s: %w", peer, err)
	}
	if err := netlink.LinkSetNsPid(pl, pid); err != nil {
		return fmt.Errorf("netattach: move %s into the namespace of %d: %w", peer, pid, err)
	}
	if err := configureInside(pid, peer, n); err != nil {
		return err
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return fmt.Errorf("netattach: %s: %w", host, err)
	}
	if err := enforceNSG(id, pid, n, true); err != nil {
		return fmt.Errorf("netattach: %w", err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return fmt.Errorf("netattach: %s up: %w", host, err)
	}
	ok = true
	return nil
}

// configureInside renames the moved veth end to eth0 in pid's network
// namespace and gives it its address and route.
func configureInside(pid int, peer string, n driver.Network) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("netattach: namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netattach: namespace of %d: %w", pid, err)
	}
	defer h.Close()
	l, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("netattach: %s in the namespace: %w", peer, err)
	}
	if old, err := h.LinkByName(GuestIfName); err == nil {
		h.LinkDel(old) // a stale eth0 (a replaced attachment)
	}
	if err := h.LinkSetName(l, GuestIfName); err != nil {
		return fmt.Errorf("netattach: rename %s: %w", peer, err)
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", n.PrivateIP, n.PrefixLen))
	if err != nil {
		return fmt.Errorf("netattach: %w", err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("netattach: address %s: %w", addr, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netattach: %s up: %w", GuestIfName, err)
	}
	if n.Gateway != "" {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(n.Gateway)}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("netattach: default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

// CreateTap creates instance id's TAP device on n's bridge and returns its
// descriptor, for QEMU (-netdev tap,fd=N). The device is not persistent:
// it vanishes once the last descriptor closes (QEMU's, and the caller's,
// which it must close once QEMU has it).
func (nm Names) CreateTap(id string, n driver.Network) (*os.File, error) {
	if err := Validate(n); err != nil {
		return nil, err
	}
	name := nm.Tap(id)
	if err := delLink(name); err != nil {
		return nil, err
	}
	bridgeMu.Lock()
	defer bridgeMu.Unlock()
	br, err := nm.ensureBridge(n.NetworkID)
	if err != nil {
		return nil, err
	}
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		NonPersist: true,
		Queues:     1,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("netattach: add tap %s: %w", name, err)
	}
	if len(tap.Fds) != 1 {
		for _, f := range tap.Fds {
			f.Close()
		}
		return nil, fmt.Errorf("netattach: tap %s: %d descriptors", name, len(tap.Fds))
	}
	f := tap.Fds[0]
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetMasterByIndex(l, br.Attrs().Index)
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netattach: tap %s: %w", name, err)
	}
	return f, nil
}

// Attached says whether instance id has its link (veth host end or TAP,
// per vm) on n's bridge.
func (nm Names) Attached(id string, n driver.Network, vm bool) bool {
	name := nm.Veth(id)
	if vm {
		name = nm.Tap(id)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return false
	}
	br, err := netlink.LinkByName(nm.Bridge(n.NetworkID))
	return err == nil && l.Attrs().MasterIndex == br.Attrs().Index
}

// Detach removes instance id's links (its veth and TAP, whichever exist)
// and its network's bridge once no port is left.
func (nm Names) Detach(id string, n driver.Network) error {
	nsg.Default.Detach(id)
	errs := []error{delLink(nm.Veth(id)), delLink(nm.peer(id)), delLink(nm.Tap(id))}
	if n.NetworkID != "" {
		bridgeMu.Lock()
		errs = append(errs, removeIfEmpty(nm.Bridge(n.NetworkID)))
		bridgeMu.Unlock()
	}
	return errors.Join(errs...)
}

// Sweep removes this scope's links no instance of keep owns: veths (when
// vm is false) or TAPs (when true) of other ids, veth ends that never
// reached a namespace, and bridges without ports. It returns the names it
// removed.
func (nm Names) Sweep(keep []string, vm bool) ([]string, error) {
	own := map[string]bool{}
	for _, id := range keep {
		own[nm.Veth(id)], own[nm.peer(id)], own[nm.Tap(id)] = true, true, true
	}
	links, err := linkList()
	if err != nil {
		return nil, fmt.Errorf("netattach: %w", err)
	}
	kind := vethPrefix
	if vm {
		kind = tapPrefix
	}
	var removed []string
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if own[name] || !(nm.ours(name, kind) || (!vm && nm.ours(name, peerPrefix))) {
			continue
		}
		if _, err := netlink.LinkByName(name); err != nil {
			continue // went with its peer
		}
		if err := delLink(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	bridgeMu.Lock()
	defer bridgeMu.Unlock()
	for _, l := range links {
		name := l.Attrs().Name
		if !nm.ours(name, bridgePrefix) {
			continue
		}
		if _, err := netlink.LinkByName(name); err != nil {
			continue
		}
		if err := removeIfEmpty(name); err != nil {
			errs = append(errs, err)
		} else if _, err := netlink.LinkByName(name); err != nil {
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

// Links returns this scope's links (bridges, veths, TAPs), for tests and
// diagnostics.
func (nm Names) Links() ([]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, fmt.Errorf("netattach: %w", err)
	}
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		for _, p := range []string{bridgePrefix, vethPrefix, peerPrefix, tapPrefix} {
			if nm.ours(name, p) {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// linkList lists the host's links. The kernel interrupts a dump that races
// a concurrent change of the links (another instance attaching, say), and
// netlink then returns ErrDumpInterrupted with partial results: such a
// dump is taken again.
func linkList() ([]netlink.Link, error) {
	for i := 0; ; i++ {
		links, err := netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == 9 {
			return links, err
		}
	}
}

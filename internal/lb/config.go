// Package lb is the data plane of vmssd's load balancers (issue 9): it listens
// on frontend addresses and forwards TCP connections and UDP flows to the
// backend members that pass their health probes, with Azure Load Balancer's
// semantics for rules (5-tuple, SourceIP and SourceIPProtocol distribution,
// idle timeout, TCP reset), probes (Http/Https/Tcp, interval, threshold, 200
// only, never following redirects) and inbound NAT pools (frontend port
// start+k reaches the member whose instance id is k).
//
// The package has a pure core and an executor. Compute (plan.go) takes the
// desired Config, the current state (open listeners, running probers, drain
// state and open connections of members), the probe results and `now`, and
// returns a Plan: listeners to open and close, probers to start and stop,
// drains that are over, and the routing table (which members each rule may
// send new connections to). LB runs that plan against real sockets: Apply
// reconfigures at runtime without touching established connections, Drain
// takes a member out of rotation at once and reports when its connections
// are gone, Health exposes probe results so the rolling engine and the load
// balancer agree on what healthy means, Snapshot exposes counters.
//
// Members are found by address: a private IP (netns mode) to which the
// backend port is appended, or explicit host:port per backend port
// (loopback mode, instances without their own network namespace).
package lb

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/errs"
)

// Protocol is a transport protocol of a rule, NAT pool or listener.
type Protocol string

// Transport protocols. Azure's "All" (HA ports) is not supported.
const (
	TCP Protocol = "Tcp"
	UDP Protocol = "Udp"
)

// Distribution is a rule's load distribution mode.
type Distribution string

// Distribution modes, as Azure names them (loadDistribution).
const (
	Default          Distribution = "Default"          // 5-tuple hash
	SourceIP         Distribution = "SourceIP"         // 2-tuple: source and destination IP
	SourceIPProtocol Distribution = "SourceIPProtocol" // 3-tuple: source IP, destination IP, protocol
)

// ProbeProtocol is a health probe's protocol.
type ProbeProtocol string

// Probe protocols.
const (
	ProbeHTTP  ProbeProtocol = "Http"
	ProbeHTTPS ProbeProtocol = "Https"
	ProbeTCP   ProbeProtocol = "Tcp"
)

// DefaultIdleTimeout is Azure's default idleTimeoutInMinutes (4).
const DefaultIdleTimeout = 4 * time.Minute

// Config is the desired state of one load balancer.
type Config struct {
	Frontends []Frontend
	Pools     []Pool
	Probes    []Probe
	Rules     []Rule
	NATPools  []NATPool
}

// Frontend is a frontend IP configuration: the address listeners bind.
type Frontend struct {
	Name    string
	Address netip.Addr
}

// Pool is a backend address pool.
type Pool struct {
	Name    string
	Members []Member
}

// Member is one backend: a scale set instance's NIC ip configuration.
type Member struct {
	// ID names the member everywhere (Drain, Health, Snapshot); the same
	// member may be in several pools, with the same addresses.
	ID string
	// InstanceID is the scale set instance id; NAT pools map by it.
	InstanceID int64
	// Address is the private IP; a backend port p is reached at Address:p
	// unless Ports names another address for p.
	Address netip.Addr
	// Ports maps a backend port to the host:port that reaches it (loopback
	// mode, where instances have no network namespace).
	Ports map[int]string
}

// Target is the address that reaches backend port p of m.
func (m Member) Target(p int) (string, bool) {
	if a, ok := m.Ports[p]; ok {
		return a, true
	}
	if !m.Address.IsValid() {
		return "", false
	}
	return net.JoinHostPort(m.Address.String(), strconv.Itoa(p)), true
}

func (m Member) equal(o Member) bool {
	if m.ID != o.ID || m.InstanceID != o.InstanceID || m.Address != o.Address || len(m.Ports) != len(o.Ports) {
		return false
	}
	for k, v := range m.Ports {
		if o.Ports[k] != v {
			return false
		}
	}
	return true
}

// Probe is a health probe.
type Probe struct {
	Name        string
	Protocol    ProbeProtocol
	Port        int
	RequestPath string // Http and Https only
	// Interval is intervalInSeconds; Threshold is numberOfProbes: that many
	// consecutive failures take a member out of rotation, one success puts
	// it back.
	Interval  time.Duration
	Threshold int
}

// Rule is a load-balancing rule.
type Rule struct {
	Name         string
	Frontend     string
	Protocol     Protocol
	FrontendPort int
	Pool         string
	BackendPort  int
	// Probe names the probe that decides rotation; empty: every member not
	// draining is in rotation.
	Probe        string
	Distribution Distribution
	// IdleTimeout closes a flow with no traffic in either direction; zero
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// TCPReset sends a RST to both ends when an idle TCP flow is closed.
	TCPReset bool
}

// NATPool is an inbound NAT pool: frontend port Start+k reaches BackendPort
// of the pool member whose InstanceID is k. Azure keeps a member's frontend
// port while others come and go ("existing port mappings for the remaining
// virtual machines persist"), so the mapping follows the instance id, not a
// rank that would shift on scale-in. NAT traffic ignores probes, as Azure's
// inbound NAT rules do.
type NATPool struct {
	Name        string
	Frontend    string
	Protocol    Protocol
	Start, End  int
	Pool        string
	BackendPort int
	IdleTimeout time.Duration
	TCPReset    bool
}

// ListenerKey identifies one listening socket.
type ListenerKey struct {
	Protocol Protocol
	Addr     netip.AddrPort
}

func (k ListenerKey) String() string {
	return strings.ToLower(string(k.Protocol)) + "/" + k.Addr.String()
}

func (k ListenerKey) less(o ListenerKey) int {
	if c := strings.Compare(string(k.Protocol), string(o.Protocol)); c != 0 {
		return c
	}
	return k.Addr.Compare(o.Addr)
}

func invalid(target, format string, args ...any) error {
	return errs.New(errs.Invalid, "InvalidLoadBalancerConfiguration", format, args...).WithTarget(target)
}

// Validate checks names, references and ranges, and that no two rules or
// NAT ports claim the same listener. Errors are errs.Invalid.
func (c *Config) Validate() error {
	fes := map[string]bool{}
	for i, f := range c.Frontends {
		t := fmt.Sprintf("frontendIPConfigurations[%d]", i)
		if f.Name == "" || fes[f.Name] {
			return invalid(t, "Frontend name %q is empty or not unique.", f.Name)
		}
		if !f.Address.IsValid() {
			return invalid(t, "Frontend %q has no address.", f.Name)
		}
		fes[f.Name] = true
	}
	pools := map[string]bool{}
	members := map[string]Member{}
	for i, p := range c.Pools {
		t := fmt.Sprintf("backendAddressPools[%d]", i)
		if p.Name == "" || pools[p.Name] {
			return invalid(t, "Backend pool name %q is empty or not unique.", p.Name)
		}
		pools[p.Name] = true
		seen := map[string]bool{}
		for _, m := range p.Members {
			if m.ID == "" || seen[m.ID] {
				return invalid(t, "Backend pool %q has an empty or repeated member id %q.", p.Name, m.ID)
			}
			seen[m.ID] = true
			if old, ok := members[m.ID]; ok && !old.equal(m) {
				return invalid(t, "Member %q appears in several pools with different addresses.", m.ID)
			}
			members[m.ID] = m
		}
	}
	probes := map[string]bool{}
	for i, p := range c.Probes {
		t := fmt.Sprintf("probes[%d]", i)
		if p.Name == "" || probes[p.Name] {
			return invalid(t, "Probe name %q is empty or not unique.", p.Name)
		}
		probes[p.Name] = true
		switch p.Protocol {
		case ProbeHTTP, ProbeHTTPS:
			if !strings.HasPrefix(p.RequestPath, "/") {
				return invalid(t, "Probe %q: requestPath must start with '/' for protocol %s.", p.Name, p.Protocol)
			}
		case ProbeTCP:
			if p.RequestPath != "" {
				return invalid(t, "Probe %q: requestPath is only allowed for Http and Https probes.", p.Name)
			}
		default:
			return invalid(t, "Probe %q: protocol %q is not one of Http, Https, Tcp.", p.Name, p.Protocol)
		}
		if !validPort(p.Port) {
			return invalid(t, "Probe %q: port %d is out of range 1-65535.", p.Name, p.Port)
		}
		if p.Interval <= 0 || p.Threshold < 1 {
			return invalid(t, "Probe %q: interval must be positive and numberOfProbes at least 1.", p.Name)
		}
	}
	claimed := map[ListenerKey]string{}
	addr := func(fe string) netip.Addr {
		for _, f := range c.Frontends {
			if f.Name == fe {
				return f.Address
			}
		}
		return netip.Addr{}
	}
	claim := func(t string, k ListenerKey, by string) error {
		if other, ok := claimed[k]; ok {
			return invalid(t, "%s and %s both use frontend port %s.", other, by, k)
		}
		claimed[k] = by
		return nil
	}
	names := map[string]bool{}
	// named checks that a rule's or NAT pool's name is unique and that its
	// frontend and pool exist.
	named := func(t, what, name, fe, pool string) error {
		if name == "" || names[name] {
			return invalid(t, "%s name %q is empty or not unique.", what, name)
		}
		names[name] = true
		if !fes[fe] || !pools[pool] {
			return invalid(t, "%s %q references a frontend or backend pool that does not exist.", what, name)
		}
		return nil
	}
	for i, r := range c.Rules {
		t := fmt.Sprintf("loadBalancingRules[%d]", i)
		if err := named(t, "Rule", r.Name, r.Frontend, r.Pool); err != nil {
			return err
		}
		if r.Probe != "" && !probes[r.Probe] {
			return invalid(t, "Rule %q references probe %q that does not exist.", r.Name, r.Probe)
		}
		if err := checkProto(t, r.Name, r.Protocol); err != nil {
			return err
		}
		switch r.Distribution {
		case "", Default, SourceIP, SourceIPProtocol:
		default:
			return invalid(t, "Rule %q: loadDistribution %q is not one of Default, SourceIP, SourceIPProtocol.", r.Name, r.Distribution)
		}
		if !validPort(r.FrontendPort) || !validPort(r.BackendPort) {
			return invalid(t, "Rule %q: ports must be in range 1-65535.", r.Name)
		}
		if r.IdleTimeout < 0 {
			return invalid(t, "Rule %q: idle timeout is negative.", r.Name)
		}
		if err := claim(t, ListenerKey{r.Protocol, netip.AddrPortFrom(addr(r.Frontend), uint16(r.FrontendPort))}, "rule "+r.Name); err != nil {
			return err
		}
	}
	for i, n := range c.NATPools {
		t := fmt.Sprintf("inboundNatPools[%d]", i)
		if err := named(t, "NAT pool", n.Name, n.Frontend, n.Pool); err != nil {
			return err
		}
		if err := checkProto(t, n.Name, n.Protocol); err != nil {
			return err
		}
		if !validPort(n.Start) || !validPort(n.End) || n.Start > n.End || !validPort(n.BackendPort) {
			return invalid(t, "NAT pool %q: the frontend port range %d-%d or backend port %d is not valid.", n.Name, n.Start, n.End, n.BackendPort)
		}
		if n.IdleTimeout < 0 {
			return invalid(t, "NAT pool %q: idle timeout is negative.", n.Name)
		}
		for p := n.Start; p <= n.End; p++ {
			if err := claim(t, ListenerKey{n.Protocol, netip.AddrPortFrom(addr(n.Frontend), uint16(p))}, "NAT pool "+n.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkProto(t, name string, p Protocol) error {
	switch p {
	case TCP, UDP:
		return nil
	case "All":
		return invalid(t, "%q: protocol All (HA ports) is not supported by this load balancer; use Tcp or Udp.", name)
	}
	return invalid(t, "%q: protocol %q is not one of Tcp, Udp.", name, p)
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

func (c *Config) frontend(name string) netip.Addr {
	for _, f := range c.Frontends {
		if f.Name == name {
			return f.Address
		}
	}
	return netip.Addr{}
}

func (c *Config) pool(name string) []Member {
	for _, p := range c.Pools {
		if p.Name == name {
			return p.Members
		}
	}
	return nil
}

func (c *Config) probe(name string) (Probe, bool) {
	for _, p := range c.Probes {
		if p.Name == name {
			return p, true
		}
	}
	return Probe{}, false
}

// members returns every member of every pool once, by id.
func (c *Config) members() map[string]Member {
	out := map[string]Member{}
	for _, p := range c.Pools {
		for _, m := range p.Members {
			out[m.ID] = m
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

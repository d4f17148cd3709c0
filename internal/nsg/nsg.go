// Package nsg enforces network security groups (issue 9) on instances that
// have their own network namespace (process instances in runc sandboxes,
// attached by veth to their virtual network's bridge).
//
// Translate (pure) turns the NSGs that apply to a NIC (the subnet's and the
// NIC configuration's, as Azure combines them) into a Ruleset: per
// direction, one Layer per NSG, each an ordered list of Matches (the user's
// rules by priority, then Azure's default rules), with service tags and '*'
// resolved for this host. Evaluate gives a Ruleset's verdict on a packet;
// Program (nft.go) turns it into an nftables table inside the instance's
// namespace, where every Match becomes nftables rules with the same
// verdict, and the Enforcer keeps the tables in step as NSGs change.
//
// Semantics. A packet that opens a flow (connection tracking state new)
// passes a direction when every Layer passes it; a Layer passes it when the
// first Match it meets (lowest priority number first) allows. Replies of an
// allowed flow always pass (NSGs are stateful). Traffic on the namespace's
// loopback is never filtered: vmssd's loopback forwards (the load
// balancer, inbound NAT and health probes, which enter the namespace with
// setns and dial the guest on 127.0.0.1) arrive there, so health keeps
// working whatever the rules say. This is this host's reading of Azure's
// AllowAzureLoadBalancerInBound: the AzureLoadBalancer tag stands for that
// loopback path, which is always allowed, and as a prefix on the virtual
// network it matches no address. VirtualNetwork is the virtual network's
// address space; Internet is every IPv4 address outside it. Port ranges
// restrict TCP and UDP only: a rule with ports other than '*' and protocol
// '*' matches TCP and UDP packets, never ICMP. Only IPv4 is filtered (the
// instances have no other address); application security groups match
// nothing.
package nsg

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

// Direction is the way a packet goes relative to the instance.
type Direction int

// Directions.
const (
	Inbound Direction = iota
	Outbound
)

// Proto is an IP protocol number; ProtoAny matches all.
type Proto uint8

// Protocols.
const (
	ProtoAny  Proto = 0
	ProtoICMP Proto = 1
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
)

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts is '*'.
var AllPorts = PortRange{0, 65535}

// AnyAddr is '*'.
var AnyAddr = netip.MustParsePrefix("0.0.0.0/0")

// Match is one compiled rule: a packet matches when its protocol, source,
// destination and (for TCP and UDP) ports are among the rule's.
type Match struct {
	Name  string
	Allow bool
	Proto Proto
	// Src and Dst are the address prefixes; empty matches nothing.
	Src, Dst []netip.Prefix
	// SrcPorts and DstPorts: nil is '*'; otherwise only TCP and UDP match.
	SrcPorts, DstPorts []PortRange
}

// Layer is one NSG's rules for one direction, in evaluation order.
type Layer struct {
	NSG     string
	Matches []Match
}

// Ruleset is what is enforced on one NIC: per direction, the layers a
// packet must all pass, in Azure's evaluation order (inbound: subnet then
// NIC; outbound: NIC then subnet). A nil *Ruleset enforces nothing.
type Ruleset struct {
	Inbound, Outbound []Layer
}

// Env is what service tags mean for the NIC.
type Env struct {
	// VNet is the virtual network's address space (VirtualNetwork).
	VNet []netip.Prefix
}

// Rule is one NSG security rule as Translate reads it (the armnetwork
// model's fields, for tests and callers without one).
type Rule struct {
	Name      string
	Priority  int32
	Allow     bool
	Direction Direction
	Protocol  string   // "Tcp", "Udp", "Icmp", "*"
	Src, Dst  []string // address prefixes or service tags
	SrcPorts  []string // "*", "80", "1000-2000"
	DstPorts  []string
}

// DefaultRules are Azure's default security rules.
var DefaultRules = []Rule{
	{Name: "AllowVnetInBound", Priority: 65000, Allow: true, Direction: Inbound, Protocol: "*", Src: []string{"VirtualNetwork"}, Dst: []string{"VirtualNetwork"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
	{Name: "AllowAzureLoadBalancerInBound", Priority: 65001, Allow: true, Direction: Inbound, Protocol: "*", Src: []string{"AzureLoadBalancer"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
	{Name: "DenyAllInBound", Priority: 65500, Allow: false, Direction: Inbound, Protocol: "*", Src: []string{"*"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
	{Name: "AllowVnetOutBound", Priority: 65000, Allow: true, Direction: Outbound, Protocol: "*", Src: []string{"VirtualNetwork"}, Dst: []string{"VirtualNetwork"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
	{Name: "AllowInternetOutBound", Priority: 65001, Allow: true, Direction: Outbound, Protocol: "*", Src: []string{"*"}, Dst: []string{"Internet"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
	{Name: "DenyAllOutBound", Priority: 65500, Allow: false, Direction: Outbound, Protocol: "*", Src: []string{"*"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"*"}},
}

// Group is one NSG: its ARM id and security rules.
type Group struct {
	ID    string
	Rules []Rule
}

// FromARM reads an armnetwork SecurityGroup's security rules.
func FromARM(id string, g *armnetwork.SecurityGroup) Group {
	out := Group{ID: id}
	if g == nil || g.Properties == nil {
		return out
	}
	for _, r := range g.Properties.SecurityRules {
		if r == nil || r.Properties == nil {
			continue
		}
		p := r.Properties
		rule := Rule{Name: str(r.Name), Protocol: "*"}
		if p.Priority != nil {
			rule.Priority = *p.Priority
		}
		rule.Allow = p.Access != nil && strings.EqualFold(string(*p.Access), "Allow")
		if p.Direction != nil && strings.EqualFold(string(*p.Direction), "Outbound") {
			rule.Direction = Outbound
		}
		if p.Protocol != nil {
			rule.Protocol = string(*p.Protocol)
		}
		rule.Src = list(p.SourceAddressPrefix, p.SourceAddressPrefixes)
		rule.Dst = list(p.DestinationAddressPrefix, p.DestinationAddressPrefixes)
		rule.SrcPorts = list(p.SourcePortRange, p.SourcePortRanges)
		rule.DstPorts = list(p.DestinationPortRange, p.DestinationPortRanges)
		out.Rules = append(out.Rules, rule)
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func list(one *string, many []*string) []string {
	var out []string
	if one != nil && *one != "" {
		out = append(out, *one)
	}
	for _, s := range many {
		if s != nil && *s != "" {
			out = append(out, *s)
		}
	}
	return out
}

// Translate compiles the NSGs of a NIC: subnet and nic (either may be nil:
// no NSG at that level). Both nil gives nil (nothing is enforced).
func Translate(subnet, nic *Group, env Env) (*Ruleset, error) {
	if subnet == nil && nic == nil {
		return nil, nil
	}
	rs := &Ruleset{}
	for _, dir := range []Direction{Inbound, Outbound} {
		order := []*Group{subnet, nic}
		if dir == Outbound {
			order = []*Group{nic, subnet}
		}
		for _, g := range order {
			if g == nil {
				continue
			}
			l, err := compileLayer(g, dir, env)
			if err != nil {
				return nil, err
			}
			if dir == Inbound {
				rs.Inbound = append(rs.Inbound, l)
			} else {
				rs.Outbound = append(rs.Outbound, l)
			}
		}
	}
	return rs, nil
}

func compileLayer(g *Group, dir Direction, env Env) (Layer, error) {
	var rules []Rule
	for _, r := range g.Rules {
		if r.Direction == dir {
			rules = append(rules, r)
		}
	}
	slices.SortStableFunc(rules, func(a, b Rule) int { return cmp.Compare(a.Priority, b.Priority) })
	for _, r := range DefaultRules {
		if r.Direction == dir {
			rules = append(rules, r)
		}
	}
	l := Layer{NSG: g.ID}
	for _, r := range rules {
		m, err := compileRule(r, env)
		if err != nil {
			return Layer{}, fmt.Errorf("nsg %s: rule %s: %w", g.ID, r.Name, err)
		}
		l.Matches = append(l.Matches, m)
	}
	return l, nil
}

func compileRule(r Rule, env Env) (Match, error) {
	m := Match{Name: r.Name, Allow: r.Allow}
	switch strings.ToLower(r.Protocol) {
	case "", "*":
	case "tcp":
		m.Proto = ProtoTCP
	case "udp":
		m.Proto = ProtoUDP
	case "icmp":
		m.Proto = ProtoICMP
	default:
		return Match{}, fmt.Errorf("protocol %q", r.Protocol)
	}
	var err error
	if m.Src, err = addrs(r.Src, env); err != nil {
		return Match{}, err
	}
	if m.Dst, err = addrs(r.Dst, env); err != nil {
		return Match{}, err
	}
	if m.Proto == ProtoICMP {
		return m, nil // ICMP has no ports
	}
	if m.SrcPorts, err = ports(r.SrcPorts); err != nil {
		return Match{}, err
	}
	if m.DstPorts, err = ports(r.DstPorts); err != nil {
		return Match{}, err
	}
	return m, nil
}

// addrs resolves prefixes and service tags into a sorted, merged list of
// prefixes (AnyAddr alone for '*').
func addrs(in []string, env Env) ([]netip.Prefix, error) {
	if len(in) == 0 {
		in = []string{"*"}
	}
	var out []netip.Prefix
	for _, s := range in {
		switch strings.ToLower(s) {
		case "*", "any", "0.0.0.0/0":
			return []netip.Prefix{AnyAddr}, nil
		case "virtualnetwork":
			out = append(out, env.VNet...)
		case "internet":
			out = append(out, Complement(env.VNet)...)
		case "azureloadbalancer":
			// The load balancer reaches the guest on loopback (always
			// allowed): no address on the virtual network.
		default:
			p, err := parsePrefix(s)
			if err != nil {
				if isTag(s) {
					continue // another service tag: no address here
				}
				return nil, err
			}
			out = append(out, p)
		}
	}
	return Normalize(out), nil
}

func isTag(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != "" && !(s[0] >= '0' && s[0] <= '9')
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("address prefix %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("address prefix %q", s)
	}
	return netip.PrefixFrom(a, 32), nil
}

func ports(in []string) ([]PortRange, error) {
	var out []PortRange
	for _, s := range in {
		if s == "*" {
			return nil, nil
		}
		lo, hi, isRange := strings.Cut(s, "-")
		a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port range %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("port range %q", s)
			}
		}
		out = append(out, PortRange{uint16(a), uint16(b)})
	}
	if len(out) == 0 {
		return nil, nil
	}
	if len(out) == 1 && out[0] == AllPorts {
		return nil, nil
	}
	return out, nil
}

// Normalize sorts prefixes and drops those another one contains.
func Normalize(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	var out []netip.Prefix
	for _, p := range ps {
		if len(out) > 0 && out[len(out)-1].Contains(p.Addr()) && out[len(out)-1].Bits() <= p.Bits() {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Complement is every IPv4 prefix outside ps, as few prefixes as possible.
func Complement(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	var walk func(p netip.Prefix)
	walk = func(p netip.Prefix) {
		covered, overlaps := false, false
		for _, q := range ps {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				covered = true
				break
			}
			if p.Overlaps(q) {
				overlaps = true
			}
		}
		switch {
		case covered:
		case !overlaps:
			out = append(out, p)
		default:
			lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
			hiAddr := p.Addr().As4()
			bit := p.Bits()
			hiAddr[bit/8] |= 0x80 >> (bit % 8)
			walk(lo)
			walk(netip.PrefixFrom(netip.AddrFrom4(hiAddr), p.Bits()+1))
		}
	}
	walk(AnyAddr)
	return out
}

// Packet is what a verdict is about: the first packet of a flow.
type Packet struct {
	Proto            Proto
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Evaluate says whether rs lets a new flow's packet p through in dir.
func (rs *Ruleset) Evaluate(dir Direction, p Packet) bool {
	if rs == nil {
		return true
	}
	layers := rs.Inbound
	if dir == Outbound {
		layers = rs.Outbound
	}
	for _, l := range layers {
		if !l.pass(p) {
			return false
		}
	}
	return true
}

func (l Layer) pass(p Packet) bool {
	for _, m := range l.Matches {
		if m.matches(p) {
			return m.Allow
		}
	}
	return false // unreachable with the default rules
}

func (m Match) matches(p Packet) bool {
	if m.Proto != ProtoAny && m.Proto != p.Proto {
		return false
	}
	if (m.SrcPorts != nil || m.DstPorts != nil) && p.Proto != ProtoTCP && p.Proto != ProtoUDP {
		return false
	}
	return inPrefixes(m.Src, p.Src) && inPrefixes(m.Dst, p.Dst) && inPorts(m.SrcPorts, p.SrcPort) && inPorts(m.DstPorts, p.DstPort)
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func inPorts(rs []PortRange, port uint16) bool {
	if rs == nil {
		return true
	}
	for _, r := range rs {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

package nsg

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var vnetEnv = Env{VNet: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}

func pkt(proto Proto, src, dst string, sport, dport uint16) Packet {
	return Packet{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport}
}

func TestTranslateVerdicts(t *testing.T) {
	denyVnet8080 := &Group{ID: "nic", Rules: []Rule{
		{Name: "deny-8080", Priority: 100, Direction: Inbound, Protocol: "Tcp", Src: []string{"VirtualNetwork"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"8080"}},
	}}
	allowWeb := &Group{ID: "subnet", Rules: []Rule{
		{Name: "allow-web", Priority: 200, Allow: true, Direction: Inbound, Protocol: "*", Src: []string{"Internet"}, Dst: []string{"10.0.1.0/24"}, SrcPorts: []string{"*"}, DstPorts: []string{"80", "443", "8000-8100"}},
		{Name: "deny-out-dns", Priority: 100, Direction: Outbound, Protocol: "Udp", Src: []string{"*"}, Dst: []string{"8.8.8.8", "1.1.1.1/32"}, DstPorts: []string{"53"}},
		{Name: "allow-ping-first", Priority: 150, Allow: true, Direction: Inbound, Protocol: "Icmp", Src: []string{"203.0.113.0/24"}, Dst: []string{"*"}},
	}}
	tests := []struct {
		name        string
		subnet, nic *Group
		dir         Direction
		p           Packet
		want        bool
	}{
		{"no NSG allows all", nil, nil, Inbound, pkt(ProtoTCP, "198.51.100.1", "10.0.0.4", 1, 22), true},
		{"default: vnet in", nil, &Group{ID: "x"}, Inbound, pkt(ProtoTCP, "10.0.0.5", "10.0.0.4", 1, 22), true},
		{"default: internet in denied", nil, &Group{ID: "x"}, Inbound, pkt(ProtoTCP, "198.51.100.1", "10.0.0.4", 1, 22), false},
		{"default: internet out", nil, &Group{ID: "x"}, Outbound, pkt(ProtoUDP, "10.0.0.4", "198.51.100.1", 1, 53), true},
		{"default: vnet out", nil, &Group{ID: "x"}, Outbound, pkt(ProtoICMP, "10.0.0.4", "10.0.3.1", 0, 0), true},
		{"deny port from vnet", nil, denyVnet8080, Inbound, pkt(ProtoTCP, "10.0.0.5", "10.0.0.4", 40000, 8080), false},
		{"other port from vnet", nil, denyVnet8080, Inbound, pkt(ProtoTCP, "10.0.0.5", "10.0.0.4", 40000, 8081), true},
		{"udp on the denied port", nil, denyVnet8080, Inbound, pkt(ProtoUDP, "10.0.0.5", "10.0.0.4", 40000, 8080), true},
		{"subnet allows web from internet", allowWeb, &Group{ID: "nic"}, Inbound, pkt(ProtoTCP, "198.51.100.1", "10.0.1.4", 1, 443), false}, // the NIC NSG denies (DenyAllInBound)
		{"subnet allows web, no NIC NSG", allowWeb, nil, Inbound, pkt(ProtoTCP, "198.51.100.1", "10.0.1.4", 1, 8050), true},
		{"port range edge", allowWeb, nil, Inbound, pkt(ProtoUDP, "198.51.100.1", "10.0.1.4", 1, 8101), false},
		{"other destination", allowWeb, nil, Inbound, pkt(ProtoTCP, "198.51.100.1", "10.0.2.4", 1, 443), false},
		{"ports never match icmp", allowWeb, nil, Inbound, pkt(ProtoICMP, "198.51.100.1", "10.0.1.4", 0, 0), false},
		{"icmp rule", allowWeb, nil, Inbound, pkt(ProtoICMP, "203.0.113.9", "10.0.1.4", 0, 0), true},
		{"deny dns out", allowWeb, nil, Outbound, pkt(ProtoUDP, "10.0.1.4", "1.1.1.1", 3333, 53), false},
		{"other dns out", allowWeb, nil, Outbound, pkt(ProtoUDP, "10.0.1.4", "9.9.9.9", 3333, 53), true},
		{"both layers must allow", allowWeb, denyVnet8080, Inbound, pkt(ProtoTCP, "10.0.0.9", "10.0.1.4", 1, 8080), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Translate(tt.subnet, tt.nic, vnetEnv)
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.Evaluate(tt.dir, tt.p); got != tt.want {
				t.Errorf("Evaluate = %v, want %v", got, tt.want)
			}
			if got := reference(tt.subnet, tt.nic, vnetEnv, tt.dir, tt.p); got != tt.want {
				t.Errorf("reference = %v, want %v (the test's reference disagrees)", got, tt.want)
			}
		})
	}
}

func TestTranslateOrderAndDefaults(t *testing.T) {
	g := &Group{ID: "g", Rules: []Rule{
		{Name: "b", Priority: 300, Allow: true, Direction: Inbound, Protocol: "Tcp"},
		{Name: "a", Priority: 100, Direction: Inbound, Protocol: "Udp"},
		{Name: "o", Priority: 100, Direction: Outbound, Protocol: "*"},
	}}
	rs, err := Translate(g, nil, vnetEnv)
	if err != nil {
		t.Fatal(err)
	}
	names := func(l Layer) []string {
		var out []string
		for _, m := range l.Matches {
			out = append(out, m.Name)
		}
		return out
	}
	if got, want := names(rs.Inbound[0]), []string{"a", "b", "AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"}; !slices.Equal(got, want) {
		t.Errorf("inbound order %v, want %v", got, want)
	}
	if got, want := names(rs.Outbound[0]), []string{"o", "AllowVnetOutBound", "AllowInternetOutBound", "DenyAllOutBound"}; !slices.Equal(got, want) {
		t.Errorf("outbound order %v, want %v", got, want)
	}
	// Inbound: subnet then NIC; outbound: NIC then subnet.
	rs, _ = Translate(&Group{ID: "s"}, &Group{ID: "n"}, vnetEnv)
	if rs.Inbound[0].NSG != "s" || rs.Outbound[0].NSG != "n" {
		t.Errorf("layer order: inbound %s first, outbound %s first", rs.Inbound[0].NSG, rs.Outbound[0].NSG)
	}
}

func TestTranslateErrors(t *testing.T) {
	for _, r := range []Rule{
		{Name: "proto", Protocol: "Esp"},
		{Name: "prefix", Protocol: "*", Src: []string{"10.0.0.0/33"}},
		{Name: "port", Protocol: "Tcp", DstPorts: []string{"90-80"}},
		{Name: "port2", Protocol: "Tcp", DstPorts: []string{"70000"}},
	} {
		if _, err := Translate(nil, &Group{ID: "g", Rules: []Rule{r}}, vnetEnv); err == nil {
			t.Errorf("rule %s: no error", r.Name)
		}
	}
}

func TestComplement(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("192.168.1.0/24")}
	c := Complement(ps)
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		a := randAddr(r)
		if inPrefixes(ps, a) == inPrefixes(c, a) {
			t.Fatalf("%s: in set %v, in complement %v", a, inPrefixes(ps, a), inPrefixes(c, a))
		}
	}
	if got := Complement(nil); len(got) != 1 || got[0] != AnyAddr {
		t.Errorf("Complement(nil) = %v", got)
	}
}

// reference evaluates Azure's semantics straight from the rules: in each
// NSG the lowest-numbered matching rule (defaults included) decides; every
// NSG present must allow.
func reference(subnet, nic *Group, env Env, dir Direction, p Packet) bool {
	for _, g := range []*Group{subnet, nic} {
		if g == nil {
			continue
		}
		rules := slices.Clone(DefaultRules)
		rules = append(rules, g.Rules...)
		var best *Rule
		for i := range rules {
			r := &rules[i]
			if r.Direction != dir || !refMatch(*r, env, p) {
				continue
			}
			if best == nil || r.Priority < best.Priority {
				best = r
			}
		}
		if best == nil || !best.Allow {
			return false
		}
	}
	return true
}

func refMatch(r Rule, env Env, p Packet) bool {
	switch strings.ToLower(r.Protocol) {
	case "tcp":
		if p.Proto != ProtoTCP {
			return false
		}
	case "udp":
		if p.Proto != ProtoUDP {
			return false
		}
	case "icmp":
		if p.Proto != ProtoICMP {
			return false
		}
	}
	portsGiven := func(ps []string) bool { return len(ps) > 0 && !slices.Contains(ps, "*") }
	if strings.ToLower(r.Protocol) != "icmp" && (portsGiven(r.SrcPorts) || portsGiven(r.DstPorts)) {
		if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
			return false
		}
		if !refPort(r.SrcPorts, p.SrcPort) || !refPort(r.DstPorts, p.DstPort) {
			return false
		}
	}
	return refAddr(r.Src, env, p.Src) && refAddr(r.Dst, env, p.Dst)
}

func refAddr(list []string, env Env, a netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	inVnet := false
	for _, v := range env.VNet {
		inVnet = inVnet || v.Contains(a)
	}
	for _, s := range list {
		switch s {
		case "*":
			return true
		case "VirtualNetwork":
			if inVnet {
				return true
			}
		case "Internet":
			if !inVnet {
				return true
			}
		case "AzureLoadBalancer":
		default:
			if !strings.Contains(s, "/") {
				s += "/32"
			}
			if netip.MustParsePrefix(s).Contains(a) {
				return true
			}
		}
	}
	return false
}

func refPort(list []string, port uint16) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range list {
		if s == "*" {
			return true
		}
		lo, hi, ok := strings.Cut(s, "-")
		if !ok {
			hi = lo
		}
		a, _ := strconv.Atoi(lo)
		b, _ := strconv.Atoi(hi)
		if int(port) >= a && int(port) <= b {
			return true
		}
	}
	return false
}

// Small universes so that random packets hit the random rules often.
var (
	addrPool = []string{"10.0.0.4", "10.0.0.5", "10.0.200.1", "10.1.0.1", "192.168.1.7", "198.51.100.1", "8.8.8.8"}
	pfxPool  = []string{"*", "VirtualNetwork", "Internet", "AzureLoadBalancer", "10.0.0.0/24", "10.0.0.4", "10.0.0.0/8", "192.168.0.0/16", "198.51.100.0/25", "0.0.0.0/0"}
	portPool = []string{"*", "22", "80", "80-90", "1000-2000", "65535", "0-1023"}
	protos   = []string{"Tcp", "Udp", "Icmp", "*"}
)

func randAddr(r *rand.Rand) netip.Addr {
	var b [4]byte
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	if r.IntN(2) == 0 {
		b[0], b[1] = 10, 0
	}
	return netip.AddrFrom4(b)
}

func randGroup(r *rand.Rand, id string) *Group {
	if r.IntN(4) == 0 {
		return nil
	}
	pick := func(pool []string) []string {
		n := 1 + r.IntN(2)
		out := make([]string, n)
		for i := range out {
			out[i] = pool[r.IntN(len(pool))]
		}
		return out
	}
	g := &Group{ID: id}
	for i := range r.IntN(6) {
		g.Rules = append(g.Rules, Rule{
			Name: "r" + strconv.Itoa(i), Priority: int32(100 + 10*i), Allow: r.IntN(2) == 0,
			Direction: Direction(r.IntN(2)), Protocol: protos[r.IntN(len(protos))],
			Src: pick(pfxPool), Dst: pick(pfxPool), SrcPorts: pick(portPool), DstPorts: pick(portPool),
		})
	}
	r.Shuffle(len(g.Rules), func(i, j int) { g.Rules[i], g.Rules[j] = g.Rules[j], g.Rules[i] })
	return g
}

// TestEvaluateMatchesReference: for random NSGs and packets the compiled
// ruleset's verdict is the reference's.
func TestEvaluateMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	env := Env{VNet: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("192.168.1.0/24")}}
	for i := range 3000 {
		subnet, nic := randGroup(r, "subnet"), randGroup(r, "nic")
		rs, err := Translate(subnet, nic, env)
		if err != nil {
			t.Fatal(err)
		}
		for range 30 {
			p := Packet{
				Proto: []Proto{ProtoTCP, ProtoUDP, ProtoICMP}[r.IntN(3)],
				Src:   netip.MustParseAddr(addrPool[r.IntN(len(addrPool))]), Dst: netip.MustParseAddr(addrPool[r.IntN(len(addrPool))]),
				SrcPort: []uint16{22, 80, 85, 1500, 65535, 40000}[r.IntN(6)], DstPort: []uint16{22, 80, 85, 1500, 65535, 40000}[r.IntN(6)],
			}
			if r.IntN(4) == 0 {
				p.Src = randAddr(r)
			}
			dir := Direction(r.IntN(2))
			if got, want := rs.Evaluate(dir, p), reference(subnet, nic, env, dir, p); got != want {
				t.Fatalf("case %d: %+v dir %d: Evaluate %v, reference %v\nsubnet %+v\nnic %+v", i, p, dir, got, want, subnet, nic)
			}
		}
	}
}

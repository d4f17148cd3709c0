package netctl

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/lb"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
)

// MemberID names an instance NIC in a load balancer's data plane:
// "{sub}/{rg}/{set}/{instance id}/{nic}", lower case.
func MemberID(set model.SetRef, instanceID int64, nic string) string {
	return instancePrefix(set, instanceID) + strings.ToLower(nic)
}

// instancePrefix is the prefix of every member id of one instance.
func instancePrefix(set model.SetRef, instanceID int64) string {
	return set.String() + "/" + strconv.FormatInt(instanceID, 10) + "/"
}

// natPoolName is the backend pool that holds an inbound NAT pool's members
// (the data plane maps NAT ports over a pool; the ARM model names the NAT
// pool on the NIC instead).
func natPoolName(name string) string { return "natpool:" + name }

// Reach says how the host reaches an instance: the loopback forwards of
// its guest ports as the driver reports them (driver.Status.Ports: "health"
// is the guest's own port, "ssh" a VM's SSH port, a number that guest
// port). ok is false when the instance is not on a host.
type Reach func(set model.SetRef, instanceID int64) (ports map[string]string, ok bool)

// BackendPorts maps each guest port the load balancer uses to the host
// address that reaches it: the forward of that port when the driver has
// one, a VM's SSH forward for 22, else the guest's own port (the demo
// guest and process instances serve every protocol on one port). nil when
// the instance has no forward at all.
func BackendPorts(used []int, host map[string]string) map[int]string {
	def := host["health"]
	out := make(map[int]string, len(used))
	for _, p := range used {
		a := host[strconv.Itoa(p)]
		if a == "" && p == 22 {
			a = host["ssh"]
		}
		if a == "" {
			a = def
		}
		if a == "" {
			return nil
		}
		out[p] = a
	}
	return out
}

// Convert turns a load balancer's records (network.LoadBalancerConfig)
// into the data plane's configuration. Frontends without an address yet,
// rules of protocol All (not served) and members the host cannot reach are
// left out and said in skipped. Members are always addressed by their
// loopback forwards: the virtual network bridges have no host address
// (internal/driver/netattach), so a private IP is not reachable from the
// host's network namespace where the listeners are.
func Convert(c *network.LBConfig, reach Reach) (cfg *lb.Config, skipped []string) {
	cfg = &lb.Config{}
	fes := map[string]bool{}
	for _, f := range c.Frontends {
		if !f.Address.IsValid() {
			skipped = append(skipped, "frontend "+f.Name+": no address yet")
			continue
		}
		fes[strings.ToLower(f.Name)] = true
		cfg.Frontends = append(cfg.Frontends, lb.Frontend{Name: strings.ToLower(f.Name), Address: f.Address})
	}
	var used []int
	probes := map[string]bool{}
	for _, p := range c.Probes {
		pr := lb.Probe{
			Name: strings.ToLower(p.Name), Port: p.Port,
			Interval: time.Duration(max(p.IntervalSeconds, 1)) * time.Second, Threshold: max(p.NumberOfProbes, 1),
		}
		switch p.Protocol {
		case "http":
			pr.Protocol, pr.RequestPath = lb.ProbeHTTP, p.Path
		case "https":
			pr.Protocol, pr.RequestPath = lb.ProbeHTTPS, p.Path
		default:
			pr.Protocol = lb.ProbeTCP
		}
		if pr.Protocol != lb.ProbeTCP && !strings.HasPrefix(pr.RequestPath, "/") {
			pr.RequestPath = "/" + pr.RequestPath
		}
		probes[pr.Name] = true
		cfg.Probes = append(cfg.Probes, pr)
		used = append(used, p.Port)
	}
	pools := map[string]bool{}
	for _, r := range c.Rules {
		proto, ok := protocol(r.Protocol)
		switch {
		case !ok:
			skipped = append(skipped, "rule "+r.Name+": protocol "+r.Protocol+" is not served")
			continue
		case !fes[strings.ToLower(r.Frontend)] || len(r.BackendPools) == 0:
			skipped = append(skipped, "rule "+r.Name+": no frontend address or backend pool")
			continue
		}
		rule := lb.Rule{
			Name: strings.ToLower(r.Name), Frontend: strings.ToLower(r.Frontend), Protocol: proto,
			FrontendPort: r.FrontendPort, Pool: strings.ToLower(r.BackendPools[0]), BackendPort: r.BackendPort,
			Distribution: lb.Distribution(r.LoadDistribution), IdleTimeout: time.Duration(r.IdleTimeoutMinutes) * time.Minute,
			TCPReset: r.EnableTCPReset,
		}
		if probes[strings.ToLower(r.Probe)] {
			rule.Probe = strings.ToLower(r.Probe)
		}
		pools[rule.Pool] = true
		cfg.Rules = append(cfg.Rules, rule)
		used = append(used, r.BackendPort)
	}
	for _, n := range c.NATPools {
		proto, ok := protocol(n.Protocol)
		if !ok || !fes[strings.ToLower(n.Frontend)] {
			skipped = append(skipped, "inbound NAT pool "+n.Name+": protocol not served or no frontend address")
			continue
		}
		np := lb.NATPool{
			Name: strings.ToLower(n.Name), Frontend: strings.ToLower(n.Frontend), Protocol: proto,
			Start: n.FrontendPortStart, End: n.FrontendPortEnd, Pool: natPoolName(strings.ToLower(n.Name)),
			BackendPort: n.BackendPort, IdleTimeout: time.Duration(n.IdleTimeoutMinutes) * time.Minute,
		}
		pools[np.Pool] = true
		cfg.NATPools = append(cfg.NATPools, np)
		used = append(used, n.BackendPort)
	}
	slices.Sort(used)
	used = slices.Compact(used)
	members := map[string][]lb.Member{}
	for _, m := range c.Members {
		host, ok := reach(m.Set, m.InstanceID)
		if !ok {
			continue
		}
		ports := BackendPorts(used, host)
		if ports == nil {
			skipped = append(skipped, "member "+MemberID(m.Set, m.InstanceID, m.NIC)+": no loopback forward")
			continue
		}
		mem := lb.Member{ID: MemberID(m.Set, m.InstanceID, m.NIC), InstanceID: m.InstanceID, Ports: ports}
		for _, p := range m.BackendPools {
			members[strings.ToLower(p)] = append(members[strings.ToLower(p)], mem)
		}
		for _, p := range m.NATPools {
			members[natPoolName(strings.ToLower(p))] = append(members[natPoolName(strings.ToLower(p))], mem)
		}
	}
	names := make([]string, 0, len(pools))
	for p := range pools {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		ms := members[p]
		slices.SortFunc(ms, func(a, b lb.Member) int { return strings.Compare(a.ID, b.ID) })
		cfg.Pools = append(cfg.Pools, lb.Pool{Name: p, Members: slices.CompactFunc(ms, func(a, b lb.Member) bool { return a.ID == b.ID })})
	}
	return cfg, skipped
}

func protocol(p string) (lb.Protocol, bool) {
	switch p {
	case "tcp":
		return lb.TCP, true
	case "udp":
		return lb.UDP, true
	}
	return "", false
}

// DrainPeriod is how long a member's open connections may finish when it
// leaves rotation: the shortest idle timeout of the rules and NAT pools
// it is behind, at most limit.
func DrainPeriod(cfg *lb.Config, limit time.Duration) time.Duration {
	d := limit
	for _, r := range cfg.Rules {
		if r.IdleTimeout > 0 {
			d = min(d, r.IdleTimeout)
		}
	}
	for _, n := range cfg.NATPools {
		if n.IdleTimeout > 0 {
			d = min(d, n.IdleTimeout)
		}
	}
	return d
}

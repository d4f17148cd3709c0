package network

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/nsg"
)

// NameRE is what Microsoft.Network accepts as a resource or part name.
var NameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`)

// ValidName checks a name; target names the parameter.
func ValidName(name, target string) error {
	if !NameRE.MatchString(name) {
		return errs.New(errs.Invalid, "InvalidResourceName", "Resource name %s is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.", name).WithTarget(target)
	}
	return nil
}

func s(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func i32(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// ParsePrefix parses an address prefix in CIDR notation that must be
// IPv4 and its network address; id names the resource for the error.
func ParsePrefix(v, id, target string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, errs.New(errs.Invalid, "InvalidAddressPrefixFormat", "Address prefix %s of resource %s is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24.", v, id).WithTarget(target)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errs.New(errs.Invalid, "InvalidCIDRNotation", "The address prefix %s in resource %s has an invalid CIDR notation. For the given prefix length, the address prefix should be %s.", v, id, p.Masked()).WithTarget(target)
	}
	return p, nil
}

// SubnetPrefixes are a subnet's address prefixes (addressPrefix and
// addressPrefixes), unparsed.
func SubnetPrefixes(sn *armnetwork.Subnet) []string {
	if sn == nil || sn.Properties == nil {
		return nil
	}
	var out []string
	if v := s(sn.Properties.AddressPrefix); v != "" {
		out = append(out, v)
	}
	for _, v := range sn.Properties.AddressPrefixes {
		if v != nil && *v != "" && *v != s(sn.Properties.AddressPrefix) {
			out = append(out, *v)
		}
	}
	return out
}

// SubnetRanges are the address ranges a subnet gives NICs.
func SubnetRanges(sn *armnetwork.Subnet) []Range {
	var out []Range
	for _, v := range SubnetPrefixes(sn) {
		if p, err := netip.ParsePrefix(v); err == nil {
			if r, ok := SubnetRange(p); ok {
				out = append(out, r)
			}
		}
	}
	return out
}

// FindSubnet finds a subnet of a virtual network by name.
func FindSubnet(vn *armnetwork.VirtualNetwork, name string) *armnetwork.Subnet {
	if vn == nil || vn.Properties == nil {
		return nil
	}
	for _, sn := range vn.Properties.Subnets {
		if sn != nil && strings.EqualFold(s(sn.Name), name) {
			return sn
		}
	}
	return nil
}

// ValidateVNet checks a virtual network: its address space, and each
// subnet's name and prefixes (CIDR, within the address space, no overlap).
func ValidateVNet(ref model.NetRef, vn *armnetwork.VirtualNetwork) error {
	id := ref.ID()
	if vn.Properties == nil || vn.Properties.AddressSpace == nil || len(vn.Properties.AddressSpace.AddressPrefixes) == 0 {
		return errs.New(errs.Invalid, "InvalidRequestFormat", "Cannot parse the request: the virtual network %s has no address space (properties.addressSpace.addressPrefixes).", id).WithTarget("properties.addressSpace.addressPrefixes")
	}
	var space []netip.Prefix
	for i, v := range vn.Properties.AddressSpace.AddressPrefixes {
		p, err := ParsePrefix(s(v), id, "properties.addressSpace.addressPrefixes["+strconv.Itoa(i)+"]")
		if err != nil {
			return err
		}
		for _, q := range space {
			if q.Overlaps(p) {
				return errs.New(errs.Invalid, "VnetAddressSpacesOverlap", "Address space %s of virtual network %s overlaps with %s.", p, id, q).WithTarget("properties.addressSpace.addressPrefixes")
			}
		}
		space = append(space, p)
	}
	type placed struct {
		name string
		p    netip.Prefix
	}
	var taken []placed
	seen := map[string]bool{}
	for i, sn := range vn.Properties.Subnets {
		target := "properties.subnets[" + strconv.Itoa(i) + "]"
		if sn == nil {
			return errs.InvalidParameter(target, "Subnet %d of %s is null.", i, id)
		}
		name := s(sn.Name)
		if err := ValidName(name, target+".name"); err != nil {
			return err
		}
		if seen[strings.ToLower(name)] {
			return errs.New(errs.Invalid, "DuplicateResourceName", "Resource %s has two child resources with the same name (%s).", id, name).WithTarget(target + ".name")
		}
		seen[strings.ToLower(name)] = true
		sid := SubnetID(ref, name)
		prefixes := SubnetPrefixes(sn)
		if len(prefixes) == 0 {
			return errs.New(errs.Invalid, "NetcfgInvalidSubnet", "Subnet %s is not valid in virtual network %s: it has no address prefix.", name, ref.Name).WithTarget(target + ".properties.addressPrefix")
		}
		for _, v := range prefixes {
			p, err := ParsePrefix(v, sid, target+".properties.addressPrefix")
			if err != nil {
				return err
			}
			if p.Bits() > 29 {
				return errs.New(errs.Invalid, "InvalidAddressPrefix", "Subnet %s has address prefix %s: the smallest supported subnet is a /29.", name, p).WithTarget(target + ".properties.addressPrefix")
			}
			within := false
			for _, q := range space {
				if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
					within = true
				}
			}
			if !within {
				return errs.New(errs.Invalid, "NetcfgSubnetRangeOutsideVnet", "Subnet '%s' is not valid because its IP address range is outside the IP address range of virtual network '%s'.", name, ref.Name).WithTarget(target + ".properties.addressPrefix")
			}
			for _, t := range taken {
				if t.p.Overlaps(p) {
					return errs.New(errs.Invalid, "NetcfgSubnetRangesOverlap", "Subnet '%s' is not valid in virtual network '%s' because its IP address range overlaps with that of subnet '%s'.", name, ref.Name, t.name).WithTarget(target + ".properties.addressPrefix")
				}
			}
			taken = append(taken, placed{name, p})
		}
		if sn.Properties.NetworkSecurityGroup != nil {
			if _, ok := ParseRef(s(sn.Properties.NetworkSecurityGroup.ID), RefNSG); !ok {
				return invalidRef(s(sn.Properties.NetworkSecurityGroup.ID), sid, target+".properties.networkSecurityGroup.id")
			}
		}
	}
	return nil
}

// invalidRef is Azure's answer to a reference that does not resolve.
func invalidRef(ref, by, target string) *errs.Error {
	return errs.New(errs.Invalid, "InvalidResourceReference", "Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", ref, by).WithTarget(target)
}

// InvalidRef is invalidRef for callers outside the package.
func InvalidRef(ref, by, target string) *errs.Error { return invalidRef(ref, by, target) }

var dnsLabelRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,61}[a-z0-9]$`)

// ValidatePublicIP checks a public IP address: allocation method, version,
// SKU, idle timeout and DNS label.
func ValidatePublicIP(ref model.NetRef, ip *armnetwork.PublicIPAddress) error {
	p := ip.Properties
	if p == nil {
		return nil
	}
	if m := p.PublicIPAllocationMethod; m != nil && !oneOf(string(*m), "Static", "Dynamic") {
		return errs.InvalidParameter("properties.publicIPAllocationMethod", "The value '%s' of publicIPAllocationMethod is not valid. Allowed values are 'Static', 'Dynamic'.", *m)
	}
	if v := p.PublicIPAddressVersion; v != nil && !strings.EqualFold(string(*v), "IPv4") {
		return errs.InvalidParameter("properties.publicIPAddressVersion", "Public IP address version '%s' is not supported in this cloud; only IPv4 is.", *v)
	}
	if ip.SKU != nil && ip.SKU.Name != nil {
		if !oneOf(string(*ip.SKU.Name), "Basic", "Standard") {
			return errs.InvalidParameter("sku.name", "The SKU '%s' of public IP address %s is not supported. Allowed values are 'Basic', 'Standard'.", *ip.SKU.Name, ref.ID())
		}
		if strings.EqualFold(string(*ip.SKU.Name), "Standard") && p.PublicIPAllocationMethod != nil && strings.EqualFold(string(*p.PublicIPAllocationMethod), "Dynamic") {
			return errs.New(errs.Invalid, "StandardSkuPublicIPAddressesMustBeStatic", "Standard sku publicIp %s must have AllocationMethod set to Static.", ref.ID()).WithTarget("properties.publicIPAllocationMethod")
		}
	}
	if t := p.IdleTimeoutInMinutes; t != nil && (*t < 4 || *t > 30) {
		return errs.InvalidParameter("properties.idleTimeoutInMinutes", "The idle timeout %d of public IP address %s is out of range. The value must be between 4 and 30, inclusive.", *t, ref.ID())
	}
	if d := p.DNSSettings; d != nil && d.DomainNameLabel != nil && *d.DomainNameLabel != "" && !dnsLabelRE.MatchString(*d.DomainNameLabel) {
		return errs.New(errs.Invalid, "InvalidDomainNameLabel", "The domain name label %s is invalid. It must conform to the following regular expression: ^[a-z][a-z0-9-]{1,61}[a-z0-9]$.", *d.DomainNameLabel).WithTarget("properties.dnsSettings.domainNameLabel")
	}
	return nil
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return true
		}
	}
	return false
}

// ValidateNSG checks a network security group's rules: direction, access,
// protocol, unique priority per direction within 100..4096, port ranges
// and address prefixes.
func ValidateNSG(ref model.NetRef, g *armnetwork.SecurityGroup) error {
	if g.Properties == nil {
		return nil
	}
	seen := map[string]bool{}
	prio := map[string]string{}
	for i, r := range g.Properties.SecurityRules {
		target := "properties.securityRules[" + strconv.Itoa(i) + "]"
		if r == nil {
			return errs.InvalidParameter(target, "Security rule %d is null.", i)
		}
		name := s(r.Name)
		if err := ValidName(name, target+".name"); err != nil {
			return err
		}
		if seen[strings.ToLower(name)] {
			return errs.New(errs.Invalid, "DuplicateResourceName", "Resource %s has two security rules named %s.", ref.ID(), name).WithTarget(target + ".name")
		}
		seen[strings.ToLower(name)] = true
		rid := ChildID(ref, "securityRules", name)
		p := r.Properties
		if p == nil {
			return errs.InvalidParameter(target+".properties", "Security rule %s has no properties.", rid)
		}
		if p.Direction == nil || !oneOf(string(*p.Direction), "Inbound", "Outbound") {
			return errs.New(errs.Invalid, "SecurityRuleInvalidDirection", "Security rule %s has invalid direction '%s'. Allowed values are 'Inbound', 'Outbound'.", rid, s((*string)(p.Direction))).WithTarget(target + ".properties.direction")
		}
		if p.Access == nil || !oneOf(string(*p.Access), "Allow", "Deny") {
			return errs.New(errs.Invalid, "SecurityRuleInvalidAccess", "Security rule %s has invalid access '%s'. Allowed values are 'Allow', 'Deny'.", rid, s((*string)(p.Access))).WithTarget(target + ".properties.access")
		}
		if p.Protocol == nil || !oneOf(string(*p.Protocol), "Tcp", "Udp", "Icmp", "Esp", "Ah", "*") {
			return errs.New(errs.Invalid, "SecurityRuleInvalidProtocol", "Security rule %s has invalid protocol '%s'. Allowed values are 'Tcp', 'Udp', 'Icmp', 'Esp', 'Ah', '*'.", rid, s((*string)(p.Protocol))).WithTarget(target + ".properties.protocol")
		}
		pr := i32(p.Priority, 0)
		if pr < 100 || pr > 4096 {
			return errs.New(errs.Invalid, "SecurityRuleInvalidPriority", "Security rule %s has invalid priority %d. Value provided: %d. Allowed range 100-4096.", rid, pr, pr).WithTarget(target + ".properties.priority")
		}
		k := strings.ToLower(string(*p.Direction)) + "/" + strconv.Itoa(int(pr))
		if other, ok := prio[k]; ok {
			return errs.New(errs.Invalid, "SecurityRuleConflict", "Security rule %s conflicts with rule %s. Rules cannot have the same Priority and Direction.", name, other).WithTarget(target + ".properties.priority")
		}
		prio[k] = name
		ports := append([]*string{p.SourcePortRange, p.DestinationPortRange}, append(p.SourcePortRanges, p.DestinationPortRanges...)...)
		for _, v := range ports {
			if v != nil && !validPortRange(*v) {
				return errs.New(errs.Invalid, "SecurityRuleInvalidPortRange", "Security rule %s has invalid port range %s. Value provided: %s. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535.", rid, *v, *v).WithTarget(target + ".properties")
			}
		}
		addrs := append([]*string{p.SourceAddressPrefix, p.DestinationAddressPrefix}, append(p.SourceAddressPrefixes, p.DestinationAddressPrefixes...)...)
		for _, v := range addrs {
			if v != nil && !validAddrPrefix(*v) {
				return errs.New(errs.Invalid, "SecurityRuleInvalidAddressPrefix", "Security rule %s has invalid address prefix %s.", rid, *v).WithTarget(target + ".properties")
			}
		}
	}
	// What Azure accepts but the host cannot enforce (IPv6 prefixes, say)
	// is refused here: an NSG the enforcer cannot compile would leave its
	// instances unfiltered.
	grp := nsg.FromARM(ref.ID(), g)
	if _, err := nsg.Translate(&grp, nil, nsg.Env{}); err != nil {
		return errs.New(errs.Invalid, "SecurityRuleNotSupported", "Network security group %s cannot be enforced by this cloud: %v.", ref.ID(), err).WithTarget("properties.securityRules")
	}
	return nil
}

func validPortRange(v string) bool {
	if v == "*" {
		return true
	}
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 0 || a > 65535 {
		return false
	}
	if !isRange {
		return true
	}
	b, err := strconv.Atoi(hi)
	return err == nil && b >= a && b <= 65535
}

var serviceTagRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]*$`)

func validAddrPrefix(v string) bool {
	if v == "*" || serviceTagRE.MatchString(v) {
		return true
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(v)
	return err == nil
}

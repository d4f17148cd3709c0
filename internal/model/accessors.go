package model

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// Defaults applied when the model leaves a field out.
const (
	DefaultFaultDomainCount = 5
	UpdateDomainCount       = 5
	DefaultSize             = "Standard_A1"
)

// Capacity is sku.capacity (0 when absent).
func (s *ScaleSet) Capacity() int64 {
	if s.Model != nil && s.Model.SKU != nil && s.Model.SKU.Capacity != nil {
		return *s.Model.SKU.Capacity
	}
	return 0
}

// Size is sku.name.
func (s *ScaleSet) Size() string {
	if s.Model != nil && s.Model.SKU != nil && s.Model.SKU.Name != nil {
		return *s.Model.SKU.Name
	}
	return DefaultSize
}

// Location is the scale set's location.
func (s *ScaleSet) Location() string {
	if s.Model != nil && s.Model.Location != nil {
		return *s.Model.Location
	}
	return ""
}

func (s *ScaleSet) props() *armcompute.VirtualMachineScaleSetProperties {
	if s.Model == nil || s.Model.Properties == nil {
		return &armcompute.VirtualMachineScaleSetProperties{}
	}
	return s.Model.Properties
}

// UpgradeMode is upgradePolicy.mode (Manual when absent).
func (s *ScaleSet) UpgradeMode() string {
	p := s.props()
	if p.UpgradePolicy != nil && p.UpgradePolicy.Mode != nil {
		return string(*p.UpgradePolicy.Mode)
	}
	return string(armcompute.UpgradeModeManual)
}

// FaultDomainCount is platformFaultDomainCount, defaulted.
func (s *ScaleSet) FaultDomainCount() int {
	p := s.props()
	if p.PlatformFaultDomainCount != nil && *p.PlatformFaultDomainCount > 0 {
		return int(*p.PlatformFaultDomainCount)
	}
	return DefaultFaultDomainCount
}

// ScaleInRule is the first scale-in policy rule (Default when absent).
func (s *ScaleSet) ScaleInRule() string {
	p := s.props()
	if p.ScaleInPolicy != nil && len(p.ScaleInPolicy.Rules) > 0 && p.ScaleInPolicy.Rules[0] != nil {
		return string(*p.ScaleInPolicy.Rules[0])
	}
	return string(armcompute.VirtualMachineScaleSetScaleInRulesDefault)
}

// MaxComputerNamePrefix bounds a computer name prefix (Azure's bound for
// Windows; the six-character suffix keeps names within a host name's 15).
const MaxComputerNamePrefix = 9

// ComputerNamePrefix is osProfile.computerNamePrefix, or one derived from
// the set's name: its letters, digits and hyphens, lower-cased, not
// starting with a hyphen, at most MaxComputerNamePrefix of them ("vm" if
// none), so that computer names are valid host names whatever the set's
// name.
func (s *ScaleSet) ComputerNamePrefix() string {
	p := s.props()
	if vp := p.VirtualMachineProfile; vp != nil && vp.OSProfile != nil && vp.OSProfile.ComputerNamePrefix != nil && *vp.OSProfile.ComputerNamePrefix != "" {
		return *vp.OSProfile.ComputerNamePrefix
	}
	return DefaultComputerNamePrefix(s.Name)
}

// DefaultComputerNamePrefix derives a computer name prefix from a scale
// set's name.
func DefaultComputerNamePrefix(name string) string {
	prefix := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return -1
	}, name)
	prefix = strings.TrimLeft(prefix, "-")
	if len(prefix) > MaxComputerNamePrefix {
		prefix = prefix[:MaxComputerNamePrefix]
	}
	if prefix == "" {
		prefix = "vm"
	}
	return prefix
}

// ImageSource is what the model asks the OS disk to be built from: a
// platform image reference or a custom image URI.
type ImageSource struct {
	Publisher, Offer, SKU, Version string
	URI                            string
}

// IsCustom reports whether the source is a custom image URI.
func (i ImageSource) IsCustom() bool { return i.URI != "" }

// ImageSource extracts the model's image source.
func (s *ScaleSet) ImageSource() ImageSource {
	p := s.props()
	vp := p.VirtualMachineProfile
	if vp == nil || vp.StorageProfile == nil {
		return ImageSource{}
	}
	sp := vp.StorageProfile
	if sp.OSDisk != nil && sp.OSDisk.Image != nil && sp.OSDisk.Image.URI != nil && *sp.OSDisk.Image.URI != "" {
		return ImageSource{URI: *sp.OSDisk.Image.URI}
	}
	var src ImageSource
	if r := sp.ImageReference; r != nil {
		src.Publisher = deref(r.Publisher)
		src.Offer = deref(r.Offer)
		src.SKU = deref(r.SKU)
		src.Version = deref(r.Version)
	}
	return src
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

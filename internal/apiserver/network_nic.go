package apiserver

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
)

// The network interfaces of scale set instances are not resources of
// their own: they are read views of the scale set's NIC configurations,
// one per instance, with the private address IPAM gave the instance (none
// until it has one).

const typeNIC = "Microsoft.Network/networkInterfaces"

// setNICs are a scale set's NIC configurations as GET shows them (a model
// without any has the default primary NIC).
func setNICs(set *model.ScaleSet) []network.NICSpec {
	m := &armcompute.VirtualMachineScaleSet{Properties: &armcompute.VirtualMachineScaleSetProperties{VirtualMachineProfile: profileWithDefaults(set.Model)}}
	return network.ScaleSetNICs(m)
}

// macAddress is a stable MAC for an instance NIC (Azure's 00-0D-3A prefix).
func macAddress(vmID, nic string) string {
	h := sha256.Sum256([]byte(vmID + "/" + strings.ToLower(nic)))
	return fmt.Sprintf("00-0D-3A-%02X-%02X-%02X", h[0], h[1], h[2])
}

func (s *Server) renderNICs(ctx context.Context, set *model.ScaleSet, inst *model.Instance) ([]*armnetwork.Interface, error) {
	addrs, err := network.InstanceAddresses(ctx, s.opts.Store, set.Ref(), inst.ID)
	if err != nil {
		return nil, err
	}
	vmID := arm.InstanceID(set.Sub, set.RG, set.Name, strconv.FormatInt(inst.ID, 10))
	var out []*armnetwork.Interface
	ok := ptr(armnetwork.ProvisioningStateSucceeded)
	for _, n := range setNICs(set) {
		nicID := vmID + "/networkInterfaces/" + n.Name
		nic := &armnetwork.Interface{
			ID: ptr(nicID), Name: ptr(n.Name), Type: ptr(typeNIC), Location: ptr(set.Location()),
			Properties: &armnetwork.InterfacePropertiesFormat{
				Primary: ptr(n.Primary), ProvisioningState: ok, MacAddress: ptr(macAddress(inst.VMID, n.Name)),
				VirtualMachine:              &armnetwork.SubResource{ID: ptr(vmID)},
				EnableAcceleratedNetworking: ptr(false), EnableIPForwarding: ptr(false),
				IPConfigurations: []*armnetwork.InterfaceIPConfiguration{},
			},
		}
		primary, _ := n.PrimaryIPConfig()
		for _, c := range n.IPConfigs {
			ipc := &armnetwork.InterfaceIPConfiguration{
				ID: ptr(nicID + "/ipConfigurations/" + c.Name), Name: ptr(c.Name),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Primary: ptr(c.Name == primary.Name), ProvisioningState: ok,
					PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodDynamic),
					PrivateIPAddressVersion:   ptr(armnetwork.IPVersionIPv4),
				},
			}
			if c.Subnet != "" {
				ipc.Properties.Subnet = &armnetwork.Subnet{ID: ptr(c.Subnet)}
			}
			for _, id := range c.BackendPools {
				ipc.Properties.LoadBalancerBackendAddressPools = append(ipc.Properties.LoadBalancerBackendAddressPools, &armnetwork.BackendAddressPool{ID: ptr(id)})
			}
			if c.Name == primary.Name {
				for _, a := range addrs {
					if strings.EqualFold(a.NIC, n.Name) {
						ipc.Properties.PrivateIPAddress = ptr(a.Address.String())
					}
				}
			}
			nic.Properties.IPConfigurations = append(nic.Properties.IPConfigurations, ipc)
		}
		out = append(out, nic)
	}
	return out, nil
}

// listScaleSetNICs serves GET $VMSS/networkInterfaces.
func (s *Server) listScaleSetNICs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	set, _, err := s.loadSet(ctx, s.ref(rc))
	if err != nil {
		return err
	}
	insts, _, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(set.Ref()))
	if err != nil {
		return err
	}
	page := arm.Page[*armnetwork.Interface]{Value: []*armnetwork.Interface{}}
	for _, inst := range insts {
		nics, err := s.renderNICs(ctx, set, inst)
		if err != nil {
			return err
		}
		page.Value = append(page.Value, nics...)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) instanceNICs(r *http.Request, rc *reqCtx) ([]*armnetwork.Interface, error) {
	set, inst, err := s.loadSetInstance(r.Context(), s.ref(rc), rc.v("id"))
	if err != nil {
		return nil, err
	}
	return s.renderNICs(r.Context(), set, inst)
}

// listInstanceNICs serves GET $VMSS/virtualMachines/{id}/networkInterfaces.
func (s *Server) listInstanceNICs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	nics, err := s.instanceNICs(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, arm.Page[*armnetwork.Interface]{Value: nics})
	return nil
}

func (s *Server) instanceNIC(r *http.Request, rc *reqCtx) (*armnetwork.Interface, error) {
	nics, err := s.instanceNICs(r, rc)
	if err != nil {
		return nil, err
	}
	for _, n := range nics {
		if strings.EqualFold(*n.Name, rc.v("nic")) {
			return n, nil
		}
	}
	return nil, errs.New(errs.NotFound, "ResourceNotFound", "The Resource 'Microsoft.Network/networkInterfaces/%s' under resource group '%s' was not found.", rc.v("nic"), rc.v("rg"))
}

// getInstanceNIC serves GET $VMSS/virtualMachines/{id}/networkInterfaces/{nic}.
func (s *Server) getInstanceNIC(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	nic, err := s.instanceNIC(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nic)
	return nil
}

// listInstanceNICIPConfigs serves .../networkInterfaces/{nic}/ipConfigurations.
func (s *Server) listInstanceNICIPConfigs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	nic, err := s.instanceNIC(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, arm.Page[*armnetwork.InterfaceIPConfiguration]{Value: nic.Properties.IPConfigurations})
	return nil
}

// listScaleSetPublicIPs serves the public IPs of a scale set's instances:
// instance-level public IPs (publicIPAddressConfiguration) are not given
// yet, so the list is empty once the scale set (and instance) exist.
func (s *Server) listScaleSetPublicIPs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if rc.v("id") != "" {
		if _, err := s.instanceNIC(r, rc); err != nil {
			return err
		}
	} else if _, _, err := s.loadSet(r.Context(), s.ref(rc)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, arm.Page[*armnetwork.PublicIPAddress]{Value: []*armnetwork.PublicIPAddress{}})
	return nil
}

package nsg

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// TableName is the nftables table (family ip) vmssd keeps in an
// instance's network namespace.
const TableName = "vmssd_nsg"

// Chain names: the base chains and one regular chain per layer.
const (
	chainIn  = "input"
	chainOut = "output"
)

// Apply replaces the NSG table in the network namespace open at fd (-1:
// this process's own) with rs's program, atomically; nil rs removes it.
func Apply(fd int, rs *Ruleset) error {
	opts := []nftables.ConnOption{}
	if fd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nsg: nftables: %w", err)
	}
	defer c.CloseLasting()
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	// Adding then deleting the table in the same batch removes it whether
	// it existed or not; the new one is then built in that batch too.
	c.AddTable(t)
	c.DelTable(t)
	if rs != nil {
		Program(c, rs)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nsg: apply: %w", err)
	}
	return nil
}

// Program adds rs's table to the batch of c: base chains input and
// output (loopback passes, replies pass, invalid drops, then each layer's
// chain is jumped to: a layer returns when it allows and drops when it
// denies).
func Program(c *nftables.Conn, rs *Ruleset) {
	t := c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
	accept := nftables.ChainPolicyAccept
	for _, d := range []struct {
		name   string
		hook   *nftables.ChainHook
		layers []Layer
		ifKey  expr.MetaKey
	}{
		{chainIn, nftables.ChainHookInput, rs.Inbound, expr.MetaKeyIIFNAME},
		{chainOut, nftables.ChainHookOutput, rs.Outbound, expr.MetaKeyOIFNAME},
	} {
		base := c.AddChain(&nftables.Chain{
			Name: d.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: d.hook, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		})
		add := func(ch *nftables.Chain, exprs ...expr.Any) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
		}
		add(base, &expr.Meta{Key: d.ifKey, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			&expr.Verdict{Kind: expr.VerdictAccept})
		add(base, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, expr.VerdictAccept)...)
		add(base, ctState(expr.CtStateBitINVALID, expr.VerdictDrop)...)
		for i, l := range d.layers {
			name := fmt.Sprintf("%s-%d", d.name, i)
			lc := c.AddChain(&nftables.Chain{Name: name, Table: t})
			for _, m := range l.Matches {
				for _, r := range matchRules(m) {
					add(lc, r...)
				}
			}
			add(base, &expr.Verdict{Kind: expr.VerdictJump, Chain: name})
		}
	}
}

func ctState(bits uint32, v expr.VerdictKind) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: v},
	}
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// matchRules expands a Match into nftables rules (one per protocol,
// prefix and port range combination) with its verdict: return (allow,
// on to the next layer) or drop.
func matchRules(m Match) [][]expr.Any {
	verdict := &expr.Verdict{Kind: expr.VerdictDrop}
	if m.Allow {
		verdict = &expr.Verdict{Kind: expr.VerdictReturn}
	}
	protos := []Proto{m.Proto}
	if m.Proto == ProtoAny && (m.SrcPorts != nil || m.DstPorts != nil) {
		protos = []Proto{ProtoTCP, ProtoUDP}
	}
	sps, dps := portsOrAny(m.SrcPorts), portsOrAny(m.DstPorts)
	var out [][]expr.Any
	for _, proto := range protos {
		for _, src := range m.Src {
			for _, dst := range m.Dst {
				for _, sp := range sps {
					for _, dp := range dps {
						var e []expr.Any
						if proto != ProtoAny {
							e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
								&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(proto)}})
						}
						e = append(e, prefixMatch(12, src)...)
						e = append(e, prefixMatch(16, dst)...)
						e = append(e, portMatch(0, sp)...)
						e = append(e, portMatch(2, dp)...)
						out = append(out, append(e, verdict))
					}
				}
			}
		}
	}
	return out
}

func portsOrAny(rs []PortRange) []PortRange {
	if rs == nil {
		return []PortRange{AllPorts}
	}
	return rs
}

// prefixMatch matches the IPv4 address at offset (12 source, 16
// destination) against p.
func prefixMatch(offset uint32, p netip.Prefix) []expr.Any {
	if p.Bits() == 0 {
		return nil
	}
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
	addr := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]}}
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]}}
}

// portMatch matches the transport port at offset (0 source, 2
// destination) against r; the protocol was matched before.
func portMatch(offset uint32, r PortRange) []expr.Any {
	if r == AllPorts {
		return nil
	}
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}
	lo, hi := binary.BigEndian.AppendUint16(nil, r.Lo), binary.BigEndian.AppendUint16(nil, r.Hi)
	if r.Lo == r.Hi {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo}}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: hi}}
}

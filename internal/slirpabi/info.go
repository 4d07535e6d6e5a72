package slirpabi

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// connHeader is the first line of libslirp's connection table, which
// QEMU's `info usernet` prints and tools parse.
const connHeader = "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\n"

// noFD stands in the FD column: slipway's flows have no descriptor the
// host could use.
const noFD = -1

// ConnectionInfo is slirp_connection_info's table: host forwards first,
// then TCP, UDP and ICMP flows, in libslirp's column layout.
func (i *Instance) ConnectionInfo() string {
	return connectionTable(i.net.Forwards(), i.net.Flows(), i.cfg.Limits.UDPIdleTimeout)
}

func connectionTable(fwds []network.Forward, flows []network.FlowInfo, udpIdle time.Duration) string {
	var b strings.Builder
	b.WriteString(connHeader)
	for _, f := range fwds {
		for k := 0; k < f.HostPorts(); k++ {
			src := "*"
			if !f.HostAddr.IsUnspecified() {
				src = f.HostAddr.String()
			}
			row(&b, fmt.Sprintf("  %s[HOST_FORWARD]", protoName(f.Proto)), src, int(f.HostPort)+k,
				f.GuestAddr.String(), int(f.GuestPort)+k)
		}
	}
	for _, p := range []config.Proto{config.TCP, config.UDP, config.ICMP} {
		for _, f := range flows {
			if f.Proto != p {
				continue
			}
			var state string
			switch p {
			case config.TCP:
				state = fmt.Sprintf("  TCP[%s]", tcpState(f.State))
			default:
				state = fmt.Sprintf("  %s[%d sec]", protoName(p), int(udpIdle/time.Second))
			}
			src, dst := f.Guest, f.Remote
			if f.Forward != 0 {
				// A host client's connection: libslirp shows the host
				// side first for these too.
				src, dst = f.Host, f.Guest
			}
			if p == config.ICMP {
				fmt.Fprintf(&b, "%-19s %3d %15s  -    %15s  -    %5d %5d\n", state, noFD, addrOrStar(src.Addr()), dst.Addr(), 0, 0)
				continue
			}
			row(&b, state, addrOrStar(src.Addr()), int(src.Port()), dst.Addr().String(), int(dst.Port()))
		}
	}
	return b.String()
}

func row(b *strings.Builder, state, src string, sport int, dst string, dport int) {
	fmt.Fprintf(b, "%-19s %3d %15s %5d %15s %5d %5d %5d\n", state, noFD, src, sport, dst, dport, 0, 0)
}

func addrOrStar(a netip.Addr) string {
	if !a.IsValid() || a.IsUnspecified() {
		return "*"
	}
	return a.Unmap().String()
}

func protoName(p config.Proto) string { return strings.ToUpper(string(p)) }

// tcpState names a flow's state as libslirp's TCP states are named.
func tcpState(s string) string {
	switch s {
	case "connecting":
		return "SYN_SENT"
	case "established":
		return "ESTABLISHED"
	case "guest closed":
		return "CLOSE_WAIT"
	case "host closed":
		return "FIN_WAIT_1"
	default:
		return "NONE"
	}
}

// NeighborInfo is slirp_neighbor_info's table: the guests slipway knows,
// by their DHCP leases.
func (i *Instance) NeighborInfo() string {
	var b strings.Builder
	b.WriteString("  Hardware Address  IP Address\n")
	for _, l := range i.net.LeaseInfos() {
		if l.MAC == "" {
			continue
		}
		fmt.Fprintf(&b, "  %17s  %s\n", l.MAC, l.Addr)
	}
	return b.String()
}

package network

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/services/dns"
)

// resolvConfPoll is how often the host's resolv.conf is looked at when
// the upstreams are the host's: a VPN coming up, a changed network or a
// host that started offline reach the guests within this.
const resolvConfPoll = 2 * time.Second

// localNames are the names the DNS answers itself: host.slipway.internal
// and the host names (config.DefaultHostNames unless given) for the host,
// and the records given.
func localNames(cfg config.Config) map[string][]netip.Addr {
	host := hostAddrs(cfg)
	out := map[string][]netip.Addr{}
	add := func(name string, addrs ...netip.Addr) {
		key := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
		for _, a := range addrs {
			if !slices.Contains(out[key], a) {
				out[key] = append(out[key], a)
			}
		}
	}
	if len(host) > 0 {
		add(HostName, host...)
		names := cfg.HostNames
		if len(names) == 0 {
			names = config.DefaultHostNames
		}
		for _, n := range names {
			add(n, host...)
		}
	}
	for _, r := range cfg.DNSRecords {
		add(r.Name, r.IP)
	}
	return out
}

// hostAddrs are the addresses the host names resolve to: those the map
// gives the host (pasta's --map-host-loopback and --map-guest-addr), else
// the gateways, unless they are plain routers.
func hostAddrs(cfg config.Config) []netip.Addr {
	if m := append(slices.Clone(cfg.Map.HostLoopback), cfg.Map.Guest...); len(m) > 0 {
		return m
	}
	if cfg.Map.GatewayIsRouter {
		return nil
	}
	if cfg.NoIPv6 {
		return []netip.Addr{cfg.Gateway}
	}
	return []netip.Addr{cfg.Gateway, cfg.IPv6Gateway}
}

// watchResolvConf follows the host's resolvers while the upstreams are
// the host's: when /etc/resolv.conf changes (replaced, rewritten), the
// forwarder gets its nameservers anew.
func (n *Network) watchResolvConf() {
	if !n.svc.hostResolvers {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var last fileIdentity
		var lastErr string
		if n.host.ReadResolvers == nil {
			last = fileID(hostResolvConf)
		}
		t := time.NewTicker(resolvConfPoll)
		defer t.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
			}
			var servers []netip.AddrPort
			var err error
			if read := n.host.ReadResolvers; read != nil {
				servers, err = read()
			} else {
				id := fileID(hostResolvConf)
				if id == last {
					continue
				}
				last = id
				servers, _, _, err = dns.ReadResolvConf(hostResolvConf)
			}
			if err != nil {
				// Asked each poll (ReadResolvers), the same failure
				// is said once.
				if why := err.Error(); why != lastErr {
					n.log.Warn("the host's resolv.conf went away; keeping the resolvers", "err", err)
					lastErr = why
				}
				continue
			}
			lastErr = ""
			if slices.Equal(servers, n.svc.dns.Upstreams()) {
				continue
			}
			if err := n.svc.dns.SetUpstreams(servers); err != nil {
				n.log.Warn("the host's resolvers", "err", err)
				continue
			}
			n.log.Info("the host's resolvers changed", "upstreams", servers)
		}
	}()
}

// fileIdentity tells a file's versions apart: replaced (another inode) or
// rewritten (size, modification time).
type fileIdentity struct {
	ino, size int64
	mtime     time.Time
}

func fileID(path string) fileIdentity {
	fi, err := os.Stat(path)
	if err != nil {
		return fileIdentity{}
	}
	id := fileIdentity{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(st.Ino)
	}
	return id
}

// DialGuest connects from the gateway to a guest's TCP port.
func (n *Network) DialGuest(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	return n.st.DialTCP(ctx, to)
}

// MACTable maps each MAC address the switch has learned from a guest to
// its link's port (gvproxy's /cam).
func (n *Network) MACTable() map[string]int {
	out := map[string]int{}
	gw := n.gwMAC.String()
	for m, port := range n.sw.MACTable() {
		if s := net.HardwareAddr(m[:]).String(); s != gw { // the stack's own
			out[s] = port
		}
	}
	return out
}

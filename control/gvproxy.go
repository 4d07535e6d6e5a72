package control

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// gvproxy's forwarder API (gvisor-tap-vsock), which podman machine, lima
// and crc drive: expose, unexpose and list single published ports.

func (s *Server) gvproxyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /services/forwarder/all", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, gvproxyList(s.n.Forwards()))
	})
	mux.HandleFunc("POST /services/forwarder/expose", func(w http.ResponseWriter, r *http.Request) {
		var req GvproxyExpose
		if !decodeBody(w, r, &req) {
			return
		}
		rule, err := gvproxyRule(req.Local, req.Remote, req.Protocol)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if _, err := s.n.Publish(rule); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /services/forwarder/unexpose", func(w http.ResponseWriter, r *http.Request) {
		var req GvproxyUnexpose
		if !decodeBody(w, r, &req) {
			return
		}
		rule, err := gvproxyRule(req.Local, "", req.Protocol)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if !rule.HostAddr.IsValid() {
			rule.HostAddr = netip.IPv4Unspecified() // as Publish completes ":PORT"
		}
		rule.HostAddr = rule.HostAddr.Unmap()
		for _, f := range s.n.Forwards() {
			if f.Proto == rule.Proto && f.HostAddr == rule.HostAddr && f.HostPort == rule.HostPort && f.HostPorts() == 1 {
				if _, err := s.n.Unpublish(f.ID); err != nil {
					writeError(w, statusOf(err), err)
					return
				}
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("%s %s: %w", rule.Proto, req.Local, network.ErrNotFound))
	})
}

// gvproxyRule builds a rule from gvproxy's "local" ([HOST]:PORT, an empty
// host meaning all addresses) and "remote" (GUEST:PORT; empty when
// unexposing). The protocol defaults to tcp, as in gvproxy.
func gvproxyRule(local, remote, proto string) (config.PublishRule, error) {
	var r config.PublishRule
	switch proto {
	case "", "tcp":
		r.Proto = config.TCP
	case "udp":
		r.Proto = config.UDP
	default:
		return r, fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	host, port, err := splitHostPort(local)
	if err != nil {
		return r, fmt.Errorf("invalid local %q: %w", local, err)
	}
	if host.IsValid() {
		r.HostAddr = host
	}
	r.HostPort = port
	if remote == "" {
		return r, nil
	}
	guest, gport, err := splitHostPort(remote)
	if err != nil || !guest.IsValid() {
		if err == nil {
			err = errors.New("want GUESTIP:PORT")
		}
		return r, fmt.Errorf("invalid remote %q: %w", remote, err)
	}
	r.GuestAddr, r.GuestPort = guest, gport
	return r, nil
}

// splitHostPort parses [HOST]:PORT; an empty host is the zero Addr.
func splitHostPort(s string) (netip.Addr, uint16, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("port %q is not 1-65535", p)
	}
	var a netip.Addr
	if h != "" {
		if a, err = netip.ParseAddr(h); err != nil {
			return netip.Addr{}, 0, err
		}
	}
	return a, uint16(port), nil
}

// gvproxyList shows every published port as gvproxy lists its proxies,
// one entry per port of a range.
func gvproxyList(fws []Forward) []GvproxyExpose {
	out := []GvproxyExpose{}
	for _, f := range fws {
		for i := 0; i < f.HostPorts(); i++ {
			out = append(out, GvproxyExpose{
				Local:    netip.AddrPortFrom(f.HostAddr, f.HostPort+uint16(i)).String(),
				Remote:   netip.AddrPortFrom(f.GuestAddr, f.GuestPort+uint16(i)).String(),
				Protocol: string(f.Proto),
			})
		}
	}
	return out
}

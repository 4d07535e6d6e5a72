package control

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/gvproxy"
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

// gvproxyRule builds a rule from gvproxy's "local" and "remote" (see
// gvproxy.Rule); on this socket the remote must name the guest's address
// (there is no caller inside the guests' network to take it from).
func gvproxyRule(local, remote, proto string) (config.PublishRule, error) {
	r, err := gvproxy.Rule(local, remote, proto)
	if err == nil && remote != "" && !r.GuestAddr.IsValid() {
		err = fmt.Errorf("invalid remote %q: %w", remote, errors.New("want GUESTIP:PORT"))
	}
	return r, err
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

package gvproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/slipway-net/slipway/internal/splice"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/services/dns"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// API serves gvproxy's HTTP API for one network.
type API struct {
	N        *network.Network
	Fwd      *Forwarder
	Log      *slog.Logger
	Protocol string // /connect's framing
	// Subnet is the guests' network: requests from it (inside the VM, at
	// the gateway) may leave the remote's address out.
	Subnet netip.Prefix
}

// Handler is the whole API: -listen's, with /connect when connect is
// set (not on -services).
func (a *API) Handler(connect bool) http.Handler {
	mux := http.NewServeMux()
	a.forwarderRoutes(mux, "/services/forwarder", false)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.stats()) })
	mux.HandleFunc("/cam", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.N.MACTable()) })
	mux.HandleFunc("/leases", a.leases)
	mux.HandleFunc("/services/dhcp/leases", a.leases)
	mux.HandleFunc("/services/dns/all", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.N.DNS().Zones()) })
	mux.HandleFunc("/services/dns/add", a.addZone)
	mux.HandleFunc("/tunnel", a.tunnel)
	if connect {
		mux.HandleFunc("/connect", a.connect)
	}
	return mux
}

// GuestHandler is the forwarder API served inside the guests' network at
// gateway:80 (gateway.containers.internal), where podman machine's VM
// publishes container ports.
//
// A guest may publish TCP and UDP ports only: a unix expose would have
// slipway make (and unexpose remove) a socket file at a host path the
// guest names.
func (a *API) GuestHandler() http.Handler {
	mux := http.NewServeMux()
	a.forwarderRoutes(mux, "/services/forwarder", true)
	return mux
}

func (a *API) forwarderRoutes(mux *http.ServeMux, prefix string, fromGuest bool) {
	mux.HandleFunc(prefix+"/all", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Fwd.List()) })
	mux.HandleFunc(prefix+"/expose", func(w http.ResponseWriter, r *http.Request) {
		var req Expose
		if !decodePost(w, r, &req) {
			return
		}
		if fromGuest && req.Protocol == "unix" {
			http.Error(w, "unix forwards are not allowed from inside the network", http.StatusForbidden)
			return
		}
		if err := a.Fwd.Expose(req, a.caller(r)); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc(prefix+"/unexpose", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Local    string `json:"local"`
			Protocol string `json:"protocol"`
		}
		if !decodePost(w, r, &req) {
			return
		}
		if fromGuest && req.Protocol == "unix" {
			http.Error(w, "unix forwards are not allowed from inside the network", http.StatusForbidden)
			return
		}
		if err := a.Fwd.Unexpose(req.Protocol, req.Local); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// caller is the request's source address when it is a guest's.
func (a *API) caller(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !a.Subnet.Contains(ap.Addr().Unmap()) {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// decodePost reads a POST's JSON body as gvproxy does: another method or
// a malformed body is a 400 in plain text.
func decodePost(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		http.Error(w, "post only", http.StatusBadRequest)
		return false
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// httpError answers as gvproxy: plain text, 500 unless the request itself
// was bad.
func httpError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var se *statusError
	if errors.As(err, &se) {
		status = se.status
	}
	http.Error(w, err.Error(), status)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// leases maps each leased address to its MAC, as gvproxy's IP pool lists
// them (lima polls this for its VM's address).
func (a *API) leases(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{}
	for _, l := range a.N.Leases() {
		out[l.Addr.String()] = l.MAC
	}
	writeJSON(w, out)
}

func (a *API) addZone(w http.ResponseWriter, r *http.Request) {
	var z dns.Zone
	if !decodePost(w, r, &z) {
		return
	}
	if err := a.N.DNS().AddZone(z); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// stats are the bytes to and from the guests, as gvproxy counts them, and
// slipway's counters by section.
func (a *API) stats() map[string]any {
	var sent, received uint64
	for _, l := range a.N.Links() {
		sent += l.Counter("tx_bytes")
		received += l.Counter("rx_bytes")
	}
	sections := map[string]map[string]any{}
	for _, s := range a.N.Counters() {
		m := map[string]any{}
		for _, c := range s.Counters {
			if c.Key == "" {
				m[c.Name] = c.Value
				continue
			}
			by, _ := m[c.Name].(map[string]uint64)
			if by == nil {
				by = map[string]uint64{}
				m[c.Name] = by
			}
			by[c.Key] = c.Value
		}
		sections[s.Name] = m
	}
	return map[string]any{"BytesSent": sent, "BytesReceived": received, "slipway": sections}
}

// tunnel is gvproxy's /tunnel?ip=&port=: the connection, once hijacked
// and answered "OK", carries a TCP connection to that guest port.
func (a *API) tunnel(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.URL.Query().Get("ip"))
	if r.URL.Query().Get("ip") == "" {
		http.Error(w, "ip is mandatory", http.StatusInternalServerError)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	port, err := strconv.ParseUint(r.URL.Query().Get("port"), 10, 16)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	conn, ok := hijack(w)
	if !ok {
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("OK")); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	g, err := a.N.DialGuest(ctx, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	cancel()
	if err != nil {
		a.Log.Debug("tunnel: cannot dial", "ip", ip, "port", port, "err", err)
		return
	}
	splice.Conns(context.Background(), conn, g)
}

// connect is gvproxy's /connect: the hijacked connection becomes a VM's
// link, framed as the configured protocol.
func (a *API) connect(w http.ResponseWriter, r *http.Request) {
	conn, ok := hijack(w)
	if !ok {
		return
	}
	a.N.Attach(newFramedLink(conn, conn, conn, a.Protocol, "connect:"+r.RemoteAddr))
}

// hijack takes the connection over, with whatever the server read ahead
// of the handler still to be read first.
func hijack(w http.ResponseWriter) (net.Conn, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "webserver doesn't support hijacking", http.StatusInternalServerError)
		return nil, false
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, false
	}
	if n := rw.Reader.Buffered(); n > 0 {
		ahead, _ := rw.Reader.Peek(n)
		return &prefixConn{Conn: conn, ahead: append([]byte(nil), ahead...)}, true
	}
	return conn, true
}

// prefixConn reads ahead's bytes before the connection's.
type prefixConn struct {
	net.Conn
	ahead []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(b, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite passes a half-close on to the connection underneath.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("no half-close on %T", c.Conn)
}

package gvproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/internal/splice"
	"github.com/slipway-net/slipway/network"
)

// Bounds of the forwarder's own proxies (unix sockets): connections
// carried at once per proxy, and proxies.
const (
	maxUnixConns   = 256
	maxUnixProxies = 256
)

// statusError carries the HTTP status gvproxy answers an error with.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func badRequest(err error) error { return &statusError{400, err} }

// Forwarder is gvproxy's port forwarder: TCP and UDP ports published
// through the network, unix sockets carried by proxies of its own, each
// known by protocol and local address as gvproxy knows them.
type Forwarder struct {
	n   *network.Network
	log *slog.Logger
	ctx context.Context

	// hostFiles: a unix forward exposed at run time may make its socket
	// and read its key on the host (not in a sandboxed engine).
	hostFiles bool

	mu      sync.Mutex
	proxies map[string]*proxy
}

type proxy struct {
	Expose
	ids    []uint64  // the network's forwards (tcp, udp)
	closer io.Closer // the proxy (unix)
}

// NewForwarder serves n's forwards; ctx ends the unix proxies.
func NewForwarder(ctx context.Context, n *network.Network, log *slog.Logger) *Forwarder {
	return &Forwarder{n: n, log: log, ctx: ctx, proxies: map[string]*proxy{}, hostFiles: true}
}

func proxyKey(proto, local string) string { return proto + "/" + local }

// Expose adds a forward. A remote without an address (":8080") is the
// caller's own address, as gvproxy takes it (podman publishes from inside
// its VM this way); caller is the zero Addr off the guests' network.
func (f *Forwarder) Expose(e Expose, caller netip.Addr) error {
	return f.expose(e, caller, nil, nil)
}

// exposeOn adds a unix forward on a socket opened already, its
// ssh-tunnel key (if the remote is one) read already: a -forward-sock.
func (f *Forwarder) exposeOn(e Expose, ln net.Listener, key []byte) error {
	if e.Protocol != "unix" {
		ln.Close()
		return fmt.Errorf("protocol %s on an opened socket", e.Protocol)
	}
	return f.expose(e, netip.Addr{}, ln, key)
}

// expose adds a forward; a unix one on ln with key, if given (and then
// ln is expose's, closed on failure).
func (f *Forwarder) expose(e Expose, caller netip.Addr, ln net.Listener, sshKey []byte) (err error) {
	if ln != nil {
		defer func() {
			if err != nil {
				ln.Close()
			}
		}()
	}
	if e.Protocol == "" {
		e.Protocol = "tcp"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := proxyKey(e.Protocol, e.Local)
	if _, ok := f.proxies[key]; ok {
		return fmt.Errorf("proxy already running for %s on %s", e.Protocol, e.Local)
	}
	p := &proxy{Expose: e}
	switch e.Protocol {
	case "tcp", "udp":
		rule, err := exposeRule(e, caller)
		if err != nil {
			return badRequest(err)
		}
		p.Remote = netip.AddrPortFrom(rule.GuestAddr, rule.GuestPort).String()
		fws, err := f.n.PublishAll(rule)
		if err != nil {
			return err
		}
		for _, fw := range fws {
			p.ids = append(p.ids, fw.ID)
		}
	case "unix":
		if len(f.proxies) >= maxUnixProxies {
			return fmt.Errorf("more than %d unix proxies", maxUnixProxies)
		}
		c, err := f.unixProxy(e.Local, e.Remote, ln, sshKey)
		if err != nil {
			return err
		}
		p.closer = c
	default:
		return fmt.Errorf("unknown protocol %s", e.Protocol)
	}
	f.proxies[key] = p
	return nil
}

// exposeRule turns a tcp or udp expose into a published-port rule.
func exposeRule(e Expose, caller netip.Addr) (config.PublishRule, error) {
	r, err := Rule(e.Local, e.Remote, e.Protocol)
	if err != nil {
		return r, err
	}
	if !r.GuestAddr.IsValid() {
		if !caller.IsValid() {
			return r, fmt.Errorf("invalid remote %q: no address, and the request came from outside the guests' network", e.Remote)
		}
		r.GuestAddr = caller
	}
	return r, nil
}

// Rule builds a published-port rule from gvproxy's "local" ([HOST]:PORT,
// an empty host meaning all addresses) and "remote" ([GUESTIP]:PORT, the
// address left zero when not given; empty when unexposing).
func Rule(local, remote, proto string) (config.PublishRule, error) {
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
	r.HostAddr, r.HostPort = host, port
	if remote == "" {
		return r, nil
	}
	guest, gport, err := splitHostPort(remote)
	if err != nil {
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
		a = a.Unmap()
	}
	return a, uint16(port), nil
}

// Unexpose removes the forward of protocol and local.
func (f *Forwarder) Unexpose(proto, local string) error {
	if proto == "" {
		proto = "tcp"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := proxyKey(proto, local)
	p, ok := f.proxies[key]
	if !ok {
		return errors.New("proxy not found")
	}
	delete(f.proxies, key)
	return p.close(f.n)
}

func (p *proxy) close(n *network.Network) error {
	var errs []error
	for _, id := range p.ids {
		if _, err := n.Unpublish(id); err != nil {
			errs = append(errs, err)
		}
	}
	if p.closer != nil {
		errs = append(errs, p.closer.Close())
	}
	return errors.Join(errs...)
}

// List is every forward, by local address then protocol, as gvproxy's
// /services/forwarder/all lists them.
func (f *Forwarder) List() []Expose {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Expose, 0, len(f.proxies))
	for _, p := range f.proxies {
		out = append(out, p.Expose)
	}
	slices.SortFunc(out, func(a, b Expose) int {
		if c := strings.Compare(a.Local, b.Local); c != 0 {
			return c
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
	return out
}

// Close removes every forward.
func (f *Forwarder) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, p := range f.proxies {
		p.close(f.n)
		delete(f.proxies, k)
	}
}

// unixProxy carries each connection of a host unix socket to remote:
// tcp://IP:PORT in the guests' network, or
// ssh-tunnel://USER@IP[:PORT]/PATH?key=KEY, a unix socket in the guest
// reached over SSH. The socket is ln if given; else one made at path
// (replacing a file there, as gvproxy does). The key is key if given;
// else the file KEY. Without host files (a sandboxed engine) both must
// be given.
func (f *Forwarder) unixProxy(path, remote string, ln net.Listener, key []byte) (io.Closer, error) {
	u, err := url.Parse(remote)
	if err != nil {
		return nil, badRequest(fmt.Errorf("failed to parse remote uri :%s : %w", remote, err))
	}
	if ln == nil && !f.hostFiles {
		return nil, fmt.Errorf("unix forward %s: %w", path, errNoHostFiles)
	}
	var dial func(context.Context) (net.Conn, error)
	var tunnel *sshTunnel
	switch u.Scheme {
	case "ssh-tunnel":
		readKey := func(p string) ([]byte, error) {
			if !f.hostFiles {
				return nil, errNoHostFiles
			}
			return readKey(p)
		}
		if key != nil {
			readKey = func(string) ([]byte, error) { return key, nil }
		}
		if tunnel, err = parseSSHTunnel(f.n.DialGuest, u, readKey); err != nil {
			return nil, badRequest(err)
		}
		dial = tunnel.Dial
	case "tcp":
		ap, err := netip.ParseAddrPort(u.Host)
		if err != nil {
			return nil, badRequest(fmt.Errorf("remote %q: %w", remote, err))
		}
		dial = func(ctx context.Context) (net.Conn, error) { return f.n.DialGuest(ctx, ap) }
	default:
		return nil, badRequest(fmt.Errorf("remote protocol for unix forwarder is not implemented: %s", u.Scheme))
	}
	if ln == nil {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		if ln, err = net.Listen("unix", path); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	slots := make(chan struct{}, maxUnixConns)
	go accept.Loop(ctx, f.log, "unix proxy "+path, ln.Accept, func(c net.Conn) {
		select {
		case slots <- struct{}{}:
		default:
			c.Close()
			return
		}
		go func() {
			defer func() { <-slots }()
			defer c.Close()
			g, err := dial(ctx)
			if err != nil {
				f.log.Debug("unix proxy: dial the guest", "socket", path, "remote", remote, "err", err)
				return
			}
			splice.Conns(ctx, c, g)
		}()
	})
	return closerFunc(func() error {
		cancel()
		err := ln.Close()
		if tunnel != nil {
			tunnel.Close()
		}
		return err
	}), nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

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
	"net/url"
	"os"
	"time"

	"golang.org/x/net/netutil"

	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/network"
)

// Runtime is a running gvproxy personality on a network.
type Runtime struct {
	Fwd *Forwarder
	// StdioDone is closed when the -listen-stdio pipe ends (nil without).
	StdioDone <-chan struct{}
	// Errs gets a VM endpoint's or API server's failure.
	Errs    chan error
	servers []*http.Server
	cancel  context.CancelFunc
	files   []string // sockets to remove at the end
}

// Bounds on the API's clients (the guests reach it at gateway:80).
const (
	// httpTimeout bounds reading a request's headers.
	httpTimeout = 10 * time.Second
	// httpIdle closes a kept-alive connection with no request.
	httpIdle = time.Minute
	// maxAPIConns bounds each endpoint's connections at once, /connect's
	// VM links and /tunnel's streams among them; more wait in the backlog.
	maxAPIConns = 64
)

// Start serves plan on n: its DNS zones, forwards, VM endpoints, API
// endpoints, the forwarder at gateway:80, and the notification socket.
func Start(plan *Plan, n *network.Network, log *slog.Logger) (*Runtime, error) {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Runtime{cancel: cancel, Errs: make(chan error, 8), Fwd: NewForwarder(ctx, n, log)}
	fail := func(err error) (*Runtime, error) {
		rt.Close()
		return nil, err
	}
	for _, z := range plan.Zones {
		if err := n.DNS().AddZone(z); err != nil {
			return fail(fmt.Errorf("dns zone %s: %w", z.Name, err))
		}
	}
	for _, e := range plan.Forwards {
		if err := rt.Fwd.Expose(e, netip.Addr{}); err != nil {
			return fail(fmt.Errorf("forward %s %s → %s: %w", e.Protocol, e.Local, e.Remote, err))
		}
	}
	for _, s := range plan.SSHForwards {
		remote := (&url.URL{Scheme: "ssh-tunnel", User: url.User(s.User), Host: netip.AddrPortFrom(plan.Guest, 22).String(),
			Path: s.Dest, RawQuery: url.Values{"key": {s.Identity}}.Encode()}).String()
		if err := rt.Fwd.Expose(Expose{Local: s.Socket, Remote: remote, Protocol: "unix"}, netip.Addr{}); err != nil {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
		rt.files = append(rt.files, s.Socket)
	}
	// Subscribed before any VM endpoint listens: a VM connecting at once
	// must not come up before the notifier hears of links.
	var sub *network.Subscription
	if plan.Notification != "" {
		var err error
		if sub, err = n.Subscribe(); err != nil {
			return fail(fmt.Errorf("-notification: %w", err))
		}
	}
	for _, e := range plan.Endpoints {
		spec, err := endpoint.Parse(e)
		if err != nil {
			return fail(err)
		}
		l, err := endpoint.ListenLogged(spec, log)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", e, err))
		}
		if spec.Network == "unix" {
			rt.files = append(rt.files, spec.Address)
		}
		go func() {
			if err := n.Serve(l); err != nil {
				rt.Errs <- err
			}
		}()
		log.Info("listening for VMs", "endpoint", e)
	}
	api := &API{N: n, Fwd: rt.Fwd, Log: log, Protocol: plan.Protocol, Subnet: plan.Config.CIDR}
	for _, u := range plan.Listen {
		if err := rt.serve(u, api.Handler(true), log); err != nil {
			return fail(fmt.Errorf("-listen %s: %w", u, err))
		}
	}
	if plan.Services != nil {
		if err := rt.serve(plan.Services, api.Handler(false), log); err != nil {
			return fail(fmt.Errorf("-services %s: %w", plan.Services, err))
		}
	}
	gw, err := n.ListenTCP(netip.AddrPortFrom(plan.Config.Gateway, 80))
	if err != nil {
		return fail(fmt.Errorf("the forwarder at the gateway: %w", err))
	}
	rt.serveOn(gw, api.GuestHandler(), log)
	if plan.Stdio {
		done := make(chan struct{})
		l := newFramedLink(os.Stdin, os.Stdout, os.Stdin, ProtoHyperkit, "stdio")
		w, gone := endpoint.Watch(l)
		go func() { <-gone; close(done) }()
		n.Attach(w)
		rt.StdioDone = done
	}
	if plan.Notification != "" {
		go notify(ctx, sub, plan.Notification, log)
	}
	return rt, nil
}

func (rt *Runtime) serve(u *url.URL, h http.Handler, log *slog.Logger) error {
	ln, err := listenURL(u)
	if err != nil {
		return err
	}
	if u.Scheme == "unix" {
		rt.files = append(rt.files, urlPath(u))
	}
	log.Info("API listening", "endpoint", u.String())
	rt.serveOn(ln, h, log)
	return nil
}

func (rt *Runtime) serveOn(ln net.Listener, h http.Handler, log *slog.Logger) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: httpTimeout, IdleTimeout: httpIdle, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	rt.servers = append(rt.servers, s)
	go func() {
		if err := s.Serve(netutil.LimitListener(ln, maxAPIConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.Errs <- err
		}
	}()
}

// Close stops the API servers and the forwards, and removes the sockets
// it made (as gvproxy does on its way out).
func (rt *Runtime) Close() {
	for _, s := range rt.servers {
		s.Close()
	}
	rt.Fwd.Close()
	rt.cancel()
	for _, f := range rt.files {
		os.Remove(f)
	}
}

// notification is gvproxy's notification message.
type notification struct {
	Type string `json:"notification_type"`
	MAC  string `json:"mac_address,omitempty"`
}

// notify tells the -notification socket that the network is ready, then
// of VM links coming and going.
func notify(ctx context.Context, sub *network.Subscription, path string, log *slog.Logger) {
	defer sub.Close()
	send := func(m notification) {
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		if err != nil {
			log.Debug("notification socket", "err", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		json.NewEncoder(c).Encode(m)
	}
	send(notification{Type: "ready"})
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			switch ev.Type {
			case network.EventLinkUp:
				send(notification{Type: "connection_established"})
			case network.EventLinkDown:
				send(notification{Type: "connection_closed"})
			}
		}
	}
}

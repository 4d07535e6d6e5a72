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
	// Errs gets an API server's failure.
	Errs    chan error
	servers []*http.Server
	cancel  context.CancelFunc
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

// Start serves plan on n with what host opened: its DNS zones, forwards,
// SSH forwards, API endpoints, the forwarder at gateway:80, the stdio VM
// and the notification socket. The VM endpoints (Plan.Endpoints) are the
// caller's to serve, after Start: the notifier hears of every link.
func Start(plan *Plan, n *network.Network, host Host, log *slog.Logger) (*Runtime, error) {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Runtime{cancel: cancel, Errs: make(chan error, 8), Fwd: NewForwarder(ctx, n, log)}
	rt.Fwd.hostFiles = host.HostFiles
	fail := func(err error) (*Runtime, error) {
		rt.Close()
		return nil, err
	}
	if len(host.SSH) != len(plan.SSHForwards) {
		return fail(fmt.Errorf("gvproxy: %d -forward-sock sockets for %d forwards", len(host.SSH), len(plan.SSHForwards)))
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
	for i, s := range plan.SSHForwards {
		remote := (&url.URL{Scheme: "ssh-tunnel", User: url.User(s.User), Host: netip.AddrPortFrom(plan.Guest, 22).String(),
			Path: s.Dest, RawQuery: url.Values{"key": {s.Identity}}.Encode()}).String()
		if err := rt.Fwd.exposeOn(Expose{Local: s.Socket, Remote: remote, Protocol: "unix"}, host.SSH[i].Listener, host.SSH[i].Key); err != nil {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
	}
	// Subscribed before any VM endpoint is served: a VM connecting at
	// once must not come up before the notifier hears of links.
	var sub *network.Subscription
	if plan.Notification != "" {
		if host.DialNotification == nil {
			return fail(errors.New("-notification: no way to the socket"))
		}
		var err error
		if sub, err = n.Subscribe(); err != nil {
			return fail(fmt.Errorf("-notification: %w", err))
		}
	}
	api := &API{N: n, Fwd: rt.Fwd, Log: log, Protocol: plan.Protocol, Subnet: plan.Config.CIDR}
	for _, a := range host.APIs {
		log.Info("API listening", "endpoint", a.URL)
		rt.serveOn(a.Listener, api.Handler(a.Connect), log)
	}
	gw, err := n.ListenTCP(netip.AddrPortFrom(plan.Config.Gateway, 80))
	if err != nil {
		return fail(fmt.Errorf("the forwarder at the gateway: %w", err))
	}
	rt.serveOn(gw, api.GuestHandler(), log)
	if plan.Stdio {
		if host.Stdin == nil || host.Stdout == nil {
			return fail(errors.New("-listen-stdio: no stdin and stdout"))
		}
		done := make(chan struct{})
		l := newFramedLink(host.Stdin, host.Stdout, host.Stdin, ProtoHyperkit, "stdio")
		w, gone := endpoint.Watch(l)
		go func() { <-gone; close(done) }()
		n.Attach(w)
		rt.StdioDone = done
	}
	if plan.Notification != "" {
		go notify(ctx, sub, host.DialNotification, log)
	}
	return rt, nil
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

// Close stops the API servers and the forwards. The socket files are
// Open's to remove.
func (rt *Runtime) Close() {
	for _, s := range rt.servers {
		s.Close()
	}
	rt.Fwd.Close()
	rt.cancel()
}

// notification is gvproxy's notification message.
type notification struct {
	Type string `json:"notification_type"`
	MAC  string `json:"mac_address,omitempty"`
}

// notify tells the -notification socket that the network is ready, then
// of VM links coming and going.
func notify(ctx context.Context, sub *network.Subscription, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	defer sub.Close()
	send := func(m notification) {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := dial(dctx)
		cancel()
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

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/bhyve"
	"github.com/slipway-net/slipway/internal/broker"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/gvproxy"
	"github.com/slipway-net/slipway/internal/sandbox"
	"github.com/slipway-net/slipway/internal/statefile"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
	"github.com/slipway-net/slipway/link/tap"
	"github.com/slipway-net/slipway/network"
)

// Every mode splits in two. The launcher (this process) opens what needs
// the file system or privileges: the TAP, listening sockets, the API
// socket, the pcap file, the host's resolv.conf. The engine gets them as
// descriptors with an engineSpec and runs the network: everything that
// reads guest or API input. With --sandbox=on the engine is this binary
// again, confined (internal/sandbox), asking the launcher for what it
// needs later (internal/broker); with --sandbox=off it runs in this
// process. Either way runEngine is the one body.

// engineSpec is what the launcher tells the engine. Its descriptors come
// in this order: the API socket (API), the pcap file (PCAP), one per
// Links entry, one per Listeners entry, then Gvproxy's, then Pasta's.
type engineSpec struct {
	Config config.Config   `json:"config"`
	Resolv *network.Resolv `json:"resolv"`
	API    bool            `json:"api"`
	PCAP   bool            `json:"pcap"`
	Links  []linkSpec      `json:"links"`
	// Listeners are --listen endpoints, bound by the launcher.
	Listeners []string `json:"listeners"`
	// Connects are --connect endpoints, dialled by the launcher on
	// request, by index.
	Connects []string `json:"connects"`
	// Queues is --queues: a vhost-user device's queue pairs.
	Queues int `json:"queues,omitempty"`
	// ExitWhenGone ends the engine once every link has gone (serve with
	// only --fd endpoints, bhyve-helper); Hangup makes that bhyve's error.
	ExitWhenGone bool `json:"exit_when_gone"`
	Hangup       bool `json:"hangup"`
	// Reserve gives the address to the MAC before any frame (run,
	// slirp4netns --configure).
	Reserve *reservation `json:"reserve,omitempty"`
	// HostUID is the host uid the engine runs as, and why.
	HostUID    int    `json:"host_uid"`
	HostUIDWhy string `json:"host_uid_why"`
	// KeepRoot, if set, is why the engine keeps the host's file system
	// in view.
	KeepRoot string `json:"keep_root,omitempty"`
	// Seccomp is sandbox.ActionEnv's value: what seccomp does instead of
	// killing (debugging).
	Seccomp string `json:"seccomp,omitempty"`
	// Gvproxy is the gvproxy personality: its plan (its VM endpoints are
	// Listeners) and what the launcher opened for it.
	Gvproxy *gvproxySpec `json:"gvproxy,omitempty"`
	// Pasta is the pasta personality: its plan (its TAP is Links') and
	// what the launcher opened for it, on the host and in the namespace.
	Pasta *pastaSpec `json:"pasta,omitempty"`
}

// gvproxySpec is the gvproxy personality's part of an engineSpec.
type gvproxySpec struct {
	Plan     *gvproxy.Plan    `json:"plan"`
	Handover gvproxy.Handover `json:"handover"`
	// Notify is the --connect index (beyond Connects) the launcher
	// dials the -notification socket at; -1 for none.
	Notify int `json:"notify"`
}

// files is how many descriptors the spec comes with.
func (s *engineSpec) files() int {
	n := len(s.Listeners)
	for _, ls := range s.Links {
		n += ls.files()
	}
	if s.API {
		n++
	}
	if s.PCAP {
		n++
	}
	if s.Gvproxy != nil {
		n += s.Gvproxy.Handover.Files()
	}
	if s.Pasta != nil {
		n += s.Pasta.files()
	}
	return n
}

// linkSpec is a guest link handed over as a descriptor.
type linkSpec struct {
	// Kind is tap, bhyve (bhyve's seqpacket socket) or an endpoint kind
	// (stream, dgram, seqpacket) of a connected socket.
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	MaxFrame int    `json:"max_frame,omitempty"`
	// Bridge marks a host TAP device attached with --bridge: it has no
	// virtio-net header (the host's bridge may forward to devices without
	// offloads, and the switch segments for it anyway) and, never going
	// away, it does not keep ExitWhenGone waiting.
	Bridge bool `json:"bridge,omitempty"`
	// Queues is how many descriptors a multi-queue TAP comes with, one
	// per queue (0: one).
	Queues int `json:"queues,omitempty"`
}

// files is how many descriptors the link comes with.
func (ls linkSpec) files() int { return max(ls.Queues, 1) }

type reservation struct {
	MAC  string     `json:"mac"`
	Addr netip.Addr `json:"addr"`
}

// hostSide is what the engine asks of the host after it started: the
// launcher through the broker, or, unconfined, the host directly.
type hostSide interface {
	ListenTCP(netip.AddrPort) (*net.TCPListener, error)
	ListenUDP(netip.AddrPort) (*net.UDPConn, error)
	Dial(ctx context.Context, endpoint int) (net.Conn, error)
	// Usage answers the process_* metrics; nil: this process's /proc.
	Usage() control.ProcessUsageFunc
	// Sockets sets how h opens outbound host sockets, if not itself.
	Sockets(h *network.Host, cfg config.Config)
	// StateFS is where --state-file (path) is kept.
	StateFS(path string) statefile.FS
}

// maxFiles is the engine's hard descriptor limit: every flow, ping
// socket and published port its limits allow, the control API's and the
// DNS forwarder's sockets, and room for the VMs' links and the runtime.
func maxFiles(cfg config.Config) uint64 {
	l := cfg.Limits
	return uint64(l.MaxFlows+l.MaxPublishedPorts+l.DNSMaxInFlight+l.MaxICMPFlows) + uint64(control.MaxConns) + 64 + 1024
}

// runEngine builds the network from spec and files and serves until stop
// is closed, every link has gone (spec.ExitWhenGone) or a listener fails.
// enter confines the process once the descriptors are taken over and
// before any guest or API input is read. ready is called once serving.
func runEngine(spec *engineSpec, files []*os.File, hs hostSide, enter func(), ready func() error, stop <-chan struct{}, log *slog.Logger) error {
	next := func() *os.File {
		f := files[0]
		files = files[1:]
		return f
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	cfg := spec.Config
	var api *net.UnixListener
	if spec.API {
		f := next()
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--api-socket: %w", err)
		}
		api = l.(*net.UnixListener)
	}
	host := network.Host{Resolv: spec.Resolv, ListenTCP: hs.ListenTCP, ListenUDP: hs.ListenUDP}
	hs.Sockets(&host, cfg)
	if spec.PCAP {
		host.PCAP = next()
	}
	var links []link.Link
	for _, ls := range spec.Links {
		fs := make([]*os.File, ls.files())
		for i := range fs {
			fs[i] = next()
		}
		l, err := takeLink(ls, fs, endpoint.VhostOptions{Queues: spec.Queues, MTU: cfg.MTU, Log: log})
		if err != nil {
			return err
		}
		links = append(links, l)
	}
	var listeners []endpoint.Listener
	for _, s := range spec.Listeners {
		es, err := endpoint.Parse(s)
		if err != nil {
			return err
		}
		es.Queues, es.MTU = spec.Queues, cfg.MTU
		l, err := endpoint.FromFile(es, next(), log)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	for i, s := range spec.Connects {
		es, err := endpoint.Parse(s)
		if err != nil {
			return err
		}
		es.Queues, es.MTU = spec.Queues, cfg.MTU
		l, err := endpoint.ConnectThrough(es, log, func(ctx context.Context) (net.Conn, error) { return hs.Dial(ctx, i) })
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	var gvHost gvproxy.Host
	if g := spec.Gvproxy; g != nil {
		n := g.Handover.Files()
		h, err := gvproxy.Adopt(g.Handover, files[:n])
		files = files[n:]
		if err != nil {
			return err
		}
		gvHost = h
		// Unconfined, a unix forward added at run time makes its own
		// socket; the sandboxed engine has no file system for it.
		gvHost.HostFiles = cfg.Sandbox == config.SandboxOff
		if g.Notify >= 0 {
			gvHost.DialNotification = func(ctx context.Context) (net.Conn, error) { return hs.Dial(ctx, g.Notify) }
		}
	}
	var pe *pastaEngine
	if p := spec.Pasta; p != nil {
		n := p.files()
		h, err := adoptPasta(p, files[:n])
		files = files[n:]
		if err != nil {
			return err
		}
		defer h.close()
		h.hook(&host)
		pe = h
	}
	enter()
	n, err := network.NewWithHost(cfg, log, host)
	if err != nil {
		for _, l := range links {
			l.Close()
		}
		return err
	}
	defer n.Close()
	stopState, err := keepState(n, hs.StateFS(cfg.StateFile), log)
	if err != nil {
		return err
	}
	defer stopState()
	var gvDone <-chan struct{}
	var gvErrs <-chan error
	if g := spec.Gvproxy; g != nil {
		plan := *g.Plan
		plan.Config = cfg
		rt, err := gvproxy.Start(&plan, n, gvHost, log)
		if err != nil {
			return err
		}
		defer rt.Close()
		gvDone, gvErrs = rt.StdioDone, rt.Errs
	}
	// POST /v1/shutdown: after its drain, the engine ends as on stop.
	shutdown := make(chan struct{})
	if api != nil {
		srv := control.NewServer(api, cfg.APISocket, n, log, hs.Usage())
		srv.OnShutdown(sync.OnceFunc(func() { close(shutdown) }))
		go func() {
			if err := srv.Serve(); err != nil {
				log.Error("control API stopped", "socket", cfg.APISocket, "err", err)
			}
		}()
		defer srv.Close()
		log.Info("control API listening", "socket", cfg.APISocket)
	}
	if r := spec.Reserve; r != nil {
		mac, err := net.ParseMAC(r.MAC)
		if err == nil {
			err = n.Reserve(mac, r.Addr)
		}
		if err != nil {
			log.Warn("could not reserve the namespace's DHCP address", "err", err)
		}
	}
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- n.Serve(l) }()
		log.Info("serving", "endpoint", l.Spec().String())
	}
	var gone []<-chan struct{}
	for i, l := range links {
		w, done := endpoint.Watch(l)
		if spec.Links[i].Bridge {
			n.AttachUplink(w)
		} else {
			gone = append(gone, done)
			n.Attach(w)
		}
		log.Debug("serving", "link", l.String())
	}
	if pe != nil {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		plan := *pe.spec.Plan
		plan.Config = cfg
		pe.spec.Plan = &plan
		if err := pe.start(ctx, n, host, log); err != nil {
			return err
		}
	}
	allGone := make(chan struct{})
	if spec.ExitWhenGone {
		go func() {
			for _, g := range gone {
				<-g
			}
			close(allGone)
		}()
	}
	if spec.Gvproxy != nil {
		log.Info("waiting for clients...")
	}
	if err := ready(); err != nil {
		return err
	}
	select {
	case <-stop:
		return nil
	case <-shutdown:
		log.Info("shutting down", "requested", "POST /v1/shutdown")
		return nil
	case <-allGone:
		if spec.Hangup {
			return bhyve.ErrHangup
		}
		if spec.Pasta != nil {
			log.Info("the namespace's interface went away: exiting")
			return nil
		}
		log.Info("every VM has disconnected, exiting")
		return nil
	case err := <-errs:
		return err
	case <-gvDone:
		log.Info("stdio closed: shutting down")
		return nil
	case err := <-gvErrs:
		return err
	}
}

// takeLink makes the link of the descriptors the launcher handed over:
// one, or a multi-queue TAP's, one per queue.
func takeLink(ls linkSpec, files []*os.File, vo endpoint.VhostOptions) (link.Link, error) {
	if ls.Kind == "tap" {
		var fds []int
		var err error
		for _, f := range files {
			// Every file is closed; after the first failed dup no
			// more are taken, so the link never has fewer queues
			// than it was handed.
			if err == nil {
				var fd int
				if fd, err = unix.Dup(int(f.Fd())); err == nil {
					fds = append(fds, fd)
				}
			}
			f.Close()
		}
		var l *tap.Link
		if err == nil {
			l, err = tap.FromFDs(fds, ls.Name, !ls.Bridge)
		}
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("tap %s: %w", ls.Name, err)
		}
		return l, nil
	}
	if len(files) != 1 {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("%s link %s: %d descriptors, want 1", ls.Kind, ls.Name, len(files))
	}
	f := files[0]
	switch ls.Kind {
	case "bhyve":
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bhyve socket: %w", err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, errors.New("bhyve socket: not a unix socket")
		}
		return dgram.NewConn(uc, dgram.Options{Name: ls.Name, MaxFrame: ls.MaxFrame})
	}
	return endpoint.AdoptFile(endpoint.Kind(ls.Kind), f, ls.Name, vo)
}

// The engine process's descriptors: the spec, the broker's sockets, the
// launcher's push socket, then the spec's own.
const (
	engineSpecFD   = 3
	engineBrokerFD = 4
	enginePushFD   = engineBrokerFD + broker.Conns
	engineFirstFD  = enginePushFD + 1
	maxSpecSize    = 64 << 20
)

// engineMain is the sandboxed engine: it reads its spec, takes over its
// descriptors, confines itself and serves. It returns the exit status.
func engineMain() int {
	specFile := os.NewFile(engineSpecFD, "engine-spec")
	b, err := io.ReadAll(io.LimitReader(specFile, maxSpecSize))
	specFile.Close()
	var spec engineSpec
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: engine: bad spec: %v\n", err)
		return 1
	}
	// Stderr is the launcher's log: its --log-file, if any.
	log := formatLogger(spec.Config.LogLevel, spec.Config.LogFormat, os.Stderr)
	var bfiles []*os.File
	for i := range broker.Conns {
		bfiles = append(bfiles, os.NewFile(uintptr(engineBrokerFD+i), "broker"))
	}
	bc, err := broker.NewClient(bfiles...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: engine: %v\n", err)
		return 1
	}
	pushFile := os.NewFile(enginePushFD, "push")
	pc, err := net.FileConn(pushFile)
	pushFile.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: engine: push socket: %v\n", err)
		return 1
	}
	uc, ok := pc.(*net.UnixConn)
	if !ok {
		fmt.Fprintln(os.Stderr, "slipway: engine: push socket: not a unix socket")
		return 1
	}
	go broker.ReceivePushes(uc, func(op string, f *os.File) {
		// PushLog: --log-file, opened again. Stderr (the log and the
		// runtime's own last words) is that file from now on.
		err := dupOntoStderr(int(f.Fd()))
		f.Close()
		if err != nil {
			log.Error("reopen the log file", "err", err)
			return
		}
		log.Info("engine's log reopened", "from", "the launcher")
	})
	files := make([]*os.File, spec.files())
	for i := range files {
		files[i] = os.NewFile(uintptr(engineFirstFD+i), "engine-fd")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	stop := make(chan struct{})
	go func() {
		<-sigs
		close(stop)
	}()
	enter := func() {
		r := sandbox.Enter(sandbox.Options{
			MaxFiles: maxFiles(spec.Config) + spec.Pasta.maxFiles(),
			KeepRoot: spec.KeepRoot,
			HostUID:  spec.HostUID, HostUIDWhy: spec.HostUIDWhy,
			Filter:  sandbox.Filter{Action: spec.Seccomp, Strict: spec.Config.Sandbox == config.SandboxStrict},
			BindTCP: bindPorts(spec.Config),
		})
		if r.Active() {
			log.Info("sandbox", "layers", r.String())
		} else {
			log.Warn("sandbox weaker than it should be", "layers", r.String())
		}
		sandbox.Probe()
	}
	err = runEngine(&spec, files, brokerSide{bc}, enter, bc.Ready, stop, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: %v\n", err)
		return 1
	}
	return 0
}

// bindPorts are the ports Landlock lets the engine bind: port 0 with
// --outbound-addr (outbound sockets bind to it); every other bind is the
// launcher's.
func bindPorts(cfg config.Config) []uint16 {
	if cfg.OutboundAddr.IsValid() {
		return []uint16{0}
	}
	return nil
}

// brokerSide is the confined engine's way to the host: its launcher.
type brokerSide struct{ c *broker.Client }

func (b brokerSide) ListenTCP(ap netip.AddrPort) (*net.TCPListener, error) { return b.c.ListenTCP(ap) }
func (b brokerSide) ListenUDP(ap netip.AddrPort) (*net.UDPConn, error)     { return b.c.ListenUDP(ap) }
func (b brokerSide) Dial(_ context.Context, i int) (net.Conn, error)       { return b.c.Dial(i) }
func (b brokerSide) Usage() control.ProcessUsageFunc                       { return b.c.Usage }

// StateFS: the launcher reads and writes the state file for the engine.
func (b brokerSide) StateFS(path string) statefile.FS { return newBrokerFS(b.c, path) }

// Sockets: the engine reads no file, so the host's resolvers come from
// the launcher; in strict mode it has no network of its own either, and
// its filter allows no socket(): every outbound socket comes from the
// launcher.
func (b brokerSide) Sockets(h *network.Host, cfg config.Config) {
	// The engine has no /etc/resolv.conf to follow: the launcher reads it.
	h.ReadResolvers = b.c.Resolv
	if cfg.Sandbox != config.SandboxStrict {
		return
	}
	h.DialTCP = b.c.ConnectTCP
	h.DialUDP = b.c.ConnectUDP
	h.PingSocket = b.c.PingSocket
	h.DialDNS = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		switch network {
		case "udp":
			return b.c.ConnectUDP(ap)
		case "tcp":
			return b.c.ConnectTCP(ctx, ap)
		}
		return nil, fmt.Errorf("dns upstream over %q", network)
	}
}

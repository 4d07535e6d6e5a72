//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/internal/nsrun"
	"github.com/slipway-net/slipway/internal/pasta"
	"github.com/slipway-net/slipway/network"
)

// pastaStatusEnv tells the re-executed daemon which fd reports to the
// foreground process whether the namespace got configured.
const pastaStatusEnv = "_SLIPWAY_PASTA_STATUS_FD"

// pastaStatusOK is the daemon's report of success; anything else is the
// reason it failed.
const pastaStatusOK = "ok"

func newPastaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pasta [OPTION]... (PID | --netns PATH)",
		Short: "Serve a network namespace with pasta's command line (podman 5, rootlesskit)",
		Long: `pasta takes pasta(1)'s command line, the one podman 5 and rootlesskit's
pasta driver start it with, and serves the target namespace: as pasta, the
namespace copies the host's addresses, routes and interface name (unless
--address, --gateway, --ns-ifname say otherwise), slipway daemonises once it
is configured, and exits when the namespace goes away. Run it as
"slipway pasta ..." or through a link named pasta. Its sandbox is every
mode's (--sandbox=on, the default, strict or off). See slipway's README for
the options understood.`,
		DisableFlagParsing: true,
		SilenceErrors:      true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPasta(cmd, args)
		},
	}
}

// pastaFail reports err as pasta does (one line on stderr) and exits 1.
func pastaFail(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var pe *pasta.Error
	if !errors.As(err, &pe) || !strings.HasPrefix(msg, "pasta: ") {
		msg = "pasta: " + msg
	}
	fmt.Fprintln(cmd.ErrOrStderr(), msg)
	return exitError{1}
}

func runPasta(cmd *cobra.Command, args []string) error {
	o, err := pasta.Parse(args)
	if err != nil {
		return pastaFail(cmd, err)
	}
	switch {
	case o.Help:
		fmt.Fprint(cmd.OutOrStdout(), pastaUsage)
		return nil
	case o.Version:
		fmt.Fprintf(cmd.OutOrStdout(), "pasta (slipway %s)\n", version)
		return nil
	}
	target, err := pastaTarget(o)
	if err != nil {
		return pastaFail(cmd, err)
	}
	host, err := pasta.ReadHostNet(o.Interface)
	if err != nil {
		return pastaFail(cmd, err)
	}
	plan, err := o.Plan(host, ephemeralStart())
	if err != nil {
		return pastaFail(cmd, err)
	}
	plan.Config.Sandbox = config.SandboxOn
	if o.Sandbox != "" {
		plan.Config.Sandbox = o.Sandbox
	}
	plan.Config.LogFile = o.LogFile
	if err := plan.Config.Validate(); err != nil {
		return pastaFail(cmd, err)
	}
	status := os.Getenv(pastaStatusEnv)
	if !o.Foreground && status == "" {
		return pastaDaemonize(cmd, args)
	}
	report := func(msg string) {}
	if status != "" {
		fd, _ := strconv.Atoi(status)
		f := os.NewFile(uintptr(fd), "pasta-status")
		os.Unsetenv(pastaStatusEnv)
		report = func(msg string) {
			if f != nil {
				f.WriteString(msg)
				f.Close()
				f = nil
			}
		}
		defer report("slipway exited before configuring the namespace")
	}
	// The daemon's stderr is /dev/null (pastaDaemonize): without
	// --log-file, it logs nowhere, as pasta.
	log, lf, err := configLogger(plan.Config, cmd.ErrOrStderr())
	if err != nil {
		report(err.Error())
		return pastaFail(cmd, err)
	}
	if err := servePasta(o, plan, target, log, lf, status != "", report); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return err // after it configured the namespace: the engine said why
		}
		report(err.Error())
		return pastaFail(cmd, err)
	}
	return nil
}

// pastaTarget is the namespace to serve: --netns (with --userns), or the
// PID's.
func pastaTarget(o *pasta.Options) (nsrun.AttachSpec, error) {
	var spec nsrun.AttachSpec
	switch {
	case o.NetNS != "":
		spec.NetNS = o.NetNS
		spec.UserNS = o.UserNS
	case o.PID != 0:
		spec.NetNS = filepath.Join("/proc", strconv.Itoa(o.PID), "ns/net")
		spec.UserNS = filepath.Join("/proc", strconv.Itoa(o.PID), "ns/user")
		if o.UserNS != "" {
			spec.UserNS = o.UserNS
		}
		if o.NetNSOnly {
			spec.UserNS = ""
		}
	case len(o.Command) > 0:
		return spec, fmt.Errorf("running a command (%s) is not supported by slipway's pasta: give a PID or --netns (slipway run starts commands)", o.Command[0])
	default:
		return spec, errors.New("no target namespace: give a PID or --netns (slipway's pasta does not start a shell)")
	}
	if _, err := os.Stat(spec.NetNS); err != nil {
		return spec, fmt.Errorf("target namespace: %w", err)
	}
	if spec.UserNS != "" && nsrun.SameUserNS(spec.UserNS) {
		spec.UserNS = ""
	}
	return spec, nil
}

// ephemeralStart is the host's first ephemeral port, where pasta's "all"
// ends.
func ephemeralStart() uint16 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.ParseUint(f[0], 10, 16); err == nil && n > 1 {
				return uint16(n)
			}
		}
	}
	return 32768
}

// pastaDaemonize starts this command again in the background, in a
// session of its own with its standard files on /dev/null (callers wait
// for pasta's output to end), and exits as it reports: 0 once the
// namespace is configured, 1 with its reason otherwise.
func pastaDaemonize(cmd *cobra.Command, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return pastaFail(cmd, fmt.Errorf("find own executable: %w", err))
	}
	r, w, err := os.Pipe()
	if err != nil {
		return pastaFail(cmd, err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return pastaFail(cmd, err)
	}
	defer null.Close()
	// Named pasta, the daemon is the pasta personality again.
	d := &exec.Cmd{Path: self, Args: append([]string{"pasta"}, args...)}
	d.Stdin, d.Stdout, d.Stderr = null, null, null
	d.ExtraFiles = []*os.File{w}
	d.Env = append(os.Environ(), pastaStatusEnv+"=3")
	d.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = d.Start()
	w.Close()
	if err != nil {
		return pastaFail(cmd, fmt.Errorf("start the daemon: %w", err))
	}
	d.Process.Release()
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	if string(msg) == pastaStatusOK {
		return nil
	}
	if len(msg) == 0 {
		msg = []byte("slipway's daemon exited before configuring the namespace")
	}
	return pastaFail(cmd, errors.New(strings.TrimSpace(string(msg))))
}

// servePasta is the launcher: it binds the -t/-u ports, attaches to the
// namespace (the TAP, -T/-U's sockets, the /proc/net tables for auto,
// the socket factory for --host-lo-to-ns-lo), starts the engine with all
// of it, and once the engine serves writes --pid and reports the
// namespace configured; then it waits for the namespace to go away, the
// engine to end, or a signal. daemon: the foreground process waits for
// report, and this process's stderr is /dev/null.
func servePasta(o *pasta.Options, plan *pasta.Plan, target nsrun.AttachSpec, log *slog.Logger, lf *logFile, daemon bool, report func(string)) error {
	cfg := plan.Config
	for _, opt := range o.Ignored {
		log.Debug("option accepted and not applied", "option", opt)
	}
	j, err := newJob(cfg, lf)
	if err != nil {
		return err
	}
	defer j.close()
	ps := &pastaSpec{Plan: plan}
	// Bound before the namespace is touched: a port taken on the host
	// fails the start, naming it, and the engine binds nothing itself.
	bound, err := bindPublished(plan.Config.Publish)
	if err != nil {
		return err
	}
	// Pasta's descriptors come after the TAP's (engineSpec): the job
	// holds them once that is in.
	var boundFiles []*os.File
	for _, b := range bound {
		ps.Bound = append(ps.Bound, b.port)
		boundFiles = append(boundFiles, b.file)
	}
	j.cleanup = append(j.cleanup, func() { closeAll(boundFiles) })
	spec := target
	spec.IfName = plan.IfName
	spec.Queues = defaultTAPQueues()
	spec.Configure = o.ConfigNet
	spec.MTU = cfg.MTU
	spec.Addr, spec.Gateway = plan.Addr4, plan.Gw4
	spec.Addr6, spec.Gateway6 = plan.Addr6, plan.Gw6
	if plan.Gw6.IsValid() && cfg.Map.GuestIPv6.IsValid() && !cfg.IPv6Prefix.Contains(plan.Gw6) {
		// A link-local gateway is not slipway's: route through its router.
		spec.Gateway6 = netip.Addr{}
	}
	spec.ProcNet = len(plan.Auto) > 0
	// --host-lo-to-ns-lo: the attach helper stays in the namespace and
	// opens the sockets that carry loopback clients to its loopback.
	spec.Sockets = o.HostLoToNsLo
	for _, f := range plan.NSForwards {
		if f.Proto == config.UDP {
			spec.ListenUDP = append(spec.ListenUDP, f.Listen)
		} else {
			spec.ListenTCP = append(spec.ListenTCP, f.Listen)
		}
		// A strict engine asks for its sockets to -T's and -U's
		// targets: those, fixed at start, are its to have.
		j.targets = append(j.targets, hostTarget{f.Proto, f.Target})
	}
	mac := guestMAC(cfg.DHCPStart)
	if o.NSMAC != "" {
		if mac, err = parseMAC(o.NSMAC); err != nil {
			return fmt.Errorf("invalid value %q for --ns-mac-addr: %w", o.NSMAC, err)
		}
	}
	spec.MAC = mac.String()
	att, err := nsrun.AttachNS(spec)
	if err != nil {
		return err
	}
	defer att.Close()
	err = j.addTAP(att.Link, plan.IfName)
	att.Link.Close()
	if err != nil {
		return err
	}
	j.files = append(j.files, boundFiles...)
	boundFiles = nil
	// The engine ends once the namespace's interface has gone.
	j.spec.ExitWhenGone = true
	if plan.Addr4.IsValid() {
		j.spec.Reserve = &reservation{MAC: mac.String(), Addr: cfg.DHCPStart}
	}
	// AttachNS's order (-T's, then -U's) is the plan's: its TCP forwards
	// come first.
	j.files = append(j.files, att.Listeners...)
	j.files = append(j.files, att.ProcNet...)
	att.Listeners, att.ProcNet = nil, nil
	ps.ProcNet = spec.ProcNet
	if att.Sockets != nil {
		// The engine asks the helper itself; the launcher keeps the
		// helper, and reaps it at the end (att.Close).
		f, err := att.Sockets.File()
		if err != nil {
			return fmt.Errorf("socket factory: %w", err)
		}
		j.files = append(j.files, f)
		ps.Sockets = true
	}
	j.spec.Pasta = ps
	j.mayListen = plan.MayListen
	var last *lastLine
	if daemon && lf == nil {
		// The engine's stderr would be /dev/null: its last words are
		// kept for the foreground process instead.
		if last, err = j.captureStderr(); err != nil {
			return err
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if lf != nil {
		// logrotate's postrotate: reopen --log-file (onHangup).
		signal.Notify(sigs, syscall.SIGHUP)
	}
	defer signal.Stop(sigs)
	e, err := startEngine(j, log)
	if err != nil {
		return err
	}
	if err := e.awaitReady(); err != nil {
		var ee exitError
		if errors.As(err, &ee) && last != nil && last.String() != "" {
			return errors.New(strings.TrimPrefix(last.String(), "slipway: "))
		}
		if errors.As(err, &ee) {
			return fmt.Errorf("slipway's engine exited (status %d) before serving the namespace", ee.code)
		}
		return err
	}
	nsGone := make(<-chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !o.NoNetnsQuit {
		if nsGone, err = pasta.WatchNS(ctx, target.NetNS); err != nil {
			e.end()
			return fmt.Errorf("watch the namespace: %w", err)
		}
	}
	if o.PIDFile != "" {
		if err := writePID(o.PIDFile); err != nil {
			e.end()
			return fmt.Errorf("--pid: %w", err)
		}
	}
	log.Info("namespace configured", "netns", target.NetNS, "interface", plan.IfName, "ipv4", plan.Addr4, "ipv6", plan.Addr6)
	report(pastaStatusOK)
	for {
		select {
		case <-nsGone:
			log.Info("namespace gone: exiting")
			return e.end()
		case err := <-e.done:
			if err != nil {
				log.Error("the engine ended", "err", err)
			}
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP && e.onHangup(log) {
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			return e.end()
		}
	}
}

// boundFile is a -t/-u port the launcher bound for the engine.
type boundFile struct {
	port boundPort
	file *os.File
}

// bindPublished binds every host port of rules (pasta's fixed -t/-u
// forwards, each with its host address) as the network would
// (network.Publish), and returns them in order; on failure it closes
// those it bound, and names the rule.
func bindPublished(rules []config.PublishRule) ([]boundFile, error) {
	var out []boundFile
	fail := func(r config.PublishRule, err error) ([]boundFile, error) {
		for _, b := range out {
			b.file.Close()
		}
		return nil, fmt.Errorf("publish %s: %w", r, err)
	}
	for _, r := range rules {
		for port := int(r.HostPort); port <= int(max(r.HostPortEnd, r.HostPort)); port++ {
			ap := netip.AddrPortFrom(r.HostAddr.Unmap(), uint16(port))
			var f *os.File
			var err error
			if r.Proto == config.UDP {
				var c *net.UDPConn
				if c, err = hostnet.ListenUDP(ap); err == nil {
					f, err = c.File()
					c.Close()
				}
			} else {
				var l *net.TCPListener
				if l, err = hostnet.ListenTCP(ap); err == nil {
					f, err = l.File()
					l.Close()
				}
			}
			if err != nil {
				return fail(r, err)
			}
			out = append(out, boundFile{boundPort{r.Proto, ap}, f})
		}
	}
	return out, nil
}

// lastLine keeps the last line written to it, 1 KiB of it at most.
type lastLine struct {
	mu         sync.Mutex
	line, last []byte
}

func (l *lastLine) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range b {
		if c == '\n' {
			if len(l.line) > 0 {
				l.last = append(l.last[:0], l.line...)
			}
			l.line = l.line[:0]
			continue
		}
		if len(l.line) < 1024 {
			l.line = append(l.line, c)
		}
	}
	return len(b), nil
}

func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) > 0 {
		return string(l.line)
	}
	return string(l.last)
}

// captureStderr makes the engine's stdout and stderr a pipe that this
// process reads to the end, keeping its last line.
func (j *engineJob) captureStderr() (*lastLine, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("engine's stderr: %w", err)
	}
	last := &lastLine{}
	go func() {
		io.Copy(last, r)
		r.Close()
	}()
	j.logOut = w
	j.cleanup = append(j.cleanup, func() { w.Close() })
	return last, nil
}

// pastaSpec is the pasta personality's part of an engineSpec: its plan
// and what the launcher opened for it, as descriptors in this order: the
// -t/-u ports it bound (Bound), -T's and -U's sockets in the namespace
// (one per Plan.NSForwards), the namespace's /proc/net tables (ProcNet:
// nsrun.ProcNetFiles) and the socket factory's control socket (Sockets).
type pastaSpec struct {
	Plan    *pasta.Plan `json:"plan"`
	Bound   []boundPort `json:"bound"`
	ProcNet bool        `json:"procnet"`
	Sockets bool        `json:"sockets"`
}

// boundPort is a host port the launcher bound.
type boundPort struct {
	Proto config.Proto   `json:"proto"`
	Addr  netip.AddrPort `json:"addr"`
}

func (s *pastaSpec) files() int {
	n := len(s.Bound) + len(s.Plan.NSForwards)
	if s.ProcNet {
		n += len(nsrun.ProcNetFiles)
	}
	if s.Sockets {
		n++
	}
	return n
}

// maxFiles is how many more descriptors than the network's own the
// engine may hold for the plan (sandbox.Options.MaxFiles).
func (s *pastaSpec) maxFiles() uint64 {
	if s == nil {
		return 0
	}
	return uint64(s.files() + s.Plan.Descriptors())
}

// pastaEngine is the engine's side of the pasta personality.
type pastaEngine struct {
	spec *pastaSpec
	mu   sync.Mutex
	// bound are the launcher's -t/-u sockets, until the network takes
	// each (hook).
	bound   map[boundPort]*os.File
	ns      []*os.File
	procNet []*os.File
	sockets *nsrun.SocketFactory
}

// adoptPasta takes over the spec's descriptors.
func adoptPasta(s *pastaSpec, files []*os.File) (*pastaEngine, error) {
	p := &pastaEngine{spec: s, bound: map[boundPort]*os.File{}}
	for _, b := range s.Bound {
		p.bound[b] = files[0]
		files = files[1:]
	}
	p.ns, files = files[:len(s.Plan.NSForwards)], files[len(s.Plan.NSForwards):]
	if s.ProcNet {
		n := len(nsrun.ProcNetFiles)
		p.procNet, files = files[:n], files[n:]
	}
	if s.Sockets {
		f, err := nsrun.SocketFactoryFile(files[0])
		if err != nil {
			p.close()
			return nil, err
		}
		p.sockets = f
	}
	return p, nil
}

// take is the launcher's socket for b, once.
func (p *pastaEngine) take(b boundPort) *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.bound[b]
	delete(p.bound, b)
	return f
}

// hook has the network take the ports the launcher bound rather than
// bind them (the ports auto publishes later come through h's own), and
// carry loopback clients through the socket factory.
func (p *pastaEngine) hook(h *network.Host) {
	listenTCP, listenUDP := h.ListenTCP, h.ListenUDP
	h.ListenTCP = func(ap netip.AddrPort) (*net.TCPListener, error) {
		f := p.take(boundPort{config.TCP, ap})
		if f == nil {
			return listenTCP(ap)
		}
		defer f.Close()
		return hostnet.FileTCPListener(f)
	}
	h.ListenUDP = func(ap netip.AddrPort) (*net.UDPConn, error) {
		f := p.take(boundPort{config.UDP, ap})
		if f == nil {
			return listenUDP(ap)
		}
		defer f.Close()
		return hostnet.FileUDPConn(f)
	}
	if p.sockets != nil {
		h.DialGuestLoopback = p.sockets.Dial
	}
}

// start serves -T and -U (their host sockets through h's dialers, when
// strict mode has set them) and the automatic forwards, until ctx ends.
func (p *pastaEngine) start(ctx context.Context, n *network.Network, h network.Host, log *slog.Logger) error {
	plan := p.spec.Plan
	if len(plan.NSForwards) > 0 {
		var d pasta.HostDialer
		if h.DialTCP != nil {
			d.TCP = func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) { return h.DialTCP(ctx, ap) }
		}
		d.UDP = h.DialUDP
		files := p.ns
		p.ns = nil
		if err := pasta.ServeNSForwards(ctx, plan.NSForwards, files, d, log); err != nil {
			return fmt.Errorf("-T/-U: %w", err)
		}
	}
	if len(plan.Auto) > 0 {
		f := pasta.NewFollower(plan, n, p.procNet, log)
		f.Sync()
		go f.Run(ctx)
	}
	return nil
}

// close closes what the engine still holds of the launcher's.
func (p *pastaEngine) close() {
	p.mu.Lock()
	for _, f := range p.bound {
		f.Close()
	}
	p.bound = nil
	p.mu.Unlock()
	for _, f := range append(p.ns, p.procNet...) {
		f.Close()
	}
	if p.sockets != nil {
		p.sockets.Close()
	}
}

const pastaUsage = `Usage: pasta [OPTION]... PID
       pasta [OPTION]... --netns [PATH|NAME]

slipway standing in for pasta(1): serve the network namespace of PID, or
at PATH (NAME: /run/netns/NAME), through a TAP device in it.

  -d, --debug		Be verbose
      --trace		Be extra verbose, implies --debug
  -q, --quiet		Don't print informational messages
  -f, --foreground	Don't run in background
  -e, --stderr		Log to stderr too (in the foreground)
  -l, --log-file PATH	Log (only) to given file
  -h, --help		Display this help message and exit
  --version		Show version and exit
  -I, --ns-ifname NAME	namespace interface name (default: the host's)
  -p, --pcap FILE	Log tap-facing traffic to pcap file
  -P, --pid FILE	Write own PID to the given file
  -m, --mtu MTU		MTU of the namespace's interface (default 65520)
  -a, --address ADDR	Assign IPv4 or IPv6 address ADDR[/PREFIXLEN]
  -n, --netmask MASK	Assign IPv4 MASK, dot-decimal or bits
  -g, --gateway ADDR	Pass IPv4 or IPv6 address as gateway
  -i, --interface NAME	Host interface for addresses and routes
  -o, --outbound ADDR	Bind to address as outbound source
  -D, --dns ADDR	A DNS server to tell of (--dhcp-dns), repeatable;
			none drops those before it (default: the host's)
  -S, --search LIST	Space-separated list, search domains (DHCP)
  --dhcp-dns		Tell DHCP, DHCPv6 and router advertisement
			clients of the DNS servers (default: of none)
  --map-host-loopback ADDR	Translate ADDR to refer to host's loopback
  --map-guest-addr ADDR	Translate ADDR to the namespace's (the host's) address
  --dns-forward ADDR	Forward DNS queries sent to ADDR
  --dns-host ADDR	Host nameserver to direct queries to
  --no-map-gw		Don't map gateway address to host
  -4, --ipv4-only	Enable IPv4 operation only
  -6, --ipv6-only	Enable IPv6 operation only
  -t, --tcp-ports SPEC	TCP port forwarding to namespace
  -u, --udp-ports SPEC	UDP port forwarding to namespace
    SPEC: none, auto, or [ADDR[%IFACE]/]PORTS, PORTS a comma-separated
    list of PORT[-PORT][:PORT[-PORT]] and ~PORT[-PORT] exclusions,
    optionally with auto (only ports bound in the namespace)
  -T, --tcp-ns SPEC	TCP port forwarding to init namespace (ports)
  -U, --udp-ns SPEC	none only
  --host-lo-to-ns-lo	Forwarded clients from the host's loopback reach
			the namespace's loopback
  --userns NSPATH	Target user namespace to join
  --netns PATH|NAME	Target network namespace to join
  --netns-only		Don't join existing user namespace
  --no-netns-quit	Don't quit if the target namespace is deleted
  --config-net		Configure tap interface in namespace
  --ns-mac-addr ADDR	Set MAC address on tap interface
  --sandbox on|strict|off	slipway's own: confine the engine, as every
			mode's --sandbox (default on; see slipway serve --help)
`

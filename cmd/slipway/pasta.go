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
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/endpoint"
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
"slipway pasta ..." or through a link named pasta. See slipway's README for
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
	log, closeLog, err := pastaLogger(o, plan.Config.LogLevel, cmd.ErrOrStderr())
	if err != nil {
		report(err.Error())
		return pastaFail(cmd, err)
	}
	defer closeLog()
	// Said, not hidden: the launcher/engine split does not cover this
	// personality yet.
	log.Info("sandbox: not yet in the pasta personality; one unconfined process")
	if err := servePasta(o, plan, target, log, report); err != nil {
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

// pastaLogger logs to --log-file, or to stderr in the foreground (the
// daemon's stderr is /dev/null). The handler writes each record with one
// Write, so the file gets every record as it is logged.
func pastaLogger(o *pasta.Options, level string, stderr io.Writer) (*slog.Logger, func(), error) {
	if o.LogFile == "" {
		return newLogger(level, stderr), func() {}, nil
	}
	f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--log-file: %w", err)
	}
	return newLogger(level, f), func() { f.Close() }, nil
}

// servePasta builds the network, puts the TAP into the namespace and
// serves it until the namespace goes away or a signal comes.
func servePasta(o *pasta.Options, plan *pasta.Plan, target nsrun.AttachSpec, log *slog.Logger, report func(string)) error {
	cfg := plan.Config
	for _, opt := range o.Ignored {
		log.Debug("option accepted and not applied", "option", opt)
	}
	// --host-lo-to-ns-lo: the attach helper stays in the namespace and
	// opens the sockets that carry loopback clients to its loopback. Until
	// it is there (the ports are bound first), such clients are refused.
	var sockets atomic.Pointer[nsrun.SocketFactory]
	var host network.Host
	if o.HostLoToNsLo {
		host.DialGuestLoopback = func(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
			f := sockets.Load()
			if f == nil {
				return nil, errors.New("the namespace is not attached yet")
			}
			return f.Dial(ctx, network, target)
		}
	}
	n, err := network.NewWithHost(cfg, log, host)
	if err != nil {
		return err
	}
	defer n.Close()
	spec := target
	spec.IfName = plan.IfName
	spec.Configure = o.ConfigNet
	spec.MTU = cfg.MTU
	spec.Addr, spec.Gateway = plan.Addr4, plan.Gw4
	spec.Addr6, spec.Gateway6 = plan.Addr6, plan.Gw6
	if plan.Gw6.IsValid() && cfg.Map.GuestIPv6.IsValid() && !cfg.IPv6Prefix.Contains(plan.Gw6) {
		// A link-local gateway is not slipway's: route through its router.
		spec.Gateway6 = netip.Addr{}
	}
	spec.ProcNet = len(plan.Auto) > 0
	spec.Sockets = o.HostLoToNsLo
	for _, f := range plan.NSForwards {
		if f.Proto == config.UDP {
			spec.ListenUDP = append(spec.ListenUDP, f.Listen)
		} else {
			spec.ListenTCP = append(spec.ListenTCP, f.Listen)
		}
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
	sockets.Store(att.Sockets)
	if plan.Addr4.IsValid() {
		if err := n.Reserve(mac, cfg.DHCPStart); err != nil {
			log.Warn("could not reserve the namespace's DHCP address", "err", err)
		}
	}
	w, linkGone := endpoint.Watch(att.Link)
	n.Attach(w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if len(plan.NSForwards) > 0 {
		files := att.Listeners
		att.Listeners = nil
		if err := pasta.ServeNSForwards(ctx, plan.NSForwards, files, pasta.HostDialer{}, log); err != nil {
			return fmt.Errorf("-T/-U: %w", err)
		}
	}
	if len(plan.Auto) > 0 {
		f := pasta.NewFollower(plan, n, att.ProcNet, log)
		f.Sync()
		go f.Run(ctx)
	}
	nsGone := make(<-chan struct{})
	if !o.NoNetnsQuit {
		if nsGone, err = pasta.WatchNS(ctx, target.NetNS); err != nil {
			return fmt.Errorf("watch the namespace: %w", err)
		}
	}
	if o.PIDFile != "" {
		if err := writePID(o.PIDFile); err != nil {
			return fmt.Errorf("--pid: %w", err)
		}
	}
	log.Info("namespace configured", "netns", target.NetNS, "interface", plan.IfName, "ipv4", plan.Addr4, "ipv6", plan.Addr6)
	report(pastaStatusOK)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-nsGone:
		log.Info("namespace gone: exiting")
	case <-linkGone:
		log.Info("the namespace's interface went away: exiting")
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
	}
	return nil
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
`

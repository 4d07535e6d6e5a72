//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/nsrun"
)

// slirp4netnsVersion is what `slipway slirp4netns --version` claims, for
// programs (rootlesskit, podman) that decide what to pass by the version.
const slirp4netnsVersion = "1.2.0"

// slirp4netnsOptions are slirp4netns's command-line options.
type slirp4netnsOptions struct {
	configure, ipv6, noHostLoopback, disableDNS bool
	sandbox, seccomp, version                   bool
	exitFD, readyFD, mtu                        int
	apiSocket, cidr, netnsType, usernsPath      string
	sandboxLevel                                string
	outbound4, outbound6, mac, targetType       string
}

// newSlirp4netnsCmd is slipway posing as slirp4netns: the same command
// line, so rootlesskit (--net=slirp4netns --slirp4netns-binary=...) and
// podman (network_cmd_path) can start it. It serves an existing namespace.
func newSlirp4netnsCmd() *cobra.Command {
	var o slirp4netnsOptions
	cmd := &cobra.Command{
		Use:   "slirp4netns [OPTION]... PID|PATH [TAPNAME]",
		Short: "Serve an existing network namespace with slirp4netns's command line",
		Long: `slirp4netns takes slirp4netns's command line and serves the network namespace
of PID (or at PATH) through a TAP device created in it (default tap0). Run it as
"slipway slirp4netns ..." or through a symlink named slirp4netns. Defaults are
slirp4netns's: MTU 1500, the namespace at 10.0.2.100 (with --configure), IPv6
only with --enable-ipv6. The sandbox (see --sandbox) is on by default, so
--enable-sandbox and --enable-seccomp, which podman always passes, are
honoured whether given or not; --sandbox=off turns it off.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.version {
				return nil
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.version {
				fmt.Fprintf(cmd.OutOrStdout(), "slirp4netns version %s (slipway %s)\n", slirp4netnsVersion, version)
				return nil
			}
			return runSlirp4netns(cmd, &o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.configure, "configure", "c", false, "bring up the interface")
	f.IntVarP(&o.exitFD, "exit-fd", "e", -1, "specify the FD for terminating slirp4netns")
	f.IntVarP(&o.readyFD, "ready-fd", "r", -1, "specify the FD to write to when the network is configured")
	f.IntVarP(&o.mtu, "mtu", "m", 1500, "specify MTU (max=65521)")
	f.BoolVarP(&o.ipv6, "enable-ipv6", "6", false, "enable IPv6")
	f.StringVarP(&o.apiSocket, "api-socket", "a", "", "specify API socket path")
	f.StringVar(&o.cidr, "cidr", "10.0.2.0/24", "specify network address CIDR")
	f.BoolVar(&o.noHostLoopback, "disable-host-loopback", false, "prohibit connecting to 127.0.0.1:* on the host namespace")
	f.StringVar(&o.netnsType, "netns-type", "pid", "specify network namespace type ([path|pid])")
	f.StringVar(&o.usernsPath, "userns-path", "", "specify user namespace path")
	f.BoolVar(&o.sandbox, "enable-sandbox", false, "confine the engine: namespaces, an empty root, no capabilities, Landlock (on by default)")
	f.BoolVar(&o.seccomp, "enable-seccomp", false, "a seccomp allow-list that kills any other system call (on by default)")
	f.StringVar(&o.sandboxLevel, "sandbox", config.SandboxOn, "on (the default, with --enable-sandbox and --enable-seccomp or without), strict (an empty network namespace too: see slipway serve --help) or off (debugging)")
	f.StringVar(&o.outbound4, "outbound-addr", "", "sets outbound ipv4 address to bound to")
	f.StringVar(&o.outbound6, "outbound-addr6", "", "sets outbound ipv6 address to bound to")
	f.BoolVar(&o.disableDNS, "disable-dns", false, "accepted for compatibility; DNS is still served")
	f.StringVar(&o.mac, "macaddress", "", "specify the MAC address of the TAP (only valid with -c)")
	f.StringVar(&o.targetType, "target-type", "netns", "specify the target type ([netns|bess])")
	f.BoolVarP(&o.version, "version", "v", false, "show version and exit")
	return cmd
}

// slirp4netnsConfig turns slirp4netns's options into slipway's config.
func slirp4netnsConfig(o *slirp4netnsOptions) (config.Config, error) {
	bad := func(flag, value, why string) error {
		return usageError{fmt.Errorf("invalid value %q for --%s: %s", value, flag, why)}
	}
	var cfg config.Config
	p, err := netip.ParsePrefix(o.cidr)
	if err != nil {
		return cfg, bad("cidr", o.cidr, err.Error())
	}
	cfg.CIDR = p
	cfg.MTU = o.mtu
	cfg.NoHostLoopback = o.noHostLoopback
	cfg.NoIPv6 = !o.ipv6
	cfg.APISocket = o.apiSocket
	cfg.LogLevel = "warn"
	cfg.Sandbox = o.sandboxLevel
	if o.outbound4 != "" {
		a, err := netip.ParseAddr(o.outbound4)
		if err != nil || !a.Is4() {
			return cfg, bad("outbound-addr", o.outbound4, "want an IPv4 address")
		}
		cfg.OutboundAddr = a
	}
	if o.outbound6 != "" {
		return cfg, bad("outbound-addr6", o.outbound6, "not supported yet: outbound sockets bind one address, set with --outbound-addr")
	}
	// slirp4netns puts the namespace at .100 of the network.
	if err := cfg.Complete(); err != nil {
		return cfg, usageError{err}
	}
	b := cfg.CIDR.Addr().As4()
	b[3] += 100
	cfg.DHCPStart = netip.AddrFrom4(b)
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runSlirp4netns(cmd *cobra.Command, o *slirp4netnsOptions, args []string) error {
	if o.targetType != "netns" {
		return usageError{fmt.Errorf("invalid value %q for --target-type: only netns is supported", o.targetType)}
	}
	cfg, err := slirp4netnsConfig(o)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, cmd.ErrOrStderr())
	if (o.sandbox || o.seccomp) && cfg.Sandbox == config.SandboxOff {
		return usageError{errors.New("--enable-sandbox and --enable-seccomp contradict --sandbox=off")}
	}
	spec := nsrun.AttachSpec{IfName: "tap0", Configure: o.configure, MTU: cfg.MTU, Queues: defaultTAPQueues(),
		Addr: netip.PrefixFrom(cfg.DHCPStart, cfg.CIDR.Bits()), Gateway: cfg.Gateway}
	if len(args) == 2 {
		spec.IfName = args[1]
	}
	switch o.netnsType {
	case "pid":
		if _, err := strconv.Atoi(args[0]); err != nil {
			return usageError{fmt.Errorf("invalid value %q for PID: not a process id (use --netns-type=path for a path)", args[0])}
		}
		spec.NetNS = filepath.Join("/proc", args[0], "ns/net")
		spec.UserNS = filepath.Join("/proc", args[0], "ns/user")
	case "path":
		spec.NetNS = args[0]
		spec.UserNS = o.usernsPath
	default:
		return usageError{fmt.Errorf("invalid value %q for --netns-type: want pid or path", o.netnsType)}
	}
	if o.usernsPath != "" {
		spec.UserNS = o.usernsPath
	}
	if spec.UserNS != "" && nsrun.SameUserNS(spec.UserNS) {
		spec.UserNS = ""
	}
	mac := guestMAC(cfg.DHCPStart)
	if o.mac != "" {
		if !o.configure {
			return usageError{fmt.Errorf("invalid value %q for --macaddress: only valid with --configure", o.mac)}
		}
		m, err := parseMAC(o.mac)
		if err != nil {
			return usageError{fmt.Errorf("invalid value %q for --macaddress: %w", o.mac, err)}
		}
		mac = m
	}
	spec.MAC = mac.String()
	j, err := newJob(cfg, nil)
	if err != nil {
		return err
	}
	defer j.close()
	t, err := nsrun.Attach(spec)
	if err != nil {
		return err
	}
	err = j.addTAP(t, spec.IfName)
	t.Close()
	if err != nil {
		return err
	}
	if o.configure {
		j.spec.Reserve = &reservation{MAC: mac.String(), Addr: cfg.DHCPStart}
	}
	e, err := startEngine(j, log)
	if err != nil {
		return err
	}
	if err := e.awaitReady(); err != nil {
		return err
	}
	if err := signalReady(o.readyFD); err != nil {
		e.end()
		return err
	}
	if err := waitForExit(o.exitFD, e.done, log); err != nil {
		return err
	}
	return e.end()
}

// waitForExit returns on SIGINT/SIGTERM or when the exit fd is closed by
// its other end (slirp4netns's --exit-fd).
func waitForExit(exitFD int, engineDone chan error, log *slog.Logger) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	closed := make(chan struct{})
	if exitFD >= 0 {
		f := os.NewFile(uintptr(exitFD), "exit-fd")
		if f == nil {
			return usageError{errors.New("invalid value for --exit-fd: not an open file descriptor")}
		}
		go func() {
			defer close(closed)
			buf := make([]byte, 64)
			for {
				if _, err := f.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
	case <-closed:
		log.Info("exit fd closed: shutting down")
	case err := <-engineDone:
		engineDone <- err // for the caller's wait
		if err == nil {
			err = errors.New("the engine exited")
		}
		return err
	}
	return nil
}

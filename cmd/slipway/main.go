// Command slipway gives virtual machines and network namespaces a network
// without root: see `slipway --help`.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/nsrun"
	"github.com/slipway-net/slipway/internal/sandbox"
)

// usageError marks an error in what the user asked for: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries a status to exit with after a clean shutdown.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if sandbox.IsEngine() {
		os.Exit(engineMain())
	}
	if nsrun.IsChild() {
		nsrun.ChildMain()
		return
	}
	if nsrun.IsAttachHelper() {
		nsrun.AttachMain()
		return
	}
	os.Exit(profiled(func() int { return run(programArgs(os.Args), os.Stdout, os.Stderr) }))
}

// personalities are the programs slipway stands in for when installed
// or linked under their names: the command each name runs.
var personalities = map[string]string{
	bhyveHelperName: "bhyve-helper",
	"slirp4netns":   "slirp4netns",
	"pasta":         "pasta",
	"gvproxy":       "gvproxy",
}

// programArgs is the command line to run: os.Args without the program
// name, with the command of the program slipway was started as in front.
func programArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	if cmd, ok := personalities[filepath.Base(argv[0])]; ok {
		return append([]string{cmd}, argv[1:]...)
	}
	return argv[1:]
}

// profiled runs f under the CPU profiler when SLIPWAY_CPUPROFILE names a
// file: how the benchmark and developers see where time goes.
func profiled(f func() int) int {
	path := os.Getenv("SLIPWAY_CPUPROFILE")
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: SLIPWAY_CPUPROFILE: %v\n", err)
		return f()
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(os.Stderr, "slipway: SLIPWAY_CPUPROFILE: %v\n", err)
		return f()
	}
	defer pprof.StopCPUProfile()
	return f()
}

// run executes the command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(stderr, "slipway: %v\n", err)
	var ue usageError
	var fe *config.FieldError
	if errors.As(err, &ue) || errors.As(err, &fe) || isFlagError(err) {
		return 2
	}
	return 1
}

// isFlagError recognises cobra/pflag parse errors, which are not typed.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown flag", "unknown shorthand", "invalid argument", "flag needs an argument", "unknown command", "accepts ", "requires at least"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Userspace networking for virtual machines and network namespaces",
		Long: `slipway gives a VM or a network namespace a full network without root:
DHCP, DNS, TCP/UDP/ICMP to the host's network through host sockets, and the
host's loopback at the gateway address. It speaks every VMM's frame protocol
(QEMU stream, dgram and socket fds, vfkit, krunkit, User Mode Linux, bhyve)
and serves namespaces through a TAP device.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	setVersion(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCmd(), newServeCmd(), newBhyveHelperCmd(), newSlirp4netnsCmd(), newPastaCmd(), newGvproxyCmd(), newCtlCmd(), newVersionCmd())
	root.AddCommand(buildCommands()...)
	return root
}

// netFlags binds the flags shared by run and serve to one Config.
type netFlags struct {
	cfg        config.Config
	configFile string
	readyFD    int
}

func (nf *netFlags) register(fs *pflag.FlagSet) {
	c := &nf.cfg
	fs.StringVar(&nf.configFile, "config", "", "YAML config file (keys are the flag names; flags override it); default: $XDG_CONFIG_HOME/slipway/config.yaml, else /etc/slipway/config.yaml, if there")
	fs.Var(prefixValue(&c.CIDR), "cidr", "IPv4 network of the guests (default 10.0.2.0/24)")
	fs.Var(addrValue(&c.Gateway), "gateway", "gateway address, reaching the host's loopback (default .2 of --cidr)")
	fs.Var(addrValue(&c.DNSAddress), "dns-address", "DNS server address (default .3 of --cidr)")
	fs.Var(addrValue(&c.DHCPStart), "dhcp-start", "first address DHCP hands out, and the namespace's address in run (default .15 of --cidr)")
	fs.IntVar(&c.MTU, "mtu", config.DefaultMTU, fmt.Sprintf("MTU of the guest link (%d..%d)", config.MinMTU, config.MaxMTU))
	fs.BoolVar(&c.NoIPv6, "no-ipv6", false, "turn IPv6 off (addresses, router advertisements, DHCPv6)")
	fs.Var(prefixValue(&c.IPv6Prefix), "ipv6-prefix", "IPv6 /64 of the guests, announced for SLAAC (default fd00::/64)")
	fs.Var(addrValue(&c.IPv6Gateway), "ipv6-gateway", "IPv6 gateway address, reaching the host's ::1 (default ::2 of --ipv6-prefix)")
	fs.Var(addrValue(&c.IPv6DNS), "ipv6-dns", "IPv6 DNS server address (default ::3 of --ipv6-prefix)")
	fs.Var(&listValue[config.DNSServer]{p: &c.DNSUpstreams, parse: config.ParseDNSServer, typ: "addr[:port]"}, "dns-upstream", "upstream DNS server ADDR[:PORT], repeatable (default: the host's /etc/resolv.conf nameservers)")
	fs.Var(&listValue[netip.Addr]{p: &c.AdvertiseDNS, parse: netip.ParseAddr, typ: "ip"}, "advertise-dns", "a DNS server to tell guests of instead of slipway's own, repeatable: IPv4 ones by DHCP, IPv6 ones by DHCPv6 and router advertisements (a family not given gets none); in run, the namespace's resolv.conf")
	fs.BoolVar(&c.NoAdvertiseDNS, "no-advertise-dns", false, "tell guests of no DNS server (in run, a resolv.conf without nameservers)")
	fs.BoolVar(&c.NoHostLoopback, "no-host-loopback", false, "refuse flows to the gateway address instead of reaching the host's loopback")
	fs.BoolVar(&c.Restrict, "restrict", false, "block every outbound flow (DHCP and DNS are still served)")
	fs.StringVar(&c.Mode, "mode", config.ModeNAT, "network mode: nat (guests reach wherever the host does) or host-only (guests reach each other, slipway's DHCP and DNS, the host through the gateway and published ports; every flow beyond the host is refused)")
	fs.Var(egressValue{&c.Egress, config.EgressDeny}, "deny", "refuse guests' flows to CIDR[:PORTS] (PORTS: 22,80,8000-8099; IPv6 in brackets with ports: [fd00::/8]:53), repeatable; --deny and --allow are tried in the order given, the first match wins, and a flow no rule matches is allowed")
	fs.Var(egressValue{&c.Egress, config.EgressAllow}, "allow", "allow guests' flows to CIDR[:PORTS], repeatable (see --deny): --allow 10.1.0.0/16:443 --deny 0.0.0.0/0 allows only that")
	fs.BoolVar(&c.AllowLinkLocal, "allow-link-local", false, "let guests reach link-local destinations (169.254.0.0/16, where clouds serve instance metadata and credentials, and fe80::/10), refused by default")
	fs.Var(addrValue(&c.OutboundAddr), "outbound-addr", "bind outbound host sockets to this local address")
	fs.StringVar(&c.Hostname, "hostname", "", "host name given to DHCP clients (option 12)")
	fs.StringVar(&c.Domain, "domain", "", "domain name given to DHCP clients (default: the host's)")
	fs.StringSliceVar(&c.DNSSearch, "dns-search", nil, "DNS search domains given to DHCP clients, repeatable (default: the host's)")
	fs.VarP(&listValue[config.PublishRule]{p: &c.Publish, parse: config.ParsePublish, typ: "rule"}, "publish", "p", "publish host ports into the guest: [HOSTIP:]HOSTPORT[-END]:[GUESTIP:]GUESTPORT[-END][/tcp|/udp], repeatable; HOSTIP defaults to 0.0.0.0 (all of the host's addresses), IPv6 in brackets ([::1]:8080:80); GUESTIP defaults to the first guest address (--dhcp-start)")
	fs.StringVar(&c.PublishSource, "publish-source", config.PublishSourceClient, "address the guest sees connections to published ports come from: client (the real client's where the guest can answer it: loopback clients, and clients of the other IP family, come from the gateway) or gateway")
	fs.StringVar(&c.APISocket, "api-socket", "", "serve the control API (HTTP/JSON, slirp4netns and gvproxy compatible) on this unix socket, created mode 0600; serve's default: $XDG_RUNTIME_DIR/slipway/serve-PID.sock (root: /run/slipway/), printed at start, \"\" for none")
	fs.StringVar(&c.StateFile, "state-file", "", "keep DHCP leases and the ports published at run time in this file: loaded at start, rewritten atomically on every change")
	fs.StringVar(&c.PCAP, "pcap", "", "write every frame on the guest side to this pcap file")
	fs.StringVar(&c.LogLevel, "log-level", config.DefaultLogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.Sandbox, "sandbox", config.SandboxOn, "confine the engine (everything that reads guest and API input): on (namespaces, an empty root, no capabilities, Landlock, a seccomp allow-list), strict (also an empty network namespace and no socket, connect or bind: the launcher opens each host socket, checking the policy again) or off (one unconfined process, for debugging)")
	fs.IntVar(&nf.readyFD, "ready-fd", -1, `write "1" to this file descriptor once serving`)
	fs.StringVar(&c.PIDFile, "pid-file", "", "write slipway's pid to this file once serving (removed on exit)")
	fs.StringVar(&c.LogFile, "log-file", "", "log to this file (appended) instead of stderr")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringArrayVar(&c.HostNames, "host-name", nil, "a name guests find the host under, repeatable (default: host.containers.internal, host.docker.internal, gateway.containers.internal, host.lima.internal; host.slipway.internal always)")
	fs.Var(&listValue[config.DNSRecord]{p: &c.DNSRecords, parse: config.ParseDNSRecord, typ: "name=ip"}, "dns-record", "a name slipway's DNS answers itself, NAME=IP (A or AAAA), repeatable")
	fs.Var(&listValue[config.StaticLease]{p: &c.DHCPStatic, parse: config.ParseStaticLease, typ: "mac=ip"}, "dhcp-static", "pin a DHCP address to a MAC, MAC=IP, repeatable")
	l := &c.Limits
	fs.IntVar(&l.MaxFlows, "max-flows", config.DefaultMaxFlows, "maximum concurrent flows to the host (TCP, UDP, ping sessions)")
	fs.IntVar(&l.MaxPendingConnects, "max-pending-connects", config.DefaultMaxPendingConnects, "maximum outbound TCP connects in progress")
	fs.DurationVar(&l.ConnectTimeout, "connect-timeout", config.DefaultConnectTimeout, "timeout of one outbound TCP connect")
	fs.DurationVar(&l.UDPIdleTimeout, "udp-idle-timeout", config.DefaultUDPIdleTimeout, "close a UDP flow idle this long")
	fs.DurationVar(&l.UDPUnrepliedTimeout, "udp-unreplied-timeout", config.DefaultUDPUnrepliedTimeout, "close sooner a UDP flow the host never answered")
	fs.IntVar(&l.DNSMaxInFlight, "dns-max-inflight", config.DefaultDNSMaxInFlight, "maximum DNS queries being forwarded at once")
	fs.IntVar(&l.DHCPMaxLeases, "dhcp-max-leases", config.DefaultDHCPMaxLeases, "maximum DHCP leases")
	fs.IntVar(&l.MaxICMPFlows, "max-icmp-flows", config.DefaultMaxICMPFlows, "maximum concurrent ping sessions to the host")
	fs.IntVar(&l.MaxUDPFlowsPerGuest, "max-udp-flows-per-guest", config.DefaultMaxUDPFlowsPerGuest, "maximum concurrent UDP flows one guest address opens")
	fs.IntVar(&l.MaxNewFlowsPerSecond, "max-new-flows-per-second", config.DefaultMaxNewFlowsPerSecond, "maximum flows one guest address opens per second (a second's worth may come at once)")
	fs.IntVar(&l.MaxPublishedPorts, "max-published-ports", config.DefaultMaxPublishedPorts, "maximum host ports published at once (a range counts each port)")
}

// resolve merges the config file under the flags the user set, completes
// and validates the result.
func (nf *netFlags) resolve(fs *pflag.FlagSet) (config.Config, error) {
	cfg := nf.cfg
	if nf.configFile == "" {
		nf.configFile = defaultConfigFile()
	}
	if nf.configFile != "" {
		var file config.Config
		if err := file.LoadFile(nf.configFile); err != nil {
			return cfg, usageError{err}
		}
		cfg = mergeFlags(file, nf.cfg, fs)
	}
	if err := cfg.Complete(); err != nil {
		return cfg, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// mergeFlags overlays on base the fields whose flags were given on the
// command line. Flag names equal YAML keys, so the mapping goes through YAML
// names of the config's fields.
func mergeFlags(base, flags config.Config, fs *pflag.FlagSet) config.Config {
	out := base
	fs.Visit(func(f *pflag.Flag) {
		config.CopyField(&out, &flags, f.Name)
	})
	return out
}

func newLogger(level string, w io.Writer) *slog.Logger { return formatLogger(level, "text", w) }

// signalReady writes "1" to the ready fd, as slirp4netns does.
func signalReady(fd int) error {
	if fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "ready-fd")
	if f == nil {
		return usageError{fmt.Errorf("invalid value %d for --ready-fd: not an open file descriptor", fd)}
	}
	defer f.Close()
	if _, err := f.Write([]byte("1")); err != nil {
		return usageError{fmt.Errorf("invalid value %d for --ready-fd: %w", fd, err)}
	}
	return nil
}

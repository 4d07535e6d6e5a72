// Package gvproxy is slipway's gvproxy (gvisor-tap-vsock) personality:
// gvproxy's command line and YAML configuration, its addressing, and its
// HTTP API (the forwarder, DHCP leases, DNS zones, /tunnel, /connect), so
// that podman machine, lima and crc can start slipway in its place.
package gvproxy

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Options is gvproxy's command line.
type Options struct {
	Config       string
	Listen       []string
	Services     string
	Debug        bool
	PCAP         string
	MTU          int
	SSHPort      int
	VPNKit       string
	Qemu         string
	Bess         string
	Stdio        string
	Vfkit        string
	ForwardSock  []string
	ForwardDest  []string
	ForwardUser  []string
	ForwardIdent []string
	PIDFile      string
	LogFile      string
	EC2Metadata  bool
	Notification string
	Subnet       string
	// Sandbox is slipway's own -sandbox: on, strict or off.
	Sandbox string
	Version bool
	// set names the flags given on the command line.
	set map[string]bool
}

type repeated struct{ p *[]string }

func (r repeated) String() string {
	if r.p == nil {
		return ""
	}
	return strings.Join(*r.p, ",")
}
func (r repeated) Set(v string) error { *r.p = append(*r.p, v); return nil }

// ErrHelp is returned for -h/-help: usage was printed, exit 0.
var ErrHelp = flag.ErrHelp

// Parse reads gvproxy's flags as gvproxy does (Go's flag package: -name
// or --name, -name=value or -name value); a bad flag is reported on out,
// worded as gvproxy's flag package words it.
func Parse(args []string, out io.Writer) (*Options, error) {
	o := &Options{SSHPort: 2222, set: map[string]bool{}}
	fs := flag.NewFlagSet("gvproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.Config, "config", "", "Use configuration file with command line override")
	fs.Var(repeated{&o.Listen}, "listen", "control endpoint (unix://, tcp://, vsock://), repeatable")
	fs.BoolVar(&o.Debug, "debug", false, "Print debug info")
	fs.StringVar(&o.PCAP, "pcap", "", "Capture network traffic to a pcap file")
	fs.IntVar(&o.MTU, "mtu", 0, "Set the MTU (default: 1500)")
	fs.IntVar(&o.SSHPort, "ssh-port", 2222, "Port to access the guest virtual machine. Must be between 1024 and 65535 (-1: none)")
	fs.StringVar(&o.VPNKit, "listen-vpnkit", "", "VPNKit socket to be used by Hyperkit (not supported)")
	fs.StringVar(&o.Qemu, "listen-qemu", "", "Socket to be used by Qemu (unix:// or tcp://)")
	fs.StringVar(&o.Bess, "listen-bess", "", "unixpacket socket to be used by Bess-compatible applications")
	fs.StringVar(&o.Stdio, "listen-stdio", "", "accept stdio pipe")
	fs.StringVar(&o.Vfkit, "listen-vfkit", "", "unixgram socket to be used by vfkit-compatible applications")
	fs.Var(repeated{&o.ForwardSock}, "forward-sock", "Forwards a unix socket to the guest virtual machine over SSH")
	fs.Var(repeated{&o.ForwardDest}, "forward-dest", "Forwards a unix socket to the guest virtual machine over SSH")
	fs.Var(repeated{&o.ForwardUser}, "forward-user", "SSH user to use for unix socket forward")
	fs.Var(repeated{&o.ForwardIdent}, "forward-identity", "Path to SSH identity key for forwarding")
	fs.StringVar(&o.PIDFile, "pid-file", "", "Generate a file with the PID in it")
	fs.StringVar(&o.LogFile, "log-file", "", "Output log messages to a given file path")
	fs.StringVar(&o.Services, "services", "", "Exposes the same HTTP API as the --listen flag, without the /connect endpoint")
	fs.BoolVar(&o.EC2Metadata, "ec2-metadata-access", false, "Permits access to EC2 Metadata Service (TCP only)")
	fs.StringVar(&o.Notification, "notification", "", "Socket to be used to send network-ready notifications")
	fs.StringVar(&o.Subnet, "subnet", "", "the guests' network (default 192.168.127.0/24)")
	fs.StringVar(&o.Sandbox, "sandbox", "on", "slipway's sandbox of the process that reads guest and API input: on, strict or off (see slipway serve --help)")
	fs.BoolVar(&o.Version, "version", false, "Print version information")
	// One line for a bad flag (the flag package writes it); the usage only
	// when asked for.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintln(out, "Usage of gvproxy:")
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return o, nil
}

// check rejects what gvproxy rejects on its command line.
func (o *Options) check() error {
	if c := len(o.ForwardSock); c != len(o.ForwardDest) || c != len(o.ForwardUser) || c != len(o.ForwardIdent) {
		return errors.New("--forward-sock, --forward-dest, --forward-user, and --forward-identity must all be specified together, the same number of times, or not at all")
	}
	for _, id := range o.ForwardIdent {
		if _, err := os.Stat(id); err != nil {
			return fmt.Errorf("identity file %q can't be loaded: %w", id, err)
		}
	}
	if o.Config == "" && o.SSHPort != -1 && (o.SSHPort < 1024 || o.SSHPort > 65535) {
		return errors.New("ssh-port value must be between 1024 and 65535")
	}
	if o.MTU < 0 {
		return fmt.Errorf("invalid value %d for -mtu", o.MTU)
	}
	return nil
}

// Command slipway-slirp-server is the process shape of slipway's
// libslirp.so.0 (SLIPWAY_LIBSLIRP=process): the shim in the host (QEMU,
// slirp4netns) starts it for each slirp_new and drives one slipway
// instance in it over the three sockets it inherits as descriptors 3
// (control), 4 (data) and 5 (frames); see libslirp/shim/proc.h. The network stack's
// parsers then share no memory with the host, and the process is
// confined before it reads anything from a guest: the shim starts it in
// new user, mount, IPC, UTS and PID namespaces (as nobody when the host
// is root), and it locks itself in as slipway's engine does
// (internal/sandbox): an empty read-only root, no capabilities,
// no_new_privs, not dumpable, no core dumps, a hard limit on descriptors,
// Landlock and a seccomp allow-list that kills it on any other call. It
// opens no file and binds no port after that: the shim opens the host's
// resolv.conf and TFTP files for it, and binds host forwards' sockets.
//
// Flags (the shim's, never a user's):
//
//	--namespaces          born in its own namespaces (the shim's clone)
//	--host-uid=N          the host uid it runs as
//	--host-uid-why=TEXT   why that uid
//	--config-fd=N         SLIPWAY_CONFIG's file, opened by the shim
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/sandbox"
	"github.com/slipway-net/slipway/internal/slirpabi"
	"github.com/slipway-net/slipway/network"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); errors.Is(err, slirpabi.ErrRefused) {
		os.Exit(1) // the shim has printed it
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "slipway-slirp-server: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	namespaces bool
	hostUID    int
	hostUIDWhy string
	configFD   int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("slipway-slirp-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.namespaces, "namespaces", false, "")
	fs.IntVar(&o.hostUID, "host-uid", os.Geteuid(), "")
	fs.StringVar(&o.hostUIDWhy, "host-uid-why", "the host's", "")
	fs.IntVar(&o.configFD, "config-fd", -1, "")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w (this program is started by libslirp.so.0 only)", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (this program is started by libslirp.so.0 only)", fs.Arg(0))
	}
	return o, nil
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctl, err := inherited(3, "control")
	if err != nil {
		return err
	}
	data, err := inherited(4, "data")
	if err != nil {
		return err
	}
	frames, err := inherited(5, "frames")
	if err != nil {
		return err
	}
	if null, err := os.Open(os.DevNull); err == nil {
		unix.Dup2(int(null.Fd()), 0)
		null.Close()
	}
	// What the network needs from the host's files is read now, while
	// the process can: the config file (the shim's descriptor, since a
	// server running as nobody may not open a root QEMU's file), the
	// host's resolv.conf (later reads go through the shim), the pcap
	// file the config names.
	base, err := slirpabi.BaseConfigOpen(os.Getenv, func(path string) (io.ReadCloser, error) {
		if o.configFD >= 0 {
			return os.NewFile(uintptr(o.configFD), path), nil
		}
		return os.Open(path)
	})
	if err != nil {
		return err
	}
	log, err := slirpabi.Logger(base.LogLevel)
	if err != nil {
		return err
	}
	base.LogLevel = ""
	host := network.Host{Resolv: network.ReadResolv()}
	if base.PCAP != "" {
		f, err := os.OpenFile(base.PCAP, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("%s: pcap: %w", slirpabi.EnvConfig, err)
		}
		host.PCAP = f
	}
	return slirpabi.Serve(ctl, data, frames, slirpabi.ServeOptions{
		Base: base, Log: log, Host: host,
		Confine: func(cfg config.Config) string { return confine(o, cfg, log) },
	})
}

// confine locks the server in (sandbox.Enter) once its instance exists
// and before it has read a frame, and returns the layers that do not
// hold, for the shim to print: the server never runs weaker silently.
func confine(o options, cfg config.Config, log *slog.Logger) string {
	keep := ""
	if !o.namespaces {
		// The shim said why on the host's standard error.
		keep = "no mount namespace: the host refused the server's namespaces"
	}
	var bind []uint16
	if cfg.OutboundAddr.IsValid() {
		bind = []uint16{0} // outbound sockets bind to the address
	}
	r := sandbox.Enter(sandbox.Options{
		MaxFiles: slirpabi.MaxFiles(cfg),
		KeepRoot: keep,
		Filter:   sandbox.Filter{Action: sandbox.ActionFromEnv()},
		HostUID:  o.hostUID, HostUIDWhy: o.hostUIDWhy,
		BindTCP: bind,
	})
	log.Info("sandbox", "layers", r.String())
	sandbox.Probe()
	if r.Active() {
		return ""
	}
	var missing []string
	for _, l := range r {
		if !l.Active {
			missing = append(missing, l.Name+": "+l.Why)
		}
	}
	return strings.Join(missing, "; ")
}

func inherited(fd int, name string) (*net.UnixConn, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("descriptor %d is not the shim's %s socket (run by libslirp.so.0 only)", fd, name)
	}
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s socket: %w", name, err)
	}
	u, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s socket: not a unix socket", name)
	}
	return u, nil
}

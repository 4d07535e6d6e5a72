//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/nsrun"
	"github.com/slipway-net/slipway/link/tap"
)

func newRunCmd() *cobra.Command {
	var nf netFlags
	var keepChildren bool
	queues := defaultTAPQueues()
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a network namespace networked by slipway",
		Long: `run starts COMMAND in new network and mount namespaces (and a user
namespace when not root). Its only interface, eth0, is served by slipway and
already configured: the first guest address (--dhcp-start), a default route
via the gateway, the MTU, and /etc/resolv.conf pointing at slipway's DNS.
COMMAND also gets a PID namespace of its own: when it exits, whatever it
left running in the background ends too (--keep-children keeps them).
slipway exits with COMMAND's exit status.`,
		Example: `  slipway run -- curl http://10.0.2.2:8080/   # a server on the host's loopback
  slipway run --restrict -- sh`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := nf.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, lf, err := configLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runInNamespace(cfg, args, runOptions{readyFD: nf.readyFD, keepChildren: keepChildren, queues: queues, logFile: lf}, log)
		},
	}
	// Everything after the command belongs to it, not to slipway.
	cmd.Flags().SetInterspersed(false)
	nf.register(cmd.Flags())
	cmd.Flags().BoolVar(&keepChildren, "keep-children", false, "no PID namespace for COMMAND: processes it leaves in the background outlive it (in a namespace whose network is gone)")
	cmd.Flags().Var(rangeValue{&queues, 1, maxTAPQueues}, "queues", fmt.Sprintf("queues of eth0's TAP device, each read on a thread of its own, a flow on one (1..%d; default: the CPUs, at most %d)", maxTAPQueues, maxDefaultTAPQueues))
	// The command's own output matters more than slipway's chatter.
	nf.cfg.LogLevel = "warn"
	cmd.Flags().Lookup("log-level").DefValue = "warn"
	return cmd
}

// parseMAC reads a MAC address for a flag.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err == nil && len(m) != 6 {
		err = fmt.Errorf("not an Ethernet address")
	}
	return m, err
}

// guestMAC is the namespace interface's address: 52:54 and its IPv4
// address, so it is stable and readable in captures.
func guestMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x52, 0x54, b[0], b[1], b[2], b[3]}
}

// runOptions are run's own flags.
type runOptions struct {
	readyFD      int
	keepChildren bool
	queues       int      // --queues: the TAP's
	logFile      *logFile // --log-file, if given
}

func runInNamespace(cfg config.Config, command []string, o runOptions, log *slog.Logger) error {
	j, err := newJob(cfg, o.logFile)
	if err != nil {
		return err
	}
	defer j.close()
	search := cfg.DNSSearch
	if len(search) == 0 {
		search = j.spec.Resolv.Search
	}
	resolv, err := writeResolvConf(cfg, search)
	if err != nil {
		return err
	}
	defer os.Remove(resolv)
	mac := guestMAC(cfg.DHCPStart)
	child, err := nsrun.Start(nsrun.Spec{
		Command:    command,
		IfName:     "eth0",
		MAC:        mac.String(),
		Addr:       netip.PrefixFrom(cfg.DHCPStart, cfg.CIDR.Bits()),
		Gateway:    cfg.Gateway,
		MTU:        cfg.MTU,
		ResolvConf: resolv,
		IPv6:       !cfg.NoIPv6,
		// The command's background processes end with it.
		KeepChildren: o.keepChildren,
		Queues:       o.queues,
	})
	if err != nil {
		return err
	}
	kill := func() {
		child.Signal(syscall.SIGKILL)
		child.Wait()
	}
	err = j.addTAP(child.Link, "eth0")
	child.Link.Close()
	if err != nil {
		kill()
		return err
	}
	j.spec.Reserve = &reservation{MAC: mac.String(), Addr: cfg.DHCPStart}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	e, err := startEngine(j, log)
	if err != nil {
		kill()
		return err
	}
	if err := e.awaitReady(); err != nil {
		kill()
		return err
	}
	if err := signalReady(o.readyFD); err != nil {
		kill()
		e.end()
		return err
	}
	if err := child.Release(); err != nil {
		kill()
		e.end()
		return err
	}
	done := make(chan int, 1)
	go func() {
		code, _ := child.Wait()
		done <- code
	}()
	for {
		select {
		case code := <-done:
			if err := e.end(); err != nil {
				log.Warn("engine", "err", err)
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		case err := <-e.done:
			// The network is gone: so is the command's.
			child.Signal(syscall.SIGKILL)
			<-done
			if err == nil {
				err = errors.New("the engine exited")
			}
			return err
		case sig := <-sigs:
			// With --log-file, SIGHUP is logrotate's: the log is
			// reopened, the command left alone.
			if sig == syscall.SIGHUP && e.onHangup(log) {
				continue
			}
			// Pass the signal on; if the command ignores it, end it.
			child.Signal(sig)
			go func() {
				time.Sleep(10 * time.Second)
				child.Signal(syscall.SIGKILL)
			}()
		}
	}
}

// addTAP hands the TAP device's queues to the engine as one link: copies
// of their descriptors, so l is still the caller's to close.
func (j *engineJob) addTAP(l *tap.Link, name string) error {
	var files []*os.File
	for _, q := range l.Files() {
		f, err := handOver(q)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return err
		}
		files = append(files, f)
	}
	ls := linkSpec{Kind: "tap", Name: name}
	if len(files) > 1 {
		ls.Queues = len(files)
	}
	j.spec.Links = append(j.spec.Links, ls)
	j.files = append(j.files, files...)
	return nil
}

// maxDefaultTAPQueues caps the default queue count: each queue's reader
// keeps a batch of 64 KiB buffers, and beyond a few readers the stack's
// own locks, not the reading, bound a namespace's traffic.
const maxDefaultTAPQueues = 8

// maxTAPQueues bounds --queues below the kernel's 256: the queues'
// descriptors travel in one SCM_RIGHTS message, which carries at most 253.
const maxTAPQueues = 64

// defaultTAPQueues is a queue per CPU, at most maxDefaultTAPQueues.
func defaultTAPQueues() int { return min(runtime.NumCPU(), maxDefaultTAPQueues) }

// handOver duplicates f's descriptor into a file of its own for the
// engine, so that the original can close.
func handOver(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("hand over %s: %w", f.Name(), err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// writeResolvConf writes the namespace's resolv.conf: slipway's DNS
// address and the search list DHCP would give.
func writeResolvConf(cfg config.Config, search []string) (string, error) {
	f, err := os.CreateTemp("", "slipway-resolv-*.conf")
	if err != nil {
		return "", fmt.Errorf("resolv.conf: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	// What DHCP would tell a guest: slipway's DNS addresses, or
	// --advertise-dns's.
	v4, v6 := cfg.AdvertisedDNS()
	if cfg.NoIPv6 {
		v6 = nil
	}
	for _, a := range append(v4, v6...) {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		return "", fmt.Errorf("resolv.conf: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return "", fmt.Errorf("resolv.conf: %w", err)
	}
	return f.Name(), nil
}

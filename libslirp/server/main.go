// Command slipway-slirp-server is the process shape of slipway's
// libslirp.so.0 (SLIPWAY_LIBSLIRP=process): the shim in the host (QEMU,
// slirp4netns) starts it for each slirp_new and drives one slipway
// instance in it over the two sockets it inherits as descriptors 3
// (control) and 4 (data); see libslirp/shim/proc.h. The network stack's
// parsers then share no memory with the host, and the process is
// confined before it reads anything.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/slipway-net/slipway/internal/slirpabi"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); errors.Is(err, slirpabi.ErrRefused) {
		os.Exit(1) // the shim has printed it
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "slipway-slirp-server: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if err := confine(); err != nil {
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
	base, err := slirpabi.BaseConfig(os.Getenv)
	if err != nil {
		return err
	}
	log, err := slirpabi.Logger(base.LogLevel)
	if err != nil {
		return err
	}
	base.LogLevel = ""
	return slirpabi.Serve(ctl, data, base, log)
}

// confine takes what the server never needs: privileges gained by exec
// (no_new_privs), core dumps and ptrace by other processes of the user
// (not dumpable), and stdin.
func confine() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("core limit: %w", err)
	}
	if null, err := os.Open(os.DevNull); err == nil {
		unix.Dup2(int(null.Fd()), 0)
		null.Close()
	}
	return nil
}

func inherited(fd int, name string) (net.Conn, error) {
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
	return c, nil
}

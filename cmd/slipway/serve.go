package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/vhostuser"
)

func newServeCmd() *cobra.Command {
	var nf netFlags
	var ep endpointFlags
	cmd := &cobra.Command{
		Use:   "serve (--listen|--connect KIND:NETWORK:ADDRESS | --fd N:KIND)... [flags]",
		Short: "Serve virtual machines on a virtual network",
		Long: `serve puts VMs on one virtual network: every VM is a port of slipway's
switch, frames between VMs go straight from VM to VM, and each VM gets its
own DHCP lease.

Endpoints, each repeatable:
  --listen KIND:NETWORK:ADDRESS  accept VMs there (any number of them)
  --connect KIND:NETWORK:ADDRESS dial a VMM that listens, and dial again
                                 whenever it goes away (QEMU server=on)
  --fd N:KIND                    a connected socket inherited as fd N
                                 (QEMU -netdev socket,fd=N, a socketpair)

Kinds:
  stream:unix:PATH, stream:tcp:HOST:PORT   4-byte length + frame (QEMU
      -netdev stream and socket, libkrun/krunkit unixstream, socket_vmnet)
  dgram:unix:PATH    one frame per datagram; each sender address is a VM
      (QEMU -netdev dgram, vfkit and krunkit unixgram, with or without VFKT)
  seqpacket:unix:PATH  one frame per message (User Mode Linux bess)
  vhost-user:PATH    the VM's own virtqueues in its shared memory (QEMU,
      cloud-hypervisor and crosvm -netdev vhost-user); offloads both ways.
      --listen: slipway owns the socket, each connection is a VM (QEMU
      -chardev socket,path=PATH,reconnect=1); --connect: the VMM owns it
      (QEMU server=on); --fd N:vhost-user: a connected socket

With only --fd endpoints, serve exits once every VM has gone. With
--api-socket and no endpoint at all, VMs come only through the API
(POST /v1/links, slipway ctl link add) and serve runs until stopped.`,
		Example: `  slipway serve --listen stream:unix:/tmp/vm.sock
  qemu-system-x86_64 ... \
    -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/vm.sock \
    -device virtio-net-pci,netdev=n0

  slipway serve --listen dgram:unix:/tmp/vm.dgram
  qemu-system-x86_64 ... \
    -netdev dgram,id=n0,local.type=unix,local.path=/tmp/qemu.dgram,remote.type=unix,remote.path=/tmp/vm.dgram \
    -device virtio-net-pci,netdev=n0

  slipway serve --listen vhost-user:/tmp/vm.vhost
  qemu-system-x86_64 -m 512M ... \
    -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
    -chardev socket,id=c0,path=/tmp/vm.vhost,reconnect=1 \
    -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := nf.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := configLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ep.withAPI = cfg.APISocket != ""
			eps, err := ep.open(log, cfg.MTU)
			if err != nil {
				return err
			}
			n, stop, err := startNetwork(cfg, log)
			if err != nil {
				eps.close()
				return err
			}
			defer stop()
			errs := make(chan error, len(eps.listeners))
			for _, l := range eps.listeners {
				go func() { errs <- n.Serve(l) }()
				log.Info("serving", "endpoint", l.Spec().String())
			}
			// Inherited sockets are one VM each; serve ends when the
			// last of them has gone, unless it also listens.
			allGone := make(chan struct{})
			var gone []<-chan struct{}
			for _, l := range eps.fdLinks {
				w, done := endpoint.Watch(l)
				gone = append(gone, done)
				n.Attach(w)
				log.Info("serving", "endpoint", l.String())
			}
			if len(eps.listeners) == 0 && len(eps.fdLinks) > 0 {
				go func() {
					for _, g := range gone {
						<-g
					}
					log.Info("every VM has disconnected, exiting")
					close(allGone)
				}()
			}
			return serveUntil(log, nf.readyFD, allGone, nil, errs)
		},
	}
	nf.register(cmd.Flags())
	ep.register(cmd)
	return cmd
}

// serveUntil tells the parent it is serving (--ready-fd), then runs until
// a signal (a clean exit), until ended is closed (returning endErr), or
// until errs yields an error.
func serveUntil(log *slog.Logger, readyFD int, ended <-chan struct{}, endErr error, errs <-chan error) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := signalReady(readyFD); err != nil {
		return err
	}
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
		return nil
	case <-ended:
		return endErr
	case err := <-errs:
		return err
	}
}

// endpointFlags are serve's --listen, --connect and --fd.
type endpointFlags struct {
	listens, connects, fds []string
	queues                 queueCount
	// withAPI allows no endpoint at all: VMs come through POST /v1/links.
	withAPI bool
}

// queueCount is --queues: 1..vhostuser.MaxQueues, 1 when not given.
type queueCount int

func (q *queueCount) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > vhostuser.MaxQueues {
		return fmt.Errorf("want 1..%d", vhostuser.MaxQueues)
	}
	*q = queueCount(n)
	return nil
}

func (q *queueCount) String() string { return strconv.Itoa(max(int(*q), 1)) }
func (q *queueCount) Type() string   { return "int" }

func (e *endpointFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&e.listens, "listen", nil, "accept VMs on KIND:NETWORK:ADDRESS (repeatable)")
	fs.StringArrayVar(&e.connects, "connect", nil, "connect to a VMM listening on KIND:NETWORK:ADDRESS, again after it goes away (repeatable)")
	fs.Var(&e.queues, "queues", fmt.Sprintf("queue pairs the device of each vhost-user VM offers (1..%d); a flow stays on one pair", vhostuser.MaxQueues))
	fs.StringArrayVar(&e.fds, "fd", nil, "serve the VM on inherited connected socket N:KIND, e.g. 3:stream (repeatable)")
}

// vmEndpoints are opened endpoints: listeners (--listen and --connect, both
// yield links through Accept) and links adopted from inherited fds.
type vmEndpoints struct {
	listeners []endpoint.Listener
	fdLinks   []link.Link
}

func (e *vmEndpoints) close() {
	for _, l := range e.listeners {
		l.Close()
	}
	for _, l := range e.fdLinks {
		l.Close()
	}
}

// open checks every endpoint and opens it, so that a bad path, address or
// fd is reported, naming the flag and value, before anything runs.
func (f *endpointFlags) open(log *slog.Logger, mtu int) (*vmEndpoints, error) {
	if len(f.listens)+len(f.connects)+len(f.fds) == 0 && !f.withAPI {
		return nil, usageError{errors.New("give at least one endpoint: --listen, --connect or --fd (e.g. --listen stream:unix:/tmp/vm.sock), or --api-socket to take links through POST /v1/links")}
	}
	eps := &vmEndpoints{}
	fail := func(flag, value string, err error) (*vmEndpoints, error) {
		eps.close()
		return nil, usageError{fmt.Errorf("invalid value %q for --%s: %w", value, flag, err)}
	}
	for _, set := range []struct {
		flag   string
		values []string
		start  func(endpoint.Spec, *slog.Logger) (endpoint.Listener, error)
	}{
		{"listen", f.listens, endpoint.ListenLogged},
		{"connect", f.connects, endpoint.Connect},
	} {
		for _, s := range set.values {
			spec, err := endpoint.Parse(s)
			if err != nil {
				return fail(set.flag, s, err)
			}
			spec.Queues, spec.MTU = int(f.queues), mtu
			l, err := set.start(spec, log)
			if err != nil {
				return fail(set.flag, s, err)
			}
			eps.listeners = append(eps.listeners, l)
		}
	}
	for _, s := range f.fds {
		spec, err := endpoint.ParseFD(s)
		if err != nil {
			return fail("fd", s, err)
		}
		spec.Queues, spec.MTU = int(f.queues), mtu
		l, err := endpoint.AdoptFD(spec)
		if err != nil {
			return fail("fd", s, err)
		}
		eps.fdLinks = append(eps.fdLinks, l)
	}
	return eps, nil
}

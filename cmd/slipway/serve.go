package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/systemd"
	"github.com/slipway-net/slipway/link/tap"
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

--bridge tap:NAME (repeatable) attaches the host's existing, persistent
TAP device NAME (ip tuntap add mode tap name NAME user USER) as one more
port of the switch: the VMs share its L2 segment, while slipway's DHCP,
DNS and gateway serve the VMs only, never the LAN. serve never creates
the device.

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
			log, lf, err := configLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// Without --api-socket (or its key in the config file) the
			// API still listens, at a path of this serve's own; an
			// explicit --api-socket "" turns it off. With no endpoint at
			// all the API must be asked for (job).
			if cfg.APISocket == "" && !cmd.Flags().Changed("api-socket") && !ep.none() {
				if cfg.APISocket, err = defaultAPISocket(); err != nil {
					log.Warn("no control API: the default socket cannot be made; give --api-socket PATH", "err", err)
				}
			}
			acts, err := takeActivated()
			if err != nil {
				return err
			}
			notifier, err := systemd.TakeNotifier()
			if err != nil {
				acts.close()
				return usageError{err}
			}
			j, err := ep.job(cfg, lf, acts)
			if err != nil {
				return err
			}
			if notifier != nil {
				j.notify = &serviceNotify{n: notifier, log: log}
				if cfg.APISocket != "" {
					j.notify.status = "control API at " + cfg.APISocket
				}
			}
			return serveEngine(j, nf.readyFD, log)
		},
	}
	nf.register(cmd.Flags())
	ep.register(cmd)
	return cmd
}

// endpointFlags are serve's --listen, --connect and --fd.
type endpointFlags struct {
	listens, connects, fds []string
	queues                 int // --queues: 1..vhostuser.MaxQueues
	// bridges are --bridge tap:NAME: host TAP devices made one more port
	// of the switch.
	bridges []string
}

func (e *endpointFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&e.listens, "listen", nil, "accept VMs on KIND:NETWORK:ADDRESS (repeatable)")
	fs.StringArrayVar(&e.connects, "connect", nil, "connect to a VMM listening on KIND:NETWORK:ADDRESS, again after it goes away (repeatable)")
	e.queues = 1
	fs.Var(rangeValue{&e.queues, 1, vhostuser.MaxQueues}, "queues", fmt.Sprintf("queue pairs the device of each vhost-user VM offers (1..%d); a flow stays on one pair", vhostuser.MaxQueues))
	fs.StringArrayVar(&e.fds, "fd", nil, "serve the VM on inherited connected socket N:KIND, e.g. 3:stream (repeatable)")
	fs.StringArrayVar(&e.bridges, "bridge", nil, "attach the existing host TAP device NAME (tap:NAME) as a port of the switch: VMs share its L2 (repeatable)")
}

// parseBridge takes a --bridge value, tap:NAME, and returns NAME.
func parseBridge(s string) (string, error) {
	kind, name, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", errors.New("want tap:NAME")
	case kind == "macvtap":
		return "", errors.New("macvtap devices are not supported; give a TAP device, tap:NAME")
	case kind != "tap":
		return "", fmt.Errorf("unknown kind %q, want tap:NAME", kind)
	case name == "":
		return "", errors.New("want tap:NAME, the name is empty")
	}
	return name, nil
}

// openBridges opens each --bridge device here, in the launcher's network
// namespace, for the engine: the sandboxed engine has its own network
// namespace, where no host device is.
func (f *endpointFlags) openBridges(j *engineJob) error {
	for _, s := range f.bridges {
		name, err := parseBridge(s)
		if err == nil {
			var l *tap.Link
			if l, err = tap.Attach(name, false); err == nil {
				j.addLink(linkSpec{Kind: "tap", Name: name, Bridge: true}, l.File())
				continue
			}
		}
		return usageError{fmt.Errorf("invalid value %q for --bridge: %w", s, err)}
	}
	return nil
}

// none: no endpoint was given.
func (f *endpointFlags) none() bool { return len(f.listens)+len(f.connects)+len(f.fds) == 0 }

// job checks every endpoint and opens it for the engine, so that a bad
// path, address or fd is reported, naming the flag and value, before
// anything runs: --listen sockets are bound here (or taken from acts, the
// sockets a service manager passed), --fd sockets checked, --connect
// endpoints dialled later, on the engine's request. A passed socket no
// flag claims is an error.
func (f *endpointFlags) job(cfg config.Config, lf *logFile, acts *activated) (*engineJob, error) {
	// With the API and no endpoint, VMs come through POST /v1/links.
	if f.none() && cfg.APISocket == "" {
		acts.close()
		return nil, usageError{errors.New("give at least one endpoint: --listen, --connect or --fd (e.g. --listen stream:unix:/tmp/vm.sock), or --api-socket to take links through POST /v1/links")}
	}
	// A passed API socket is the engine's first descriptor, as the one
	// newJob would bind; the manager owns its file.
	jobCfg := cfg
	var apiFile *os.File
	if cfg.APISocket != "" {
		if apiFile = acts.unixSocket(unix.SOCK_STREAM, cfg.APISocket); apiFile != nil {
			jobCfg.APISocket = ""
		}
	}
	j, err := newJob(jobCfg, lf)
	if err != nil {
		if apiFile != nil {
			apiFile.Close()
		}
		acts.close()
		return nil, err
	}
	if apiFile != nil {
		j.spec.Config.APISocket, j.spec.API = cfg.APISocket, true
		j.files = append([]*os.File{apiFile}, j.files...)
	}
	j.spec.Queues = f.queues
	var listenFiles []*os.File
	fail := func(flag, value string, err error) (*engineJob, error) {
		closeAll(listenFiles)
		acts.close()
		j.close()
		return nil, usageError{fmt.Errorf("invalid value %q for --%s: %w", value, flag, err)}
	}
	for _, s := range f.listens {
		spec, err := endpoint.Parse(s)
		if err != nil {
			return fail("listen", s, err)
		}
		file, err := acts.listen(spec)
		if err != nil {
			return fail("listen", s, err)
		}
		if file == nil {
			var remove func()
			if file, remove, err = endpoint.Open(spec); err != nil {
				return fail("listen", s, err)
			}
			j.cleanup = append(j.cleanup, remove)
		}
		listenFiles = append(listenFiles, file)
		j.spec.Listeners = append(j.spec.Listeners, spec.String())
		if spec.Kind == endpoint.Dgram {
			j.spec.KeepRoot = fmt.Sprintf("--listen %s answers its VMs at their socket paths", s)
		}
	}
	for _, s := range f.connects {
		spec, err := endpoint.Parse(s)
		if err != nil {
			return fail("connect", s, err)
		}
		if _, err := endpoint.Connect(spec, nil); err != nil {
			return fail("connect", s, err)
		}
		j.connects = append(j.connects, spec)
		j.spec.Connects = append(j.spec.Connects, spec.String())
	}
	for _, s := range f.fds {
		spec, err := endpoint.ParseFD(s)
		if err != nil {
			return fail("fd", s, err)
		}
		c, err := endpoint.OpenFD(spec)
		if err != nil {
			return fail("fd", s, err)
		}
		file, err := c.(interface{ File() (*os.File, error) }).File()
		c.Close()
		if err != nil {
			return fail("fd", s, err)
		}
		j.addLink(linkSpec{Kind: string(spec.Kind), Name: spec.String()}, file)
	}
	if err := f.openBridges(j); err != nil {
		closeAll(listenFiles)
		acts.close()
		j.close()
		return nil, err
	}
	j.files = append(j.files, listenFiles...)
	if err := acts.unclaimed(); err != nil {
		acts.close()
		j.close()
		return nil, err
	}
	// Inherited sockets are one VM each; serve ends when the last of
	// them has gone, unless it also listens.
	j.spec.ExitWhenGone = len(f.listens)+len(f.connects) == 0 && len(f.fds) > 0
	return j, nil
}

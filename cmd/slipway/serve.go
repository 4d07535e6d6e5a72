package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/transport"
)

func newServeCmd() *cobra.Command {
	var nf netFlags
	var listens []string
	cmd := &cobra.Command{
		Use:   "serve --listen KIND:NETWORK:ADDRESS [flags]",
		Short: "Serve virtual machines on a virtual network",
		Long: `serve puts every VM that connects to a --listen endpoint on one virtual
network. Endpoints are KIND:NETWORK:ADDRESS; this build serves
stream:unix:PATH and stream:tcp:HOST:PORT (QEMU -netdev stream, server=off).`,
		Example: `  slipway serve --listen stream:unix:/tmp/vm.sock
  qemu-system-x86_64 ... \
    -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/vm.sock \
    -device virtio-net-pci,netdev=n0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := nf.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			if len(listens) == 0 {
				return usageError{errors.New("--listen is required (e.g. --listen stream:unix:/tmp/vm.sock)")}
			}
			var specs []transport.Spec
			for _, s := range listens {
				spec, err := transport.Parse(s)
				if err != nil {
					return usageError{fmt.Errorf("invalid value %q for --listen: %w", s, err)}
				}
				specs = append(specs, spec)
			}
			log := newLogger(cfg.LogLevel, cmd.ErrOrStderr())
			var listeners []transport.Listener
			closeAll := func() {
				for _, l := range listeners {
					l.Close()
				}
			}
			for _, spec := range specs {
				l, err := transport.Listen(spec)
				if err != nil {
					closeAll()
					return usageError{fmt.Errorf("invalid value %q for --listen: %w", spec, err)}
				}
				listeners = append(listeners, l)
			}
			n, err := network.New(cfg, log)
			if err != nil {
				closeAll()
				return err
			}
			defer n.Close()
			stopAPI, err := serveAPI(n, log)
			if err != nil {
				closeAll()
				return err
			}
			defer stopAPI()
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sigs)
			errs := make(chan error, len(listeners))
			for _, l := range listeners {
				go func() { errs <- n.Serve(l) }()
				log.Info("serving", "listen", l.Spec().String())
			}
			if err := signalReady(nf.readyFD); err != nil {
				return err
			}
			select {
			case sig := <-sigs:
				log.Info("shutting down", "signal", sig.String())
				return nil
			case err := <-errs:
				return err
			}
		},
	}
	nf.register(cmd.Flags())
	cmd.Flags().StringArrayVar(&listens, "listen", nil, "endpoint to accept VMs on, KIND:NETWORK:ADDRESS (repeatable)")
	return cmd
}

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/gvproxy"
)

func newGvproxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gvproxy [-flag]...",
		Short: "Network VMs with gvproxy's command line (podman machine, lima, crc)",
		Long: `gvproxy takes gvproxy's (gvisor-tap-vsock's) flags and YAML configuration:
its addressing (192.168.127.0/24, gateway .1, the host at .254), its VM
sockets (-listen-qemu, -listen-vfkit, -listen-bess, -listen-stdio), its HTTP
API (-listen, -services, and the forwarder at the gateway's port 80), its
SSH forwards (-ssh-port, -forward-sock). Run it as "slipway gvproxy ..." or
through a link named gvproxy. Its sandbox is every mode's (-sandbox=on, the
default, strict or off; see slipway serve --help): unix forwards added
through the API at run time need -sandbox=off, -forward-sock's do not.`,
		DisableFlagParsing: true,
		SilenceErrors:      true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGvproxy(cmd, args)
		},
	}
}

// gvproxyFail reports err as one line on stderr and exits 1, as gvproxy
// exits on a bad configuration.
func gvproxyFail(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "gvproxy: %v\n", err)
	return exitError{1}
}

func runGvproxy(cmd *cobra.Command, args []string) error {
	o, err := gvproxy.Parse(args, cmd.ErrOrStderr())
	switch {
	case errors.Is(err, gvproxy.ErrHelp):
		return nil
	case err != nil:
		// The flag package printed the reason and the usage, as gvproxy's.
		return exitError{2}
	case o.Version:
		fmt.Fprintf(cmd.OutOrStdout(), "gvproxy version slipway-%s\n", version)
		return nil
	}
	var file *gvproxy.File
	if o.Config != "" {
		if file, err = gvproxy.LoadFile(o.Config); err != nil {
			return gvproxyFail(cmd, err)
		}
	}
	plan, err := o.Plan(file)
	if err != nil {
		return gvproxyFail(cmd, err)
	}
	cfg := plan.Config
	cfg.LogFile, cfg.PIDFile = plan.LogFile, plan.PIDFile
	log, lf, err := configLogger(cfg, cmd.ErrOrStderr())
	if err != nil {
		return gvproxyFail(cmd, err)
	}
	j, err := gvproxyJob(plan, cfg, lf)
	if err != nil {
		return gvproxyFail(cmd, err)
	}
	// The engine printed its own error (exitError).
	var ee exitError
	if err := serveEngine(j, -1, log); err != nil && !errors.As(err, &ee) {
		return gvproxyFail(cmd, err)
	} else if err != nil {
		return err
	}
	return nil
}

// gvproxyJob opens, in the launcher, what the plan needs of the host: the
// VM endpoints as serve's --listen opens them, the personality's own
// (gvproxy.Open: the API endpoints, the -forward-sock sockets and keys,
// stdin and stdout), and the -notification socket as an endpoint to dial
// on the engine's request; the log and pid files and the pcap as every
// mode's (newJob).
func gvproxyJob(plan *gvproxy.Plan, cfg config.Config, lf *logFile) (*engineJob, error) {
	j, err := newJob(cfg, lf)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*engineJob, error) {
		j.close()
		return nil, err
	}
	for _, s := range plan.Endpoints {
		spec, err := endpoint.Parse(s)
		if err != nil {
			return fail(err)
		}
		file, remove, err := endpoint.Open(spec)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", s, err))
		}
		j.cleanup = append(j.cleanup, remove)
		j.files = append(j.files, file)
		j.spec.Listeners = append(j.spec.Listeners, spec.String())
		if spec.Kind == endpoint.Dgram {
			j.spec.KeepRoot = fmt.Sprintf("-listen-vfkit %s answers its VM at its socket path", s)
		}
	}
	h, files, remove, err := gvproxy.Open(plan)
	if err != nil {
		return fail(err)
	}
	j.cleanup = append(j.cleanup, remove)
	j.files = append(j.files, files...)
	g := &gvproxySpec{Plan: plan, Handover: h, Notify: -1}
	if plan.Notification != "" {
		g.Notify = len(j.connects)
		j.connects = append(j.connects, endpoint.Spec{Kind: endpoint.Stream, Network: "unix", Address: plan.Notification})
	}
	j.spec.Gvproxy = g
	return j, nil
}

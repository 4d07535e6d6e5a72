package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/bhyve"
	"github.com/slipway-net/slipway/internal/endpoint"
)

// bhyveHelperName is the program bhyve runs for its slirp backend; slipway
// installed (or linked) under that name acts as `slipway bhyve-helper`.
const bhyveHelperName = "bhyve-slirp-helper"

// bhyve-helper defaults, those of bhyve's own helper: its frames are read
// into 2048-byte buffers, so the MTU stays well below.
const (
	bhyveMTU      = 1500
	bhyveMaxFrame = 2048
	// bhyveConfigWait bounds the wait for bhyve's configuration, which it
	// sends right after starting the helper.
	bhyveConfigWait = 30 * time.Second
)

func newBhyveHelperCmd() *cobra.Command {
	var nf netFlags
	var fd int
	cmd := &cobra.Command{
		Use:   "bhyve-helper -S FD [flags]",
		Short: "Network a bhyve VM in place of FreeBSD's bhyve-slirp-helper",
		Long: `bhyve-helper is a drop-in for /usr/libexec/bhyve-slirp-helper, which bhyve
starts for a virtio-net device with the slirp backend. FD is a SOCK_SEQPACKET
socket: the first message is the backend's configuration (an nvlist; honoured
are vmname, open, hostfwd and mtu), then one frame per message. The guest is
restricted (reaches only slipway's DHCP and DNS and its forwarded ports)
unless the configuration says open=true. The helper exits with status 1 when
bhyve closes the socket.

Install it in place of bhyve's helper (slipway answers to that name):
  ln -sf "$(command -v slipway)" /usr/libexec/bhyve-slirp-helper
  bhyve ... -s 2,virtio-net,slirp,open,hostfwd=tcp::2222-:22 ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fd < 0 {
				return usageError{errors.New("-S FD is required: the socket bhyve passes")}
			}
			cfg, err := nf.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, lf, err := configLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			c, err := endpoint.OpenFD(endpoint.FDSpec{FD: fd, Kind: endpoint.Seqpacket})
			if err != nil {
				return fmt.Errorf("invalid socket %d: %w", fd, err)
			}
			conn := c.(*net.UnixConn)
			defer conn.Close()
			bc, err := bhyve.ReadConfig(conn, time.Now().Add(bhyveConfigWait))
			if err != nil {
				return err
			}
			if err := applyBhyveConfig(&cfg, bc, cmd.Flags().Changed("mtu")); err != nil {
				return err
			}
			name := "bhyve"
			if bc.VMName != "" {
				name += ":" + bc.VMName
				log = log.With("vm", bc.VMName)
			}
			f, err := conn.File()
			if err != nil {
				return fmt.Errorf("invalid socket %d: %w", fd, err)
			}
			j, err := newJob(cfg, lf)
			if err != nil {
				f.Close()
				return err
			}
			j.addLink(linkSpec{Kind: "bhyve", Name: name, MaxFrame: max(bhyveMaxFrame, cfg.MTU+14)}, f)
			j.spec.ExitWhenGone, j.spec.Hangup = true, true
			log.Info("serving bhyve", "restricted", cfg.Restrict, "mtu", cfg.MTU, "forwards", len(bc.Forwards))
			return serveEngine(j, nf.readyFD, log)
		},
	}
	nf.register(cmd.Flags())
	cmd.Flags().IntVarP(&fd, "socket", "S", -1, "the SOCK_SEQPACKET socket bhyve passes (required)")
	return cmd
}

// applyBhyveConfig lays bhyve's configuration over the network's: bhyve
// decides about restriction (unless --restrict insists) and the MTU
// (unless --mtu was given), and its hostfwd rules are published next to
// any --publish.
func applyBhyveConfig(cfg *config.Config, bc bhyve.Config, mtuFlag bool) error {
	cfg.Restrict = cfg.Restrict || !bc.Open
	switch {
	case bc.MTU != 0:
		cfg.MTU = bc.MTU
	case !mtuFlag && cfg.MTU == config.DefaultMTU:
		cfg.MTU = bhyveMTU
	}
	// hostfwd rules are published ports; a guest address left out is
	// the first guest's, as in libslirp.
	for _, f := range bc.Forwards {
		cfg.Publish = append(cfg.Publish, config.PublishRule{
			Proto:     f.Proto,
			HostAddr:  f.Host.Addr(),
			HostPort:  f.Host.Port(),
			GuestAddr: f.Guest.Addr(),
			GuestPort: f.Guest.Port(),
		})
	}
	return cfg.Validate()
}

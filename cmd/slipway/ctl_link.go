package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/control"
)

// newCtlLinkCmd is `ctl link add|rm|down|up`: links handed to a running
// slipway, by the descriptor ctl inherited.
func newCtlLinkCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "link", Short: "Attach, detach and set the state of guest links", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	var fd, queues int
	var kind, name string
	add := &cobra.Command{
		Use:   "add --fd N --kind stream|dgram|seqpacket|vhost-user [--name NAME] [--queues N]",
		Short: "Hand the connected socket inherited as fd N to slipway as a new link",
		Example: `  # a socketpair end a VMM gave us as fd 3
  slipway ctl --api-socket /run/slipway.sock link add --fd 3 --kind stream --name vm1-net1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fd < 0 {
				return usageError{errors.New("--fd is required: the number of the inherited socket")}
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
				return usageError{fmt.Errorf("invalid value %d for --fd: not an open file descriptor", fd)}
			}
			switch kind {
			case control.KindStream, control.KindDgram, control.KindSeqpacket, control.KindVhostUser:
			default:
				return usageError{fmt.Errorf("invalid value %q for --kind: want stream, dgram, seqpacket or vhost-user", kind)}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), ctlTimeout)
			defer cancel()
			l, err := c.AddLinkWith(ctx, fd, control.LinkRequest{Kind: kind, Name: name, Queues: queues})
			if err != nil {
				return err
			}
			return o.print(cmd, l, func(w io.Writer) { linkTable().write(w, []control.Link{l}) })
		},
	}
	add.Flags().IntVar(&fd, "fd", -1, "the inherited connected socket to hand over")
	add.Flags().StringVar(&kind, "kind", "", "its transport: stream, dgram, seqpacket or vhost-user")
	add.Flags().IntVar(&queues, "queues", 0, "vhost-user only: queue pairs the device offers (1..16, default 1)")
	add.Flags().StringVar(&name, "name", "", "the link's name in listings (default api:KIND)")
	cmd.AddCommand(add)
	perPort := func(use, short string, do func(c *control.Client, ctx context.Context, port int) (control.Link, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " PORT", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				port, err := strconv.Atoi(args[0])
				if err != nil || port <= 0 {
					return usageError{fmt.Errorf("invalid link port %q", args[0])}
				}
				c, err := o.client()
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), ctlTimeout)
				defer cancel()
				l, err := do(c, ctx, port)
				if err != nil {
					return err
				}
				return o.print(cmd, l, func(w io.Writer) { linkTable().write(w, []control.Link{l}) })
			},
		}
	}
	rm := perPort("rm", "Detach a link (its VM's flows end after the reconnect grace)",
		func(c *control.Client, ctx context.Context, port int) (control.Link, error) {
			return c.RemoveLink(ctx, port)
		})
	rm.Aliases = []string{"remove"}
	cmd.AddCommand(rm,
		perPort("down", "Set a link down: it stays attached and carries nothing",
			func(c *control.Client, ctx context.Context, port int) (control.Link, error) {
				return c.SetLinkDown(ctx, port, true)
			}),
		perPort("up", "Set a link up again",
			func(c *control.Client, ctx context.Context, port int) (control.Link, error) {
				return c.SetLinkDown(ctx, port, false)
			}))
	return cmd
}

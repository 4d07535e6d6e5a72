package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
)

// newCtlRuntimeCmds are `ctl state [import FILE]`, `ctl config` and
// `ctl shutdown`: what a supervisor needs to carry a slipway over a
// restart and stop it gracefully. Their output is JSON in both formats.
func newCtlRuntimeCmds(o *ctlOptions) []*cobra.Command {
	printJSON := func(cmd *cobra.Command, v any) error {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	state := &cobra.Command{
		Use: "state", Short: "Print the state to keep over a restart (GET /v1/state)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st network.State
			if err := o.do(cmd, http.MethodGet, "/v1/state", nil, &st); err != nil {
				return err
			}
			return printJSON(cmd, st)
		},
	}
	state.AddCommand(&cobra.Command{
		Use: "import FILE", Short: "Import a state, as `ctl state` printed it, into a fresh slipway (PUT /v1/state)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{fmt.Errorf("state file: %w", err)}
			}
			st, err := network.DecodeState(b)
			if err != nil {
				return usageError{fmt.Errorf("state file %s: %w", args[0], err)}
			}
			var now network.State
			if err := o.do(cmd, http.MethodPut, "/v1/state", st, &now); err != nil {
				return err
			}
			return printJSON(cmd, now)
		},
	})
	config := &cobra.Command{
		Use: "config", Short: "Print the effective configuration (GET /v1/config)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg map[string]any
			if err := o.do(cmd, http.MethodGet, "/v1/config", nil, &cfg); err != nil {
				return err
			}
			return printJSON(cmd, cfg)
		},
	}
	var timeout time.Duration
	shutdown := &cobra.Command{
		Use: "shutdown [--timeout D]", Short: "Stop slipway gracefully: no new VM, open flows get up to --timeout, then exit", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout < 0 || timeout > control.MaxShutdownTimeout {
				return usageError{fmt.Errorf("invalid value %v for --timeout: want 0 to %v", timeout, control.MaxShutdownTimeout)}
			}
			secs := timeout.Seconds()
			var ans control.ShutdownAnswer
			if err := o.do(cmd, http.MethodPost, "/v1/shutdown", control.ShutdownRequest{TimeoutSeconds: &secs}, &ans); err != nil {
				return err
			}
			return o.print(cmd, ans, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %d flows open, waiting up to %v\n", ans.Status, ans.Flows, timeout)
			})
		},
	}
	shutdown.Flags().DurationVar(&timeout, "timeout", control.DefaultShutdownTimeout, "how long open flows may take to end")
	return []*cobra.Command{state, config, shutdown}
}

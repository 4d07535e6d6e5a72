package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// linuxOnlyCmd stands in for a command that needs network namespaces and
// TAP devices on a system without them (platform_other.go): it fails
// with one line saying so, whatever its arguments.
func linuxOnlyCmd(name, short string) *cobra.Command {
	why := fmt.Sprintf("%s is Linux-only: it serves a network namespace through a TAP device, and %s has neither; VMs are served here with slipway serve", name, runtime.GOOS)
	return &cobra.Command{
		Use:                name,
		Short:              short + " (Linux-only)",
		Long:               why + ".",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("%s", why)
		},
	}
}

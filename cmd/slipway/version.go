package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/internal/buildinfo"
)

// version is this build's version, for the commands that mimic another
// program's --version (slirp4netns, pasta, gvproxy). It is fixed when the
// binary is linked: read-only, not state.
var version = buildinfo.Read().Version

// setVersion gives root its --version flag, printing what `slipway
// version` prints.
func setVersion(root *cobra.Command) {
	in := buildinfo.Read()
	root.Version = in.Version
	// The template is text/template: the text goes in as a literal.
	root.SetVersionTemplate(`{{"` + templateEscape(in.String()) + `"}}`)
}

// templateEscape quotes s for a Go string literal inside a template.
func templateEscape(s string) string {
	q := fmt.Sprintf("%q", s)
	return strings.TrimSuffix(strings.TrimPrefix(q, `"`), `"`)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print slipway's version, commit and Go version",
		Long: `version prints slipway's version on its first line, then the commit it was
built from ("(modified)" if the checkout had uncommitted changes), the Go
toolchain and platform, and the gVisor netstack linked in. Without
-ldflags the version and commit are those the Go toolchain stamped into
the binary from the checkout; --version prints the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.OutOrStdout(), buildinfo.Read().String())
			return nil
		},
	}
}

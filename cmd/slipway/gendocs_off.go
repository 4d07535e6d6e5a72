//go:build !gendocs

package main

import "github.com/spf13/cobra"

// buildCommands are the commands only a build-time helper has: none in
// the shipped binary (gendocs_on.go has the generator of man pages and
// completions, and the libraries it needs).
func buildCommands() []*cobra.Command { return nil }

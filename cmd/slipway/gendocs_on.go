//go:build gendocs

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/slipway-net/slipway/internal/buildinfo"
)

// buildCommands adds the hidden gendocs command to a build made with
// -tags gendocs (make man, make completions): it writes the man pages and
// shell completions of this very command tree, so they cannot drift from
// the binary. The shipped binary links neither cobra/doc nor its markdown
// renderer.
func buildCommands() []*cobra.Command { return []*cobra.Command{newGendocsCmd()} }

func newGendocsCmd() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gendocs [--man DIR] [--completions DIR]",
		Short:  "Write slipway's man pages and shell completions",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && complDir == "" {
				return usageError{errors.New("give --man DIR, --completions DIR or both")}
			}
			root := cmd.Root()
			if manDir != "" {
				if err := writeMan(root, manDir); err != nil {
					return err
				}
			}
			if complDir != "" {
				if err := writeCompletions(root, complDir); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write a man page per command (section 1) into DIR")
	cmd.Flags().StringVar(&complDir, "completions", "", "write bash/slipway, zsh/_slipway and fish/slipway.fish into DIR")
	return cmd
}

// writeMan writes slipway.1, slipway-serve.1, ... into dir. The date is
// SOURCE_DATE_EPOCH's (reproducible builds; the Makefile sets it to the
// commit's time), else the commit's, else today's.
func writeMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--man: %w", err)
	}
	in := buildinfo.Read()
	header := &doc.GenManHeader{Section: "1", Source: "slipway " + in.Version, Manual: "slipway manual"}
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		if t, err := time.Parse(time.RFC3339, in.CommitTime); err == nil {
			header.Date = &t
		}
	}
	root.DisableAutoGenTag = true
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("--man %s: %w", dir, err)
	}
	return nil
}

// writeCompletions writes the scripts of `slipway completion SHELL` under
// the names each shell's completion directory wants.
func writeCompletions(root *cobra.Command, dir string) error {
	for _, c := range []struct {
		path string
		gen  func(f *os.File) error
	}{
		{"bash/slipway", func(f *os.File) error { return root.GenBashCompletionV2(f, true) }},
		{"zsh/_slipway", func(f *os.File) error { return root.GenZshCompletion(f) }},
		{"fish/slipway.fish", func(f *os.File) error { return root.GenFishCompletion(f, true) }},
	} {
		path := filepath.Join(dir, c.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("--completions: %w", err)
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--completions: %w", err)
		}
		err = c.gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("--completions %s: %w", path, err)
		}
	}
	return nil
}

package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// On macOS and FreeBSD run, slirp4netns and pasta are this command: any
// command line, flags a real one would refuse included, gets one line
// naming the command, that it is Linux-only, and the system it ran on.
func TestLinuxOnlyCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--", "true"},
		{"--no-such-flag", "--configure", "1234", "tap0"},
		{"--help"},
	} {
		cmd := linuxOnlyCmd("slirp4netns", "Serve a namespace")
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		cmd.SetArgs(args)
		err := cmd.Execute()
		if err == nil {
			t.Fatalf("%q: no error", args)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "slirp4netns is Linux-only") || !strings.Contains(msg, runtime.GOOS) {
			t.Errorf("%q: error %q, want one line: slirp4netns is Linux-only, naming %s", args, msg, runtime.GOOS)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q besides the error", args, out.String())
		}
	}
}

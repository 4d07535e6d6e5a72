package main

import (
	"bytes"
	"strings"
	"testing"
)

// cli runs slipway's command line in-process, as main does, and returns the
// exit status and what it printed. Only command lines that fail before
// anything is served, or that only print, belong here.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// wantUsage checks that args exit 2 with a message containing every one of
// want (the flag's name, the bad value).
func wantUsage(t *testing.T, args []string, want ...string) {
	t.Helper()
	code, _, stderr := cli(t, args...)
	if code != 2 {
		t.Errorf("slipway %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("slipway %s: stderr %q does not say %q", strings.Join(args, " "), stderr, w)
		}
	}
}

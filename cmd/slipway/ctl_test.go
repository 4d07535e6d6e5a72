package main

import (
	"errors"
	"strings"
	"testing"
)

func TestCtlClientOptions(t *testing.T) {
	for _, c := range []struct {
		o    ctlOptions
		want string
	}{
		{ctlOptions{output: "table"}, "--api-socket is required"},
		{ctlOptions{socket: "/run/s.sock", output: "yaml"}, `invalid value "yaml" for --output`},
		{ctlOptions{socket: "/run/s.sock", output: ""}, `invalid value "" for --output`},
	} {
		_, err := c.o.client()
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a usage error saying %q", c.o, err, c.want)
		}
	}
	for _, out := range []string{"table", "json"} {
		if _, err := (&ctlOptions{socket: "/run/s.sock", output: out}).client(); err != nil {
			t.Errorf("-o %s: %v", out, err)
		}
	}
}

// Bad arguments are refused before the API is called, so no socket is
// needed to see them (the socket given does not exist).
func TestCtlCommandLine(t *testing.T) {
	const sock = "/nonexistent/slipway.sock"
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add"}, "requires at least 1 arg")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add", "8080:80", "8081"}, `invalid rule "8081"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add", "8080:80/icmp"}, `invalid rule "8080:80/icmp"`, `"icmp"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "rm", "1", "x"}, `invalid forward id "x"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "rm", "-1"}, "unknown shorthand flag")
	wantUsage(t, []string{"ctl", "forward", "ls"}, "--api-socket is required")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "-o", "xml", "leases"}, `"xml" for --output`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "stats", "now"}, "unknown command", "now")
}

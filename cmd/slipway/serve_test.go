package main

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// Every endpoint is checked before anything is served; a bad one is a
// usage error naming its flag and value, and what was opened before it is
// closed again.
func TestEndpointFlagsRejected(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	good := "stream:unix:" + filepath.Join(t.TempDir(), "vm.sock")
	for _, c := range []struct {
		f    endpointFlags
		want string
	}{
		{endpointFlags{}, "give at least one endpoint"},
		{endpointFlags{listens: []string{"stream:unix"}}, `invalid value "stream:unix" for --listen`},
		{endpointFlags{listens: []string{"raw:unix:/x"}}, `unknown kind "raw"`},
		{endpointFlags{listens: []string{good, "seqpacket:tcp:127.0.0.1:1"}}, `"seqpacket:tcp:127.0.0.1:1" for --listen`},
		{endpointFlags{connects: []string{"dgram:udp:[::1"}}, "for --connect"},
		{endpointFlags{listens: []string{good}, fds: []string{"three:stream"}}, `"three:stream" for --fd`},
		{endpointFlags{fds: []string{"3"}}, `"3" for --fd`},
	} {
		eps, err := c.f.open(log, 1500)
		if err == nil {
			eps.close()
			t.Errorf("%+v accepted", c.f)
			continue
		}
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a usage error saying %q", c.f, err, c.want)
		}
	}
	// The good listener's socket was closed after each failure above:
	// it can be listened on again.
	eps, err := (&endpointFlags{listens: []string{good}}).open(log, 1500)
	if err != nil {
		t.Fatalf("listening again on %s: %v", good, err)
	}
	if len(eps.listeners) != 1 || len(eps.fdLinks) != 0 || eps.listeners[0].Spec().String() != good {
		t.Errorf("opened %+v for --listen %s", eps, good)
	}
	eps.close()
}

func TestServeCommandLine(t *testing.T) {
	wantUsage(t, []string{"serve"}, "give at least one endpoint")
	wantUsage(t, []string{"serve", "--listen", "stream:unix:/x", "stray"}, "unknown command", "stray")
	wantUsage(t, []string{"serve", "--fd", "x"}, `"x" for --fd`)
}

package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
)

// Every endpoint is checked before anything is served; a bad one is a
// usage error naming its flag and value, and what was opened before it is
// closed again.
func TestEndpointFlagsRejected(t *testing.T) {
	cfg := config.Default()
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
		j, err := c.f.job(cfg, nil, nil)
		if err == nil {
			j.close()
			t.Errorf("%+v accepted", c.f)
			continue
		}
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a usage error saying %q", c.f, err, c.want)
		}
	}
	// The good listener's socket was closed after each failure above:
	// it can be listened on again.
	j, err := (&endpointFlags{listens: []string{good}}).job(cfg, nil, nil)
	if err != nil {
		t.Fatalf("listening again on %s: %v", good, err)
	}
	if len(j.spec.Listeners) != 1 || len(j.spec.Links) != 0 || j.spec.Listeners[0] != good || len(j.files) != 1 {
		t.Errorf("opened %+v for --listen %s", j.spec, good)
	}
	j.close()
}

func TestServeCommandLine(t *testing.T) {
	wantUsage(t, []string{"serve"}, "give at least one endpoint")
	wantUsage(t, []string{"serve", "--listen", "stream:unix:/x", "stray"}, "unknown command", "stray")
	wantUsage(t, []string{"serve", "--fd", "x"}, `"x" for --fd`)
}

// FuzzParseBridge: any --bridge value is a name or an error, never a
// panic; a name is what followed "tap:", and never empty.
func FuzzParseBridge(f *testing.F) {
	for _, s := range []string{"tap:swbr0", "macvtap:mv0", "tap:", "swbr0", ":", "tap:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := parseBridge(s)
		if err != nil {
			return
		}
		if name == "" || "tap:"+name != s {
			t.Errorf("parseBridge(%q) = %q", s, name)
		}
	})
}

package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/systemd"
)

// passed binds real sockets as a service manager would and adopts them.
func passed(t *testing.T, names []string, socks ...interface{ File() (*os.File, error) }) *activated {
	t.Helper()
	var ss []systemd.Socket
	for i, s := range socks {
		f, err := s.File()
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, systemd.Socket{File: f, Name: names[i]})
	}
	a, err := adoptSockets(ss)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a
}

// A passed socket takes the place of the --listen or --api-socket at its
// address, of its type; the engine gets it, and its file stays when the
// job ends (the manager's). One no flag names is an error saying which.
func TestActivatedSocketsTakeTheirFlags(t *testing.T) {
	dir := t.TempDir()
	vm, api, dg := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "api.sock"), filepath.Join(dir, "vm.dgram")
	lvm, err := net.ListenUnix("unix", &net.UnixAddr{Name: vm, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer lvm.Close()
	lapi, err := net.ListenUnix("unix", &net.UnixAddr{Name: api, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer lapi.Close()
	ldg, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dg, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ldg.Close()
	ltcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ltcp.Close()

	cfg := config.Default()
	cfg.APISocket = api
	a := passed(t, []string{"vm", "api", "dgram", "tcp"}, lvm, lapi, ldg, ltcp)
	ep := endpointFlags{listens: []string{"stream:unix:" + vm, "dgram:unix:" + dg, "stream:tcp:" + ltcp.Addr().String()}}
	j, err := ep.job(cfg, nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if !j.spec.API || j.spec.Config.APISocket != api || len(j.spec.Listeners) != 3 || len(j.files) != 4 {
		t.Errorf("job %+v with %d files, want the API and 3 listeners", j.spec, len(j.files))
	}
	// The API's descriptor is the passed one, first.
	if sa, err := net.FileListener(j.files[0]); err != nil || sa.Addr().String() != api {
		t.Errorf("first descriptor: %v %v, want the listener at %s", sa, err, api)
	}
	j.close()
	for _, p := range []string{vm, api, dg} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed at the end: %v", p, err)
		}
	}

	// A passed socket of the wrong type does not stand in for a flag,
	// and is reported.
	ldg2, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "x.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ldg2.Close()
	cfg.APISocket = ""
	a = passed(t, []string{"x"}, ldg2)
	_, err = (&endpointFlags{listens: []string{"stream:unix:" + filepath.Join(dir, "y.sock")}}).job(cfg, nil, a)
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "name x") || !strings.Contains(err.Error(), "datagram unix:"+filepath.Join(dir, "x.sock")) {
		t.Errorf("unclaimed socket: %v", err)
	}
}

package transports

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
	vf "github.com/slipway-net/slipway/test/vhostfront"
)

// A vhost-user link handed to a running slipway through POST /v1/links
// (what a VMM that keeps the front-end end does; QEMU 7.2's chardev takes
// no descriptor for vhost-user): the device (offered with two queue
// pairs) carries the Go front-end's guest to a lease and a download.
func TestVhostUserLinkByAPI(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	api := filepath.Join(t.TempDir(), "api.sock")
	testenv.Serve(t, "--api-socket", api, "--mtu", "1500")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := control.NewClient(api).AddLinkWith(ctx, fds[1], control.LinkRequest{Kind: control.KindVhostUser, Name: "crosvm-net0", Queues: 2})
	unix.Close(fds[1])
	if err != nil {
		unix.Close(fds[0])
		t.Fatal(err)
	}
	if l.Name != "crosvm-net0" {
		t.Errorf("link %+v", l)
	}
	f := os.NewFile(uintptr(fds[0]), "front-end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	fe, err := vf.New(c.(*net.UnixConn), vf.Options{Features: vf.Linux})
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.Start(); err != nil {
		t.Fatal(err)
	}
	if _, mtu, err := fe.DeviceConfig(); err != nil || mtu != 1500 {
		t.Errorf("device MTU %d (%v), want the network's 1500", mtu, err)
	}
	g := guestpeer.NewOffloading(t, fe, "52:54:00:00:25:01")
	online(t, g)
	download(t, g, web, sum)
	g.Close()
}

package libslirp

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// TestQEMUGuestfwd: guestfwd= to a host TCP socket and to a unix-socket
// chardev. The guest's connection to 10.0.2.100:4321 reaches a host
// server that answers a line; 2 MiB the host writes into the unix socket
// reach the guest's connection to 10.0.2.101:4322 intact (its sha256),
// though QEMU connected the chardev long before the guest connected. In
// both shapes.
func TestQEMUGuestfwd(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { guestfwd(t, shape) })
	}
}

func guestfwd(t *testing.T, shape string) {
	dir := libDir(t)
	guest := vmtest.Build(t)

	tcpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcpLn.Close() })
	got := make(chan string, 1)
	go func() {
		c, err := tcpLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
		fmt.Fprintf(c, "pong:%s", line)
		time.Sleep(30 * time.Second) // QEMU's chardev stays connected
	}()

	const blobSize = 2 << 20
	blob := make([]byte, blobSize)
	rand.Read(blob)
	sum := fmt.Sprintf("%x", sha256.Sum256(blob))
	sock := filepath.Join(t.TempDir(), "gfwd.sock")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unixLn.Close() })
	go func() {
		c, err := unixLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(blob)
		io.Copy(io.Discard, c)
	}()

	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: []string{
			"-netdev", fmt.Sprintf("user,id=n0,guestfwd=tcp:10.0.2.100:4321-tcp:%s,guestfwd=tcp:10.0.2.101:4322-unix:%s",
				tcpLn.Addr(), sock),
			"-device", "virtio-net-pci,netdev=n0",
		},
		Env:     []string{"LD_LIBRARY_PATH=" + dir, "SLIPWAY_LIBSLIRP=" + shape},
		Timeout: 180 * time.Second,
		Script: strings.Join([]string{
			`echo "@reply=$( (echo hello-gfwd; sleep 3) | timeout 10 nc 10.0.2.100 4321)"`,
			`timeout 60 nc 10.0.2.101 4322 < /dev/null > /tmp/blob &`,
			fmt.Sprintf(`for i in $(seq 1 60); do [ "$(wc -c < /tmp/blob)" -ge %d ] && break; sleep 1; done`, blobSize),
			fmt.Sprintf(`echo "@blob=$(head -c %d /tmp/blob | sha256sum | cut -d' ' -f1) $(wc -c < /tmp/blob)"`, blobSize),
		}, "\n"),
	})
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.Markers(res.Console)
	if m["reply"] != "pong:hello-gfwd" {
		t.Errorf("the guest's answer through guestfwd to a TCP socket: %q", m["reply"])
	}
	select {
	case line := <-got:
		if line != "hello-gfwd\n" {
			t.Errorf("the host got %q", line)
		}
	default:
		t.Error("the host's TCP server got nothing")
	}
	if want := fmt.Sprintf("%s %d", sum, blobSize); m["blob"] != want {
		t.Errorf("the guest's bytes through guestfwd to a unix socket: %q, want %q", m["blob"], want)
	}
	if t.Failed() {
		t.Logf("console:\n%s", res.Console)
	}
}

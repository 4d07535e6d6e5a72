package transports

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// QEMU guests boot in 5-10 s under TCG on this shared machine: these tests
// are few, and each VM does as much as it usefully can.

func nic(netdev, mac string) []string {
	return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,mac=" + mac}
}

// downloadScript fetches the host's blob through the gateway and prints
// its sha256 as @sha=.
func downloadScript(web int) string {
	return fmt.Sprintf(`echo "@sha=$(wget -q -O - http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web)
}

func checkDownload(t *testing.T, res vmtest.Result, sum string) {
	t.Helper()
	if got := testenv.Markers(res.Console)["sha"]; got != sum {
		t.Fatalf("guest downloaded a blob with sha256 %q, want %s:\n%s", got, sum, res.Console)
	}
}

// Two QEMU guests on one `slipway serve`, one over -netdev stream (TCP),
// one over -netdev dgram: distinct leases, they ping each other, and the
// second downloads a file from busybox httpd in the first, intact.
func TestQEMUTwoGuests(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dir := t.TempDir()
	port := testenv.FreePort(t, "tcp")
	dgram := filepath.Join(dir, "slipway.dgram")
	testenv.Serve(t, "--listen", "stream:tcp:127.0.0.1:"+strconv.Itoa(port), "--listen", "dgram:unix:"+dgram)

	// The server guest: serves 4 MB of random bytes, then pings whichever
	// of the next addresses answers (the other guest), and stays up.
	server := vmtest.Start(t, guest, vmtest.Options{
		Netdev: nic(fmt.Sprintf("stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=%d", port), "52:54:00:00:10:01"),
		Script: `mkdir -p /www
dd if=/dev/urandom of=/www/blob bs=64k count=64 2>/dev/null
echo "@sha=$(sha256sum /www/blob | cut -d' ' -f1)"
httpd -p 8080 -h /www
me=$(ip -4 addr show dev eth0 | sed -n 's/.*inet \([0-9.]*\).*/\1/p')
echo "@me=$me"
for i in $(seq 120); do
	for ip in 10.0.2.15 10.0.2.16 10.0.2.17; do
		[ "$ip" = "$me" ] && continue
		if ping -c1 -W1 $ip >/dev/null 2>&1; then echo "@pingpeer=$ip"; sleep 600; fi
	done
done`,
	})
	meLine, err := server.WaitFor("@me=", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	serverIP := strings.TrimSpace(meLine[strings.Index(meLine, "@me=")+4:])
	shaLine := testenv.Markers(server.Console())["sha"]

	client := vmtest.Run(t, guest, vmtest.Options{
		Netdev: nic("dgram,id=n0,local.type=unix,local.path="+filepath.Join(dir, "qemu.dgram")+
			",remote.type=unix,remote.path="+dgram, "52:54:00:00:10:02"),
		Script: fmt.Sprintf(`ping -c2 -W5 %[1]s >/dev/null && echo "@ping=ok"
echo "@sha=$(wget -q -O - http://%[1]s:8080/blob | sha256sum | cut -d' ' -f1)"
# Stay up until the server guest has pinged back (the kernel counts the
# echo requests it answered).
echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else print $c }' /proc/net/snmp; }
for i in $(seq 90); do [ "$(echos)" -gt 0 ] && break; sleep 1; done`, serverIP),
	})
	m := testenv.Markers(client.Console)
	if client.Lease["ip"] == "" || client.Lease["ip"] == serverIP {
		t.Errorf("client lease %q, server %q: want two distinct leases", client.Lease["ip"], serverIP)
	}
	if m["ping"] != "ok" {
		t.Errorf("client could not ping the server guest")
	}
	if m["sha"] == "" || m["sha"] != shaLine {
		t.Errorf("client downloaded sha256 %q from the server guest, which has %q", m["sha"], shaLine)
	}
	peer, err := server.WaitFor("@pingpeer=", 60*time.Second)
	if err != nil {
		t.Errorf("server guest never pinged the client: %v", err)
	} else if got := peer[strings.Index(peer, "@pingpeer=")+10:]; strings.TrimSpace(got) != client.Lease["ip"] {
		t.Errorf("server guest pinged %q, the client has %q", got, client.Lease["ip"])
	}
	if t.Failed() {
		t.Logf("client console:\n%s\nserver console:\n%s", client.Console, server.Console())
	}
}

// slipway --connect to QEMU listening with server=on, over unix and TCP.
func TestQEMUConnect(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 16<<20)
	for _, tc := range []struct{ name, netdev, endpoint string }{
		{"unix", "addr.type=unix,addr.path=%[1]s", "stream:unix:%[1]s"},
		{"tcp", "addr.type=inet,addr.host=127.0.0.1,addr.port=%[2]d", "stream:tcp:127.0.0.1:%[2]d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "qemu.sock")
			port := testenv.FreePort(t, "tcp")
			vm := vmtest.Start(t, guest, vmtest.Options{
				Netdev: nic("stream,id=n0,server=on,"+fmt.Sprintf(tc.netdev, sock, port), "52:54:00:00:11:01"),
				Script: downloadScript(int(web.Port())),
			})
			// QEMU listens first; slipway dials it (and would again).
			testenv.Serve(t, "--connect", fmt.Sprintf(tc.endpoint, sock, port))
			res, err := vm.Wait()
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Console)
			}
			if res.Lease["ip"] != "10.0.2.15" {
				t.Errorf("lease %v", res.Lease)
			}
			checkDownload(t, res, sum)
		})
	}
}

// QEMU -netdev socket,fd=3 with one end of a socketpair, stream or
// datagram; slipway serve --fd holds the other (what a parent VMM or a
// socket_vmnet_client-style wrapper does) and exits when QEMU is gone.
func TestQEMUSocketFD(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 16<<20)
	for _, tc := range []struct {
		kind string
		typ  int
	}{{"stream", unix.SOCK_STREAM}, {"dgram", unix.SOCK_DGRAM}} {
		t.Run(tc.kind, func(t *testing.T) {
			qemuEnd, ours := guestpeer.Socketpair(t, tc.typ)
			// slipway takes our end of the pair as its fd 3.
			f, err := ours.(interface{ File() (*os.File, error) }).File()
			if err != nil {
				t.Fatal(err)
			}
			ours.Close()
			srv := start(t, []*os.File{f}, "serve", "--fd", "3:"+tc.kind)
			f.Close()
			res := vmtest.Run(t, guest, vmtest.Options{
				Netdev:     nic("socket,id=n0,fd=3", "52:54:00:00:12:01"),
				ExtraFiles: []*os.File{qemuEnd},
				Script:     downloadScript(int(web.Port())),
			})
			qemuEnd.Close()
			checkDownload(t, res, sum)
			if code := srv.wait(t, 60*time.Second); code != 0 {
				t.Errorf("serve exited %d after QEMU left, want 0", code)
			}
		})
	}
}

package transports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// vhostNIC is the QEMU command line for a guest on slipway's vhost-user
// socket: guest memory in a shared memfd (the back-end maps it), the
// socket as a client that reconnects, INTx interrupts (vectors=0:
// QEMU 7.2 under TCG crashes setting MSI-X vector notifiers up for a
// vhost-user device), larger rings than QEMU's 256.
func vhostNIC(sock, mac, mem string) []string {
	return []string{
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on", "-numa", "node,memdev=mem",
		"-chardev", "socket,id=c0,path=" + sock + ",reconnect=1",
		"-netdev", "vhost-user,id=n0,chardev=c0",
		"-device", "virtio-net-pci,netdev=n0,vectors=0,rx_queue_size=1024,tx_queue_size=1024,mac=" + mac,
	}
}

// gates lets a guest script wait for the test: a request for /gate/NAME
// is answered once the test has called open(NAME) (the test snapshots
// counters between the guest's phases this way).
type gates struct {
	arrived chan string
	release chan struct{}
}

func newGates(t *testing.T) (*gates, int) {
	g := &gates{arrived: make(chan string), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/gate/", func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.arrived <- strings.TrimPrefix(r.URL.Path, "/gate/"):
		case <-r.Context().Done():
			return
		}
		select {
		case <-g.release:
		case <-r.Context().Done():
		}
	})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return g, l.Addr().(*net.TCPAddr).Port
}

// uploadSink takes size bytes on each connection and answers their
// sha256 (busybox's wget cannot post binary data; its nc can send it).
func uploadSink(t *testing.T, size int64) netip.AddrPort {
	return testenv.TCPServer(t, func(c net.Conn) {
		defer c.Close()
		h := sha256.New()
		if n, err := io.CopyN(h, c, size); err != nil {
			t.Logf("upload: %d bytes, %v", n, err)
		}
		fmt.Fprint(c, hex.EncodeToString(h.Sum(nil)))
	})
}

// wait waits for the guest at gate name, then runs at (while the guest
// waits) and lets it on.
func (g *gates) wait(t *testing.T, vm *vmtest.VM, name string, timeout time.Duration, at func()) {
	t.Helper()
	select {
	case got := <-g.arrived:
		if got != name {
			t.Fatalf("guest at gate %q, want %q", got, name)
		}
	case <-time.After(timeout):
		t.Fatalf("guest not at gate %q after %v:\n%s", name, timeout, vm.Console())
	}
	at()
	g.release <- struct{}{}
}

// linkStats is a port's counters by the API.
func linkStats(t *testing.T, api, prefix string) control.Link {
	t.Helper()
	var links []control.Link
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := control.NewClient(api).Do(ctx, http.MethodGet, "/v1/links", nil, &links); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Name, prefix) {
			return l
		}
	}
	t.Fatalf("no link %s* in %+v", prefix, links)
	return control.Link{}
}

// A QEMU guest on vhost-user, at MTU 1500: lease, DNS, ping, 50 MB each
// way intact, a published port reached from the host, and a second VM on
// a stream socket talking to it. Bulk transfers go in super-frames: the
// frames the port counts average at least 32 KiB each way (the guest's
// wget download; the host fetching a file from the guest's httpd, which
// sends it with sendfile, where busybox nc's small writes would make
// small frames whatever the link does).
func TestQEMUVhostUser(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 50<<20)
	g, gport := newGates(t)
	upload := uploadSink(t, 50<<20)
	dir := t.TempDir()
	vsock, ssock, api := filepath.Join(dir, "vm.vhost"), filepath.Join(dir, "vm.sock"), filepath.Join(dir, "api.sock")
	pub := testenv.FreePort(t, "tcp")
	testenv.Serve(t, "--listen", "vhost-user:"+vsock, "--listen", "stream:unix:"+ssock, "--mtu", "1500",
		"--api-socket", api, "--dns-upstream", dns.String(), "-p", fmt.Sprintf("%d:8080", pub))

	vm := vmtest.Start(t, guest, vmtest.Options{
		Memory:  "512M",
		Netdev:  vhostNIC(vsock, "52:54:00:00:20:01", "512M"),
		Timeout: 15 * time.Minute,
		Script: fmt.Sprintf(`gate() { wget -q -O /dev/null http://10.0.2.2:%[1]d/gate/$1; }
echo "@mtu=$(cat /sys/class/net/eth0/mtu)"
echo "@dns=$(nslookup a.%[3]s 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1)"
ping -c1 -W5 10.0.2.2 >/dev/null && echo "@ping=ok"
mkdir -p /www
dd if=/dev/urandom of=/www/up bs=1M count=50 2>/dev/null
dd if=/dev/urandom of=/www/blob bs=64k count=64 2>/dev/null
echo "@upsha=$(sha256sum /www/up | cut -d' ' -f1)"
echo "@wwwsha=$(sha256sum /www/blob | cut -d' ' -f1)"
httpd -p 8080 -h /www
gate down
wget -q -O /tmp/down http://10.0.2.2:%[2]d/blob; echo "@downrc=$? $(wc -c < /tmp/down)"
echo "@sha=$(sha256sum /tmp/down | cut -d' ' -f1)"
rm /tmp/down
gate up
echo "@uploaded=$(nc 10.0.2.2 %[4]d < /www/up)"
gate pub
echo "@serving=yes"
sleep 600`, gport, web.Port(), testenv.TestDomain, upload.Port()),
	})
	var c0, c1, c2, c3 control.Link
	var pubSum string
	g.wait(t, vm, "down", 5*time.Minute, func() { c0 = linkStats(t, api, "vhost-user:") })
	g.wait(t, vm, "up", 5*time.Minute, func() { c1 = linkStats(t, api, "vhost-user:") })
	g.wait(t, vm, "pub", 5*time.Minute, func() {
		// The guest's web server through the published port.
		c2 = linkStats(t, api, "vhost-user:")
		pubSum = fetchSum(t, fmt.Sprintf("http://127.0.0.1:%d/up", pub))
		c3 = linkStats(t, api, "vhost-user:")
	})
	if _, err := vm.WaitFor("@serving=", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	m := testenv.Markers(vm.Console())
	if m["mtu"] != "1500" || m["dns"] != testenv.TestDomainAddr || m["ping"] != "ok" {
		t.Errorf("guest: mtu=%q dns=%q ping=%q", m["mtu"], m["dns"], m["ping"])
	}
	if m["sha"] != sum {
		t.Errorf("downloaded sha256 %q (%s), want %s", m["sha"], m["downrc"], sum)
	}
	if m["uploaded"] == "" || m["uploaded"] != m["upsha"] {
		t.Errorf("host got an upload with sha256 %q, the guest sent %q", m["uploaded"], m["upsha"])
	}
	if pubSum != m["upsha"] {
		t.Errorf("published port served sha256 %s, the guest has %s", pubSum, m["upsha"])
	}
	avg := func(bytes, frames uint64) float64 { return float64(bytes) / float64(max(frames, 1)) }
	down := avg(c1.TxBytes-c0.TxBytes, c1.TxFrames-c0.TxFrames)
	nc := avg(c2.RxBytes-c1.RxBytes, c2.RxFrames-c1.RxFrames)
	up := avg(c3.RxBytes-c2.RxBytes, c3.RxFrames-c2.RxFrames)
	t.Logf("to the guest (wget): %d frames, %.0f bytes each on average; from it (httpd): %d frames, %.0f bytes each; (nc: %.0f)",
		c1.TxFrames-c0.TxFrames, down, c3.RxFrames-c2.RxFrames, up, nc)
	if down < superFrameFloor || up < superFrameFloor {
		t.Errorf("bulk frames average %.0f bytes to the guest and %.0f from it, want super-frames (%d or more)", down, up, superFrameFloor)
	}
	t.Logf("drops: %v", c3.Drops)

	// A second VM, on a stream socket, pings the first and downloads
	// from it: the first one's super-frames are cut for it.
	other := vmtest.Run(t, guest, vmtest.Options{
		Netdev: []string{"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + ssock,
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:20:02"},
		Script: `ping -c2 -W5 10.0.2.15 >/dev/null && echo "@ping=ok"
echo "@sha=$(wget -q -O - http://10.0.2.15:8080/blob | sha256sum | cut -d' ' -f1)"`,
	})
	om := testenv.Markers(other.Console)
	if other.Lease["ip"] == "" || other.Lease["ip"] == "10.0.2.15" || om["ping"] != "ok" || om["sha"] != m["wwwsha"] {
		t.Errorf("stream VM: lease %q, ping %q, sha256 %q (want %s):\n%s", other.Lease["ip"], om["ping"], om["sha"], m["wwwsha"], other.Console)
	}
	if t.Failed() {
		t.Logf("vhost-user guest console:\n%s", vm.Console())
	}
}

// fetchSum GETs url and returns the sha256 of the body.
func fetchSum(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// QEMU owning the vhost-user socket (server=on): slipway --connect dials
// it. (QEMU's socket chardev takes no inherited fd for vhost-user: "does
// not support FD passing"; --fd N:vhost-user is tested with the Go
// front-end.)
func TestQEMUVhostUserConnect(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 16<<20)
	sock := filepath.Join(t.TempDir(), "qemu.vhost")
	vm := vmtest.Start(t, guest, vmtest.Options{
		Memory: "512M",
		Netdev: []string{"-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa", "node,memdev=mem",
			"-chardev", "socket,id=c0,path=" + sock + ",server=on,wait=off",
			"-netdev", "vhost-user,id=n0,chardev=c0", "-device", "virtio-net-pci,netdev=n0,vectors=0,mac=52:54:00:00:23:01"},
		Script: downloadScript(int(web.Port())),
	})
	// QEMU listens first; slipway dials it (and would again).
	testenv.Serve(t, "--connect", "vhost-user:"+sock)
	res, err := vm.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Console)
	}
	checkDownload(t, res, sum)
}

// hmp runs one human-monitor command on QEMU's monitor socket and
// returns its output.
func hmp(t *testing.T, sock, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		t.Fatalf("monitor %s: %v", sock, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	prompt := func() string {
		var out []byte
		buf := make([]byte, 4096)
		for !strings.HasSuffix(string(out), "(qemu) ") {
			n, err := c.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				t.Fatalf("monitor %s after %q: %v", sock, out, err)
			}
		}
		return string(out)
	}
	prompt()
	fmt.Fprintf(c, "%s\n", cmd)
	return prompt()
}

// Live migration of a guest on vhost-user to a second QEMU, on the same
// slipway or on a second one: the guest waits in an HTTP request (a gate)
// while it moves, then downloads a file on the destination, intact. On
// the same slipway even the request in flight survives (its TCP
// connection lives in slipway's stack; RARP tells the switch the guest's
// new port). QEMU refuses to migrate at all unless the back-end logs the
// pages it writes (LOG_SHMFD, LOG_ALL).
func TestQEMUVhostUserMigrate(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	for _, second := range []bool{false, true} {
		name := map[bool]string{false: "same slipway", true: "second slipway"}[second]
		t.Run(name, func(t *testing.T) {
			web, sum := testenv.HTTPFile(t, 16<<20)
			g, gport := newGates(t)
			dir := t.TempDir()
			vsock, dsock := filepath.Join(dir, "vm.vhost"), filepath.Join(dir, "vm.vhost")
			srcMon, dstMon, mig := filepath.Join(dir, "src.mon"), filepath.Join(dir, "dst.mon"), filepath.Join(dir, "mig.sock")
			testenv.Serve(t, "--listen", "vhost-user:"+vsock, "--mtu", "1500")
			if second {
				dsock = filepath.Join(dir, "dst.vhost")
				testenv.Serve(t, "--listen", "vhost-user:"+dsock, "--mtu", "1500")
			}
			// A second slipway knows nothing of the request in flight:
			// the guest, with nothing unacknowledged, would wait for its
			// answer forever.
			script := fmt.Sprintf(`timeout 30 wget -q -O /dev/null http://10.0.2.2:%[1]d/gate/migrate; echo "@gate=$?"
wget -q -O /tmp/down http://10.0.2.2:%[2]d/blob; echo "@downrc=$?"
echo "@sha=$(sha256sum /tmp/down | cut -d' ' -f1)"
sleep 600`, gport, web.Port())
			const mac = "52:54:00:00:25:01"
			src := vmtest.Start(t, guest, vmtest.Options{
				Memory: "512M", Netdev: vhostNIC(vsock, mac, "512M"), Script: script, Timeout: 10 * time.Minute,
				ExtraQEMUArgs: []string{"-monitor", "unix:" + srcMon + ",server=on,wait=off"},
			})
			dst := vmtest.Start(t, guest, vmtest.Options{
				Memory: "512M", Netdev: vhostNIC(dsock, mac, "512M"), Script: script, Timeout: 10 * time.Minute,
				ExtraQEMUArgs: []string{"-monitor", "unix:" + dstMon + ",server=on,wait=off", "-incoming", "unix:" + mig},
			})
			g.wait(t, src, "migrate", 5*time.Minute, func() {
				if out := hmp(t, srcMon, "migrate -d unix:"+mig); strings.Contains(out, "rror") {
					t.Fatalf("migrate: %s", out)
				}
				deadline := time.Now().Add(5 * time.Minute)
				for {
					out := hmp(t, srcMon, "info migrate")
					if strings.Contains(out, "Migration status: completed") {
						break
					}
					if strings.Contains(out, "Migration status: failed") || time.Now().After(deadline) {
						t.Fatalf("migration: %s", out)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if out := hmp(t, dstMon, "info status"); !strings.Contains(out, "running") {
					t.Errorf("destination after the migration: %s", out)
				}
				src.Kill()
			})
			if _, err := dst.WaitFor("@sha=", 5*time.Minute); err != nil {
				t.Fatalf("%v\n%s", err, dst.Console())
			}
			m := testenv.Markers(dst.Console())
			if m["gate"] == "" || !second && m["gate"] != "0" || m["sha"] != sum {
				t.Errorf("on the destination: gate rc %q, download rc %s sha256 %q, want %s:\n%s", m["gate"], m["downrc"], m["sha"], sum, dst.Console())
			}
		})
	}
}

// slipway restarted under a running QEMU guest on vhost-user: QEMU
// (reconnect=1) connects to the new slipway, which takes the rings up
// where they stood (GET/SET_VRING_BASE); the guest's next download
// works, and a DHCP request gets it the same address again.
func TestQEMUVhostUserRestart(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 16<<20)
	var restarted atomic.Bool
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flagSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !restarted.Load() {
			http.NotFound(w, r)
		}
	})}
	go flagSrv.Serve(l)
	t.Cleanup(func() { flagSrv.Close() })
	flagPort := l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	vsock := filepath.Join(dir, "vm.vhost")
	args := []string{"--listen", "vhost-user:" + vsock, "--mtu", "1500"}
	srv := testenv.Serve(t, args...)
	vm := vmtest.Start(t, guest, vmtest.Options{
		Memory: "512M", Netdev: vhostNIC(vsock, "52:54:00:00:26:01", "512M"), Timeout: 10 * time.Minute,
		Script: fmt.Sprintf(`echo "@first=$(wget -q -O - http://10.0.2.2:%[1]d/blob | sha256sum | cut -d' ' -f1)"
until wget -q -O /dev/null http://10.0.2.2:%[2]d/restarted; do sleep 1; done
echo "@second=$(wget -q -O - http://10.0.2.2:%[1]d/blob | sha256sum | cut -d' ' -f1)"
echo "@lease=$(udhcpc -i eth0 -n -q -s /bin/true 2>&1 | grep -o 'lease of [0-9.]*' | cut -d' ' -f3)"
echo "@addr=$(ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)"`, web.Port(), flagPort),
	})
	if _, err := vm.WaitFor("@first=", 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	testenv.Serve(t, args...)
	restarted.Store(true)
	res, err := vm.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Console)
	}
	m := testenv.Markers(res.Console)
	if m["first"] != sum || m["second"] != sum {
		t.Errorf("downloads before and after the restart: sha256 %q and %q, want %s", m["first"], m["second"], sum)
	}
	if m["lease"] == "" || m["lease"] != m["addr"] {
		t.Errorf("after the restart DHCP offered %q, the guest has %q", m["lease"], m["addr"])
	}
}

// A guest with two CPUs on a device with two queue pairs (--queues 2,
// QEMU queues=2, mq=on): the guest runs both pairs, and downloads pinned
// to each CPU (Linux transmits on the pair of the CPU it runs on) are
// intact, so slipway serves both transmit rings.
func TestQEMUVhostUserMultiQueue(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 16<<20)
	sock := filepath.Join(t.TempDir(), "vm.vhost")
	testenv.Serve(t, "--listen", "vhost-user:"+sock, "--queues", "2", "--mtu", "1500")
	vm := vmtest.Start(t, guest, vmtest.Options{
		Memory: "512M", Timeout: 10 * time.Minute,
		Netdev: []string{"-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa", "node,memdev=mem",
			"-chardev", "socket,id=c0,path=" + sock + ",reconnect=1",
			"-netdev", "vhost-user,id=n0,chardev=c0,queues=2",
			"-device", "virtio-net-pci,netdev=n0,mq=on,vectors=0,mac=52:54:00:00:27:01"},
		ExtraQEMUArgs: []string{"-smp", "2"},
		Script: fmt.Sprintf(`echo "@cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "@queues=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)"
for cpu in 1 2; do
  echo "@sha$cpu=$(taskset $cpu wget -q -O - http://10.0.2.2:%[1]d/blob | sha256sum | cut -d' ' -f1)"
done`, web.Port()),
	})
	res, err := vm.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Console)
	}
	m := testenv.Markers(res.Console)
	if m["cpus"] != "2" || m["queues"] != "2" {
		t.Fatalf("guest has %q CPUs and %q transmit queues, want 2 and 2:\n%s", m["cpus"], m["queues"], res.Console)
	}
	if m["sha1"] != sum || m["sha2"] != sum {
		t.Errorf("downloads on CPU 0 and 1: sha256 %q and %q, want %s", m["sha1"], m["sha2"], sum)
	}
}

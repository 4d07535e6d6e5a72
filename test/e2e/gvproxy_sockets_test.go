package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// gvOnline takes the guest's lease and checks gvproxy's addressing.
func gvOnline(t *testing.T, g *guestpeer.Guest, router string) guestpeer.Lease {
	t.Helper()
	l, err := g.Online()
	if err != nil {
		t.Fatal(err)
	}
	if l.Router.String() != router || l.DNS.String() != router {
		t.Errorf("guest %s: lease %+v, want router and DNS %s", g.MAC, l, router)
	}
	return l
}

// gvDownload fetches the blob from the host's loopback at gvproxy's host
// address and checks it arrived whole.
func gvDownload(t *testing.T, g *guestpeer.Guest, host string, web netip.AddrPort, sum string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body, err := g.Get(ctx, fmt.Sprintf("http://%s:%d/blob", host, web.Port()))
	if err != nil {
		t.Fatalf("guest %s: download: %v", g.MAC, err)
	}
	if got := sha256.Sum256(body); hex.EncodeToString(got[:]) != sum {
		t.Fatalf("guest %s: %d bytes with the wrong sha256", g.MAC, len(body))
	}
}

// gvLookup asks DNS server dns for name's A record from inside the guest.
func gvLookup(t *testing.T, g *guestpeer.Guest, dns, name string) (string, dnsmessage.RCode) {
	t.Helper()
	c, err := g.DialUDP(netip.AddrPortFrom(netip.MustParseAddr(dns), 53))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 9, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	raw, _ := q.Pack()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		c.Write(raw)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, a := range m.Answers {
			if r, ok := a.Body.(*dnsmessage.AResource); ok {
				return netip.AddrFrom4(r.A).String(), m.RCode
			}
		}
		return "", m.RCode
	}
	t.Fatalf("%s: no answer from %s", name, dns)
	return "", 0
}

// TestGvproxyVMSockets: each of gvproxy's other VM transports carries a
// VM that leases an address and downloads from the host's loopback at
// .254: -listen-vfkit (unixgram, "VFKT" first), -listen-bess
// (unixpacket), -listen-stdio (the process's own stdin and stdout), and
// /connect on -listen (the link inside the hijacked HTTP connection).
// -pcap records the traffic, -debug logs at debug level, and
// "slipway gvproxy --version" answers as gvproxy.
func TestGvproxyVMSockets(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 1<<20)
	bin := testenv.Slipway(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "gvproxy", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "gvproxy version ") {
		t.Errorf("--version: %v %q", err, out)
	}

	t.Run("vfkit", func(t *testing.T) {
		sock, pcap := filepath.Join(dir, "vfkit.sock"), filepath.Join(dir, "vfkit.pcap")
		gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "gvproxy", "-ssh-port", "-1", "-listen-vfkit", "unixgram://"+sock, "-pcap", pcap, "-debug"))
		waitPath(t, sock, gv)
		g := guestpeer.New(t, guestpeer.DialDatagram(t, sock, true, true), "52:54:00:00:07:01")
		gvOnline(t, g, gvGateway)
		gvDownload(t, g, gvHost, web, sum)
		gv.Stop()
		if b, _ := os.ReadFile(pcap); len(b) < 24+1<<20 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 && binary.BigEndian.Uint32(b) != 0xa1b2c3d4 {
			t.Errorf("-pcap: %d bytes, want a capture holding the download", len(b))
		}
		if !strings.Contains(gv.Output(), "level=DEBUG") {
			t.Error("-debug: no debug lines in the log")
		}
	})
	t.Run("bess", func(t *testing.T) {
		sock := filepath.Join(dir, "bess.sock")
		gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "gvproxy", "-ssh-port", "-1", "-listen-bess", "unixpacket://"+sock))
		waitPath(t, sock, gv)
		c, err := net.Dial("unixpacket", sock)
		if err != nil {
			t.Fatal(err)
		}
		g := guestpeer.New(t, &guestpeer.Packet{Conn: c}, "52:54:00:00:07:02")
		gvOnline(t, g, gvGateway)
		gvDownload(t, g, gvHost, web, sum)
	})
	t.Run("stdio", func(t *testing.T) {
		cmd := exec.Command(bin, "gvproxy", "-ssh-port", "-1", "-listen-stdio", "accept")
		in, _ := cmd.StdinPipe()
		outp, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		g := guestpeer.New(t, guestpeer.NewLE16(outp, in, in), "52:54:00:00:07:03")
		gvOnline(t, g, gvGateway)
		gvDownload(t, g, gvHost, web, sum)
		// The pipe's end is gvproxy's end.
		in.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("gvproxy after stdin closed: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("gvproxy still runs after its stdin closed")
		}
	})
	t.Run("connect", func(t *testing.T) {
		// /connect on a tcp:// -listen; -services answers the same API
		// but /connect.
		api, svc := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp")), filepath.Join(dir, "services.sock")
		gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "gvproxy", "-ssh-port", "-1", "-listen", "tcp://"+api, "-services", "unix://"+svc))
		waitSocket(t, svc, gv).Close()
		c, err := net.Dial("tcp", api)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET /connect HTTP/1.1\r\nHost: gvproxy\r\n\r\n")
		g := guestpeer.New(t, guestpeer.NewLE16(c, c, c), "52:54:00:00:07:04")
		gvOnline(t, g, gvGateway)
		gvDownload(t, g, gvHost, web, sum)
		resp, err := unixHTTP(svc).Get("http://gvproxy/connect")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		leases, err := unixHTTP(svc).Get("http://gvproxy/services/dhcp/leases")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(leases.Body)
		leases.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), `"52:54:00:00:07:04"`) {
			t.Errorf("-services: /connect %d (want 404), leases %s", resp.StatusCode, b)
		}
	})
}

// waitPath waits for a socket file to appear.
func waitPath(t *testing.T, path string, gv *testenv.Process) {
	t.Helper()
	if gv.WaitPath(path, 5*time.Second) {
		return
	}
	select {
	case <-gv.Done():
		t.Fatalf("gvproxy exited: %v\n%s", gv.Err(), gv.Output())
	default:
		t.Fatalf("%s never appeared", path)
	}
}

// TestGvproxyConfigFile: -config FILE.yaml as crc and podman machine on
// macOS write it: its own subnet and gateway, a static lease for the VM's
// MAC, DNS zones with records, a regexp record and a default address,
// NAT of a virtual address to the host's loopback, and port forwards.
func TestGvproxyConfigFile(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 1<<20)
	bin := publicCopy(t, "gvproxy")
	dir := t.TempDir()
	sock := filepath.Join(dir, "vfkit.sock")
	fwd := testenv.FreePort(t, "tcp")
	const mac = "5a:94:ef:e4:0c:ef"
	conf := filepath.Join(dir, "gvproxy.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`
log-level: info
stack:
  mtu: 4000
  subnet: 10.88.0.0/24
  gatewayIP: 10.88.0.1
  gatewayMacAddress: "5a:94:ef:e4:0c:dd"
  dns:
    - name: crc.testing.
      records:
        - name: gateway
          ip: 10.88.0.1
        - name: host
          ip: 10.88.0.254
        - regexp: '^crc-.*-master-0$'
          ip: 10.88.0.11
    - name: apps-crc.testing.
      defaultIP: 10.88.0.77
  dnsSearchDomains: [crc.testing]
  nat:
    10.88.0.254: 127.0.0.1
  forwards:
    "127.0.0.1:%d": 10.88.0.11:8080
  dhcpStaticLeases:
    10.88.0.11: "%s"
interfaces:
  vfkit: unixgram://%s
`, fwd, mac, sock)), 0o644)
	gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "-config", conf))
	waitPath(t, sock, gv)
	g := guestpeer.New(t, guestpeer.DialDatagram(t, sock, true, true), mac)
	l := gvOnline(t, g, "10.88.0.1")
	if l.IP.String() != "10.88.0.11" || l.MTU != 4000 {
		t.Errorf("lease %+v: want the static 10.88.0.11, MTU 4000", l)
	}
	gvDownload(t, g, "10.88.0.254", web, sum)
	for name, want := range map[string]string{
		"host.crc.testing.":                           "10.88.0.254",
		"gateway.crc.testing.":                        "10.88.0.1",
		"crc-x7k2p-master-0.crc.testing.":             "10.88.0.11",
		"console-openshift-console.apps-crc.testing.": "10.88.0.77",
		"probe-that-does-not-exist.crc.testing.":      "",
	} {
		got, rc := gvLookup(t, g, "10.88.0.1", name)
		if got != want {
			t.Errorf("%s → %q (%v), want %q", name, got, rc, want)
		}
		if want == "" && name == "probe-that-does-not-exist.crc.testing." && rc != dnsmessage.RCodeNameError {
			t.Errorf("%s: %v, want NXDOMAIN inside the zone", name, rc)
		}
	}
	// The file's forward: the host's port reaches the VM's 8080.
	ln, err := g.Listen(8080)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.WriteString(c, "from the VM\n")
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwd), 5*time.Second)
	if err != nil {
		t.Fatalf("the file's forward: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "from the VM\n" {
		t.Errorf("the file's forward: %q", b)
	}
}

package publish_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/vmtest"
)

// TestVMPublish: a QEMU guest on `slipway serve` is reached from the host
// through published ports, TCP and UDP, and sees the clients' own
// addresses; forwards added and removed at run time through each API take
// effect at once.
func TestVMPublish(t *testing.T) {
	needRoot(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	_, peerecho := binaries(t)
	pe, err := os.ReadFile(peerecho)
	if err != nil {
		t.Fatal(err)
	}
	ns := hostNS(t)
	sock := filepath.Join(t.TempDir(), "vm.sock")
	p := startSlipway(t, ns, "serve", "--listen", "stream:unix:"+sock, "-p", "8080:80", "-p", "5000:5000/udp")
	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: []string{
			"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
		},
		// The guest serves until the test ends and kills QEMU.
		Script:  "/peerecho -tcp :80 -udp :5000 &\nsleep 3600\n",
		Files:   map[string][]byte{"/peerecho": pe},
		Timeout: 30 * time.Minute,
	})
	if _, err := vm.WaitFor("peerecho ready", 5*time.Minute); err != nil {
		t.Fatalf("guest server: %v\n%s", err, vm.Console())
	}
	expectTCPPeer(t, ns, 40101, 60*time.Second)
	if _, err := vm.WaitFor("tcp peer="+hostAddr+":40101", 30*time.Second); err != nil {
		t.Errorf("the guest did not log the client's address: %v", err)
	}
	expectUDPPeers(t, ns, "vm", 40111, 40112)
	checkRuntimeForwards(t, ns, p)
	if t.Failed() {
		t.Logf("guest console:\n%s", vm.Console())
	}
	if strings.Contains(vm.Console(), "Kernel panic") {
		t.Errorf("guest panicked:\n%s", vm.Console())
	}
}

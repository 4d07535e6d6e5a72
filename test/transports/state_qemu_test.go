package transports

import (
	"path/filepath"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// Two QEMU guests on a slipway with --state-file, which is restarted
// between their boots: after the restart they come back in the other
// order and each gets the address it had (without the file the first to
// come would get the lowest).
func TestQEMUStateFileRestart(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "vm.sock")
	args := []string{"--listen", "stream:unix:" + sock, "--state-file", filepath.Join(dir, "state.json")}
	boot := func(mac string) string {
		t.Helper()
		res := vmtest.Run(t, guest, vmtest.Options{
			Netdev: nic("stream,id=n0,server=off,addr.type=unix,addr.path="+sock, mac),
		})
		if res.Lease["ip"] == "" {
			t.Fatalf("guest %s got no lease:\n%s", mac, res.Console)
		}
		return res.Lease["ip"]
	}
	const macA, macB = "52:54:00:00:21:01", "52:54:00:00:21:02"
	first := testenv.Serve(t, args...)
	ipA, ipB := boot(macA), boot(macB)
	if ipA == ipB {
		t.Fatalf("both guests got %s", ipA)
	}
	first.Stop()
	testenv.Serve(t, args...)
	if got := boot(macB); got != ipB {
		t.Errorf("after the restart guest B got %s, had %s", got, ipB)
	}
	if got := boot(macA); got != ipA {
		t.Errorf("after the restart guest A got %s, had %s", got, ipA)
	}
}

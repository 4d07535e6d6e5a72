package libslirp

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// TestQEMUMigration live-migrates one running guest from a QEMU on
// Debian's libslirp to a QEMU on slipway's, and from there to a third on
// Debian's again: each destination loads the slirp section its source
// wrote, and the guest's network works after each move (it fetches from
// the host and renews its lease). The C test checks what the section
// carries (the DHCP table) library to library.
func TestQEMUMigration(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	guest := vmtest.Build(t)
	var phase atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != fmt.Sprintf("/phase%d", phase.Load()) {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, r.URL.Path)
	})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	// Every QEMU has the same machine; the script is the same so the run
	// initramfs is the same file content on all three.
	script := strings.Join([]string{
		fmt.Sprintf(`for p in 1 2 3; do while ! wget -q -O /tmp/p http://10.0.2.2:%d/phase$p; do sleep 0.3; done; echo "@got=$(cat /tmp/p)"; `+
			`udhcpc -i eth0 -n -q -t 5 -T 1 -s /udhcpc.script >/dev/null 2>&1 && echo "@renewed$p"; done`, port),
	}, "\n")
	nic := []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:60"}
	tmp := t.TempDir()
	start := func(name string, slipway, incoming bool) (*vmtest.VM, *qmp) {
		qmpPath := filepath.Join(tmp, name+".qmp")
		o := vmtest.Options{Netdev: nic, Script: script, Timeout: 240 * time.Second,
			ExtraQEMUArgs: []string{"-qmp", "unix:" + qmpPath + ",server=on,wait=off"}}
		if incoming {
			o.ExtraQEMUArgs = append(o.ExtraQEMUArgs, "-incoming", "unix:"+filepath.Join(tmp, name+".mig"))
		}
		if slipway {
			o.Env = []string{"LD_LIBRARY_PATH=" + dir}
		}
		vm := vmtest.Start(t, guest, o)
		q := dialQMP(t, qmpPath)
		if got := onSlipway(t, vm.Pid(), defaultShape); got != slipway {
			t.Fatalf("%s: on slipway's library: %v, want %v", name, got, slipway)
		}
		return vm, q
	}
	migrate := func(from *qmp, to string) {
		t.Helper()
		if _, err := from.run("migrate", map[string]any{"uri": "unix:" + filepath.Join(tmp, to+".mig")}); err != nil {
			t.Fatal(err)
		}
		for range 600 {
			r, err := from.run("query-migrate", nil)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := r.(map[string]any)["status"].(string)
			switch st {
			case "completed":
				return
			case "failed", "cancelled":
				t.Fatalf("migration to %s: %v", to, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("migration to %s did not complete", to)
	}

	src, qsrc := start("debian1", false, false)
	phase.Store(1)
	if _, err := src.WaitFor("@renewed1", 200*time.Second); err != nil {
		t.Fatal(err)
	}
	mid, qmid := start("slipway", true, true)
	migrate(qsrc, "slipway")
	phase.Store(2)
	if _, err := mid.WaitFor("@renewed2", 60*time.Second); err != nil {
		t.Fatalf("on slipway after migration from libslirp: %v", err)
	}
	last, _ := start("debian2", false, true)
	migrate(qmid, "debian2")
	phase.Store(3)
	res, err := last.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if m := testenv.Markers(res.Console); m["got"] != "/phase3" || !strings.Contains(res.Console, "@renewed3") {
		t.Errorf("on libslirp after migration from slipway: got=%q\n%s", m["got"], res.Console)
	}
}

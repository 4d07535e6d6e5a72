package libslirp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// TestQEMUPXEBoot network-boots the test guest on -netdev user with
// tftp= and bootfile=: QEMU's iPXE firmware gets the boot file's name by
// DHCP, fetches the iPXE script it names from slipway's TFTP server, and
// the script the guest's kernel and initramfs; the guest then boots, takes
// a DHCP lease and powers off. Nothing comes from -kernel.
func TestQEMUPXEBoot(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	guest := vmtest.Build(t)
	root := t.TempDir()
	copyFile(t, guest.BzImage, filepath.Join(root, "vmlinuz"))
	copyFile(t, guest.Initrd, filepath.Join(root, "initrd.gz"))
	script := "#!ipxe\nkernel tftp://10.0.2.2/vmlinuz console=ttyS0 quiet panic=-1 mitigations=off\n" +
		"initrd tftp://10.0.2.2/initrd.gz\nboot\n"
	if err := os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(t.TempDir(), "console")
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config",
		"-display", "none", "-no-reboot", "-m", "256M", "-boot", "n",
		"-netdev", "user,id=n0,tftp="+root+",bootfile=boot.ipxe",
		"-device", "virtio-net-pci,netdev=n0", "-serial", "file:"+console)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	out, err := cmd.CombinedOutput()
	con, _ := os.ReadFile(console)
	if err != nil {
		t.Fatalf("QEMU: %v (%s)\nconsole:\n%s", err, out, con)
	}
	c := string(con)
	for _, want := range []string{vmtest.MarkerLease + "ip=10.0.2.15", vmtest.MarkerReady} {
		if !strings.Contains(c, want) {
			t.Errorf("the network-booted guest did not print %q", want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s\nQEMU: %s", c, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", from, err))
	}
}

// Package vmtest boots real QEMU guests for slipway's end-to-end tests.
//
// The guest (built by test/guest/build.sh and cached outside the repo) is a
// Debian kernel with a busybox initramfs: it loads virtio-net, takes a DHCP
// lease, runs the test's shell script and powers off, reporting each step
// as a marker line on the serial console. A test supplies the QEMU network
// arguments (slipway's socket, or QEMU's own -netdev user for comparison),
// a script and files; it gets back the console, the script's exit code and
// the lease.
//
//	g := vmtest.Build(t)
//	res := vmtest.Run(t, g, vmtest.Options{
//		Netdev: []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"},
//		Script: "wget -O- http://10.0.2.2:8080/",
//	})
//
// Guests boot under TCG (KVM guests hang on these machines) in about four
// seconds. Build skips the calling test in -short mode.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Guest is a built test guest: the kernel and base initramfs QEMU boots.
type Guest struct {
	Kernel string
	Initrd string
	// BzImage is the same kernel as a bzImage (Kernel may be the bare
	// vmlinux QEMU boots fastest), for boot loaders such as iPXE.
	BzImage string
}

// buildTimeout bounds build.sh, which downloads a ~70 MB kernel package on
// a cold cache; a hung mirror should fail the tests, not stall them.
const buildTimeout = 10 * time.Minute

// buildResult caches the guest for the whole test binary: build.sh is
// idempotent but still costs an apt-cache call (about a second).
var buildResult = sync.OnceValues(func() (buildOutput, error) {
	script, err := buildScript()
	if err != nil {
		return buildOutput{}, err
	}
	return runBuildScript(script)
})

// buildOutput is what one run of build.sh produced.
type buildOutput struct {
	guest Guest
	log   string // build.sh's stderr: progress, empty on a cache hit (tests check this)
}

// Build returns the test guest, building it on first use in this process.
// It fails the test with build.sh's output when the build fails, and skips
// the test in -short mode: booting guests takes seconds.
func Build(t testing.TB) Guest {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping real-QEMU guest test in -short mode")
	}
	g, err := BuildGuest()
	if err != nil {
		t.Fatalf("building the test guest: %v", err)
	}
	return g
}

// BuildGuest is Build for programs that are not tests (the benchmark):
// it returns the guest, building it on first use in this process, or an
// error carrying build.sh's output. build.sh is found from the working
// directory, which must be inside slipway's tree.
func BuildGuest() (Guest, error) {
	out, err := buildResult()
	if err != nil {
		return Guest{}, err
	}
	return out.guest, nil
}

// buildScript finds test/guest/build.sh in slipway's module root, which is
// an ancestor of every test's working directory (go test runs tests in
// their package directory). Walking up works with -trimpath too. A go.mod
// without the script is a nested module (bench/, whose benchmark boots the
// guest too) and the walk goes on above it.
func buildScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding build.sh: %w", err)
	}
	sawModule := false
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			sawModule = true
			script := filepath.Join(dir, "test", "guest", "build.sh")
			// Besides finding it, the Stat tells go test's result cache
			// that the outcome depends on the script.
			_, err := os.Stat(script)
			if err == nil {
				return script, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("finding build.sh: %w", err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			if sawModule {
				return "", errors.New("finding build.sh: no test/guest/build.sh beside any go.mod above the working directory")
			}
			return "", errors.New("finding build.sh: no go.mod above the working directory")
		}
		dir = parent
	}
}

func runBuildScript(script string) (buildOutput, error) {
	// build.sh reads these; looking them up here records them in go
	// test's result cache key, so changing one reruns the tests.
	for _, name := range []string{"SLIPWAY_GUEST_CACHE", "SLIPWAY_GUEST_KERNEL_PKG", "XDG_CACHE_HOME", "HOME"} {
		os.LookupEnv(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return buildOutput{}, fmt.Errorf("%s: %w\n%s%s", script, err, stderr.String(), stdout.String())
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	g := Guest{Kernel: vars["KERNEL"], Initrd: vars["INITRD"], BzImage: vars["BZIMAGE"]}
	for _, p := range []string{g.Kernel, g.Initrd, g.BzImage} {
		if _, err := os.Stat(p); err != nil {
			return buildOutput{}, fmt.Errorf("%s reported no usable guest (%q): %w\n%s", script, p, err, stderr.String())
		}
	}
	return buildOutput{guest: g, log: stderr.String()}, nil
}

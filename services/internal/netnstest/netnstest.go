//go:build linux

// Package netnstest gives service tests a real link to a real client: two
// fresh network namespaces joined by a veth pair, one for the client (the
// kernel's own IPv6 autoconfiguration, dhclient, dhcpcd) and one for the
// service under test. Only tests import it.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// IfName is the name of the veth end in each namespace.
const IfName = "eth0"

// Link is a veth pair between two namespaces, removed when the test ends.
type Link struct {
	// Client and Server are the namespace names, as `ip netns` knows them.
	Client, Server string
	// ClientMAC and ServerMAC are the veth ends' addresses.
	ClientMAC, ServerMAC net.HardwareAddr
}

// New creates the namespaces and the link with the given MTU, both ends up,
// with duplicate address detection off so link-local addresses are usable
// at once. It skips the test when not root or without iproute2, and in
// -short mode.
func New(t testing.TB, mtu int) *Link {
	t.Helper()
	if testing.Short() {
		t.Skip("creates network namespaces; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	l := &Link{Client: "swc-" + id, Server: "sws-" + id}
	for _, ns := range []string{l.Client, l.Server} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// Interfaces created in the namespace take its defaults.
		err := l.Do(ns, func() error {
			for _, k := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("turn off DAD in %s: %v", ns, err)
		}
	}
	mtuArg := fmt.Sprint(mtu)
	run(t, "ip", "link", "add", IfName, "netns", l.Client, "mtu", mtuArg, "type", "veth",
		"peer", "name", IfName, "netns", l.Server, "mtu", mtuArg)
	for _, ns := range []string{l.Client, l.Server} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "link", "set", IfName, "up")
	}
	l.ClientMAC = l.mac(t, l.Client)
	l.ServerMAC = l.mac(t, l.Server)
	// The kernel adds link-local addresses once the carrier is up, a
	// moment after the link is; clients such as dhclient give up without
	// one. Even with DAD off an address starts tentative, and a kernel
	// worker clears the flag later (late under load): binding it before
	// fails, as dhclient -6 did in CI ("Can't bind to dhcp address").
	usable := func(out string) bool {
		return strings.Contains(out, "inet6 fe80::") && !strings.Contains(out, "tentative")
	}
	for _, ns := range []string{l.Client, l.Server} {
		deadline := time.Now().Add(30 * time.Second)
		for !usable(run(t, "ip", "-n", ns, "-6", "addr", "show", "dev", IfName, "scope", "link")) {
			if time.Now().After(deadline) {
				t.Fatalf("no link-local address on %s in %s", IfName, ns)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return l
}

func (l *Link) mac(t testing.TB, ns string) net.HardwareAddr {
	t.Helper()
	out := run(t, "ip", "-n", ns, "-br", "link", "show", IfName)
	for _, f := range strings.Fields(out) {
		if m, err := net.ParseMAC(f); err == nil && len(m) == 6 {
			return m
		}
	}
	t.Fatalf("no MAC address in %q", out)
	return nil
}

// Command returns cmd to run name in namespace ns.
func (l *Link) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// IP runs `ip -n ns args...` and returns its output, failing the test on
// error.
func (l *Link) IP(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", ns}, args...)...)
}

// Do runs fn on an OS thread that is in namespace ns, so the sockets fn
// opens belong to ns (and stay there when used from any goroutine).
func (l *Link) Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// doLocked unlocks the thread only once it is back in the original
		// namespace; otherwise it dies with this goroutine.
		runtime.LockOSThread()
		errc <- l.doLocked(ns, fn)
	}()
	return <-errc
}

func (l *Link) doLocked(ns string, fn func() error) error {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns back from %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-net/slipway/bench/internal/proc"
	"github.com/slipway-net/slipway/bench/internal/report"
)

// netnsPrefix names every namespace the benchmark creates, followed by
// its pid, so a later run can tell its own leftovers from another
// engineer's namespaces.
const netnsPrefix = "swb-"

// nsInstance is a running namespace backend: a network namespace whose
// only way out is the backend, and where the host's servers are reached.
type nsInstance struct {
	// netns is the namespace's path for nsenter --net=.
	netns string
	// target is the address that reaches the host's servers from inside.
	target string
	// bind is the host address the servers listen on.
	bind string
	owned
}

// owned is what a backend instance started and must undo.
type owned struct {
	// procs are the backend's own processes, charged for RSS and CPU.
	procs []*process
	// extra are processes they started, charged too (slipway's engine).
	extra []int
	// cleanup undoes the setup, last step first.
	cleanup []func()
}

// close stops the processes, then runs the cleanups in reverse.
func (o *owned) close() {
	for _, p := range o.procs {
		p.stop()
	}
	for j := len(o.cleanup) - 1; j >= 0; j-- {
		o.cleanup[j]()
	}
}

// pids lists the backend's processes.
func (o *owned) pids() []int {
	var pids []int
	for _, p := range o.procs {
		pids = append(pids, p.pid())
	}
	return append(pids, o.extra...)
}

// nsBackend starts one kind of namespace networking.
type nsBackend struct {
	name  string
	note  string // how it is configured, for the report
	start func(ctx context.Context, b *bench) (*nsInstance, error)
}

func nsBackends() []nsBackend {
	return []nsBackend{
		{report.Slipway, "", startSlipwayNS},
		{report.SlipwayNoSandbox, "--sandbox=off", func(ctx context.Context, b *bench) (*nsInstance, error) {
			return startSlipwayRun(ctx, b, "off")
		}},
		{report.SlipwayStrict, "--sandbox=strict", func(ctx context.Context, b *bench) (*nsInstance, error) {
			return startSlipwayRun(ctx, b, "strict")
		}},
		{report.SlipwayOneQueue, "--queues 1: one TAP queue, one reader", func(ctx context.Context, b *bench) (*nsInstance, error) {
			return startSlipwayRun(ctx, b, "on", "--queues", "1")
		}},
		{report.Slirp4netns, "MTU 65520", startSlirp4netns},
		{report.Pasta, "", startPasta},
		{report.Veth, "veth pair, MTU 65520: the kernel's own limit", startVeth},
	}
}

// startSlipwayNS runs `slipway run -- sleep infinity` and uses the
// command's namespace.
func startSlipwayNS(ctx context.Context, b *bench) (*nsInstance, error) {
	return startSlipwayRun(ctx, b, "on")
}

// startSlipwayRun is startSlipwayNS with --sandbox=mode and flags.
func startSlipwayRun(ctx context.Context, b *bench, mode string, flags ...string) (*nsInstance, error) {
	args := append([]string{b.slipway, "run", "--sandbox=" + mode, "--ready-fd", "3"}, flags...)
	p, err := startProcess(b.logDir, "slipway-run", append(args, "--", "sleep", "infinity"),
		processOpts{readyFD: true})
	if err != nil {
		return nil, err
	}
	inst := &nsInstance{target: "10.0.2.2", bind: "127.0.0.1", owned: owned{procs: []*process{p}}}
	// The namespace's init (the command's parent) is slipway's child,
	// and so is its engine unless the sandbox is off; both were started
	// before slipway said it was ready.
	want := 2
	if mode == "off" {
		want = 1
	}
	var kids []int
	err = p.waitFor("its command", readyTimeout, func() bool {
		kids, _ = proc.Children(p.pid())
		return len(kids) == want
	})
	if err != nil {
		inst.close()
		return nil, err
	}
	for _, k := range kids {
		if isEngine(k) {
			inst.extra = append(inst.extra, k)
		} else {
			inst.netns = fmt.Sprintf("/proc/%d/ns/net", k)
		}
	}
	return inst, nil
}

// isEngine reports whether pid is a sandboxed slipway engine, which does
// the work its launcher's numbers would leave out.
func isEngine(pid int) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.HasPrefix(string(b), "slipway-engine\x00")
}

// addEngine charges p's engine, if it has one, to o.
func (o *owned) addEngine(p *process) {
	kids, _ := proc.Children(p.pid())
	for _, k := range kids {
		if isEngine(k) {
			o.extra = append(o.extra, k)
		}
	}
}

// startSlirp4netns runs slirp4netns as testing.md says users do, with
// the large MTU.
func startSlirp4netns(ctx context.Context, b *bench) (*nsInstance, error) {
	inst, name, err := newNamedNS(ctx, b, "s4n")
	if err != nil {
		return nil, err
	}
	p, err := startProcess(b.logDir, "slirp4netns", []string{"slirp4netns", "--configure", "--mtu=65520", "--ready-fd=3",
		"--netns-type=path", "/run/netns/" + name, "tap0"}, processOpts{readyFD: true})
	if err != nil {
		inst.close()
		return nil, err
	}
	inst.procs = append(inst.procs, p)
	inst.target, inst.bind = "10.0.2.2", "127.0.0.1"
	return inst, nil
}

// startPasta runs pasta in a named namespace, with no port forwarding.
// The namespace gets the host's address and routes; pasta maps the
// default gateway's address to the host's loopback.
func startPasta(ctx context.Context, b *bench) (*nsInstance, error) {
	inst, name, err := newNamedNS(ctx, b, "pasta")
	if err != nil {
		return nil, err
	}
	// The pid file says pasta is ready, so one left by the previous
	// round's pasta must go first.
	pidFile := filepath.Join(b.work, "pasta-"+name+".pid")
	if err := os.Remove(pidFile); err != nil && !os.IsNotExist(err) {
		inst.close()
		return nil, err
	}
	p, err := startProcess(b.logDir, "pasta", []string{"pasta", "--config-net", "-f", "-q", "-t", "none", "-u", "none",
		"-T", "none", "-U", "none", "--runas", "0", "-P", pidFile, "--netns", name}, processOpts{})
	if err != nil {
		inst.close()
		return nil, err
	}
	inst.procs = append(inst.procs, p)
	// pasta writes its pid file once it is initialised.
	if err := p.waitFor("its pid file", readyTimeout, func() bool { return fileExists(pidFile) }); err != nil {
		inst.close()
		return nil, err
	}
	gw, err := defaultGateway(ctx, inst.netns)
	if err != nil {
		inst.close()
		return nil, fmt.Errorf("pasta: %w", err)
	}
	inst.target, inst.bind = gw, "127.0.0.1"
	return inst, nil
}

// startVeth connects a namespace to the host with a veth pair: no
// userspace at all, the ceiling every backend is measured against. The
// host's loopback is not reachable over it, so the servers listen on the
// host's end instead.
func startVeth(ctx context.Context, b *bench) (*nsInstance, error) {
	inst, name, err := newNamedNS(ctx, b, "veth")
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("swb%d", os.Getpid())
	// A /30 per run, picked by pid, away from the 10.0.x ranges the
	// backends and other tests use.
	subnet := fmt.Sprintf("10.254.%d", os.Getpid()%250+1)
	steps := [][]string{
		{"ip", "link", "add", host, "mtu", "65520", "type", "veth", "peer", "name", "eth0", "mtu", "65520", "netns", name},
		{"ip", "addr", "add", subnet + ".1/30", "dev", host},
		{"ip", "link", "set", host, "up"},
		{"ip", "-n", name, "addr", "add", subnet + ".2/30", "dev", "eth0"},
		{"ip", "-n", name, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if _, err := runCommand(ctx, 10*time.Second, s...); err != nil {
			inst.close()
			return nil, fmt.Errorf("veth: %w", err)
		}
	}
	// Deleting the namespace takes its end of the pair, and with it the
	// host's end.
	inst.target, inst.bind = subnet+".1", subnet+".1"
	return inst, nil
}

// newNamedNS creates /run/netns/swb-PID-SUFFIX with its loopback up.
func newNamedNS(ctx context.Context, b *bench, suffix string) (*nsInstance, string, error) {
	name := fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), suffix)
	if _, err := runCommand(ctx, 10*time.Second, "ip", "netns", "add", name); err != nil {
		return nil, "", err
	}
	inst := &nsInstance{netns: "/run/netns/" + name}
	inst.cleanup = append(inst.cleanup, func() {
		// Not ctx: cleanup must run after an interrupt too.
		runCommand(context.Background(), 10*time.Second, "ip", "netns", "del", name)
	})
	if _, err := runCommand(ctx, 10*time.Second, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		inst.close()
		return nil, "", err
	}
	return inst, name, nil
}

// removeStaleNamespaces deletes namespaces a killed earlier run left,
// recognised by the prefix and a pid that is no longer running.
func removeStaleNamespaces(ctx context.Context) {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || fileExists(fmt.Sprintf("/proc/%d", pid)) {
			continue
		}
		runCommand(ctx, 10*time.Second, "ip", "netns", "del", e.Name())
	}
}

// defaultGateway reads the namespace's IPv4 default gateway.
func defaultGateway(ctx context.Context, netns string) (string, error) {
	out, err := runCommand(ctx, 10*time.Second, "nsenter", "--net="+netns, "--", "ip", "-j", "-4", "route", "show", "default")
	if err != nil {
		return "", err
	}
	return parseDefaultGateway(out)
}

// parseDefaultGateway reads `ip -j route show default`.
func parseDefaultGateway(out string) (string, error) {
	var routes []struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return "", fmt.Errorf("parsing routes %q: %w", out, err)
	}
	for _, r := range routes {
		if r.Gateway != "" {
			return r.Gateway, nil
		}
	}
	return "", errors.New("no IPv4 default gateway in the namespace")
}

// vmInstance is a running VM backend: the QEMU arguments that connect a
// guest to it.
type vmInstance struct {
	netdev []string
	env    []string // for QEMU, beside the benchmark's own
	owned
}

type vmBackend struct {
	name  string
	note  string
	start func(ctx context.Context, b *bench, dir string) (*vmInstance, error)
}

func vmBackends() []vmBackend {
	return []vmBackend{
		{report.Slipway, "serve, -netdev stream", startSlipwayServe},
		{report.Passt, "-netdev stream, MTU 65520", startPasst},
		{report.QEMUUser, "libslirp, MTU 1500", startQEMUUser},
		{report.QEMUUserSlipway, "slipway's libslirp.so.0, core in QEMU (SLIPWAY_LIBSLIRP=inproc), MTU 1500", startQEMUUserSlipway("inproc")},
		{report.QEMUUserSlipwayProcess, "slipway's libslirp.so.0, core in its own process (SLIPWAY_LIBSLIRP=process), MTU 1500", startQEMUUserSlipway("process")},
		{report.QEMUUserSlipwayBig, "slipway's libslirp.so.0 in its default shape (process), MTU 65520 from SLIPWAY_CONFIG", startQEMUUserSlipwayBig},
		{report.SlipwayVhost, "serve --listen vhost-user:, guest memory a shared memfd", startSlipwayVhost},
		{report.PasstVhost, "--vhost-user, MTU 65520, guest memory a shared memfd", startPasstVhost},
	}
}

// vhostNetdev connects QEMU to a vhost-user back-end the way a user
// does: guest memory in a shared memfd of -m's size, INTx interrupts
// (QEMU 7.2 under TCG crashes setting up MSI-X for vhost-user).
func vhostNetdev(sock string) []string {
	return []string{
		"-object", "memory-backend-memfd,id=mem,size=" + vmMemory + ",share=on", "-numa", "node,memdev=mem",
		"-chardev", "socket,id=c0,path=" + sock,
		"-netdev", "vhost-user,id=n0,chardev=c0",
		"-device", "virtio-net-pci,netdev=n0,vectors=0,rx_queue_size=1024,tx_queue_size=1024",
	}
}

func startSlipwayVhost(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	sock := filepath.Join(dir, "slipway.vhost")
	p, err := startProcess(b.logDir, "slipway-vhost", []string{b.slipway, "serve", "--ready-fd", "3", "--log-level", "warn",
		"--listen", "vhost-user:" + sock}, processOpts{readyFD: true})
	if err != nil {
		return nil, err
	}
	inst := &vmInstance{netdev: vhostNetdev(sock), owned: owned{procs: []*process{p}}}
	inst.addEngine(p)
	return inst, nil
}

// startPasstVhost runs the passt binary -passt names (Debian 12's has no
// vhost-user) as a vhost-user back-end.
func startPasstVhost(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	// Debian 12's passt predates --vhost-user and answers it with its
	// whole usage text: say what is missing in one line instead.
	if out, _ := exec.CommandContext(ctx, b.opts.passt, "--help").CombinedOutput(); !strings.Contains(string(out), "vhost-user") {
		return nil, fmt.Errorf("%s has no --vhost-user (Debian 12's passt is too old): set PASST to a newer passt", b.opts.passt)
	}
	sock, err := passtSocket(dir)
	if err != nil {
		return nil, err
	}
	p, err := startProcess(b.logDir, "passt-vhost", []string{b.opts.passt, "-f", "-q", "--vhost-user", "-s", sock}, processOpts{})
	if err != nil {
		return nil, err
	}
	inst := &vmInstance{netdev: vhostNetdev(sock), owned: owned{procs: []*process{p}}}
	if err := p.waitFor("its socket", readyTimeout, func() bool { return fileExists(sock) }); err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

// passtSocket makes a directory passt can bind its socket in after it
// dropped to nobody.
func passtSocket(dir string) (string, error) {
	sockDir := filepath.Join(dir, "passt")
	if err := os.MkdirAll(sockDir, 0o777); err != nil {
		return "", err
	}
	if err := os.Chmod(sockDir, 0o777); err != nil { // despite the umask
		return "", err
	}
	return filepath.Join(sockDir, "passt.sock"), nil
}

// streamNetdev is how a user connects QEMU to a stream socket.
func streamNetdev(sock string) []string {
	return []string{
		"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
		"-device", "virtio-net-pci,netdev=n0",
	}
}

func startSlipwayServe(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	sock := filepath.Join(dir, "slipway.sock")
	p, err := startProcess(b.logDir, "slipway-serve", []string{b.slipway, "serve", "--ready-fd", "3", "--log-level", "warn",
		"--listen", "stream:unix:" + sock}, processOpts{readyFD: true})
	if err != nil {
		return nil, err
	}
	inst := &vmInstance{netdev: streamNetdev(sock), owned: owned{procs: []*process{p}}}
	inst.addEngine(p)
	return inst, nil
}

// startPasst runs passt in the foreground with the large MTU current
// passt versions default to (the Debian 2023 build sends none). It drops
// to nobody before it binds its socket, so the socket's directory is
// world-writable.
func startPasst(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	sock, err := passtSocket(dir)
	if err != nil {
		return nil, err
	}
	p, err := startProcess(b.logDir, "passt", []string{b.opts.passt, "-f", "-q", "--mtu", "65520", "-s", sock}, processOpts{})
	if err != nil {
		return nil, err
	}
	inst := &vmInstance{netdev: streamNetdev(sock), owned: owned{procs: []*process{p}}}
	if err := p.waitFor("its socket", readyTimeout, func() bool { return fileExists(sock) }); err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

// startQEMUUser is QEMU's built-in libslirp: nothing to start, and its
// cost is inside QEMU, so it reports no resources.
func startQEMUUser(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	return &vmInstance{netdev: []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"}}, nil
}

// startQEMUUserSlipway is QEMU's -netdev user with LD_LIBRARY_PATH at
// slipway's libslirp.so.0 in one shape. Its cost is inside QEMU (or a
// child of it), so it reports no resources.
func startQEMUUserSlipway(shape string) func(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	return func(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
		return &vmInstance{netdev: []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"},
			env: []string{"LD_LIBRARY_PATH=" + b.libslirp, "SLIPWAY_LIBSLIRP=" + shape}}, nil
	}
}

// startQEMUUserSlipwayBig is -netdev user on the library with the MTU
// a user opts into through SLIPWAY_CONFIG (QEMU passes none).
func startQEMUUserSlipwayBig(ctx context.Context, b *bench, dir string) (*vmInstance, error) {
	cfg := filepath.Join(dir, "slipway-libslirp.yaml")
	if err := os.WriteFile(cfg, []byte("mtu: 65520\n"), 0o644); err != nil {
		return nil, fmt.Errorf("libslirp config: %w", err)
	}
	vm, err := startQEMUUserSlipway("process")(ctx, b, dir)
	if vm != nil {
		vm.env = append(vm.env, "SLIPWAY_CONFIG="+cfg)
	}
	return vm, err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

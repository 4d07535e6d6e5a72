package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/slipway-net/slipway/bench/internal/proc"
	"github.com/slipway-net/slipway/bench/internal/report"
	"github.com/slipway-net/slipway/test/vmtest"
)

const mib = 1024.0

// settle is how long a fresh backend idles before its resident memory
// is read, so start-up allocations have landed.
const settle = time.Second

// selectedTests are the tests the options ask for, in the standard order.
func (b *bench) selectedTests() []testDef {
	var ts []testDef
	for _, t := range allTests() {
		if want(b.opts.tests, t.name) {
			ts = append(ts, t)
		}
	}
	return ts
}

// rotate returns items shifted by round, so every backend runs in every
// position over the rounds and none always follows the same neighbour.
func rotate[T any](items []T, round int) []T {
	if len(items) == 0 {
		return nil
	}
	k := round % len(items)
	return append(append([]T(nil), items[k:]...), items[:k]...)
}

// runNS runs the namespace rounds.
func (b *bench) runNS(ctx context.Context) {
	var backends []nsBackend
	g := report.Group{Key: report.GroupNS, Title: "Network namespaces (the Linux kernel in a namespace is the guest)",
		Guest: "ns", Notes: map[string]string{}}
	for _, be := range nsBackends() {
		if want(b.opts.backends, be.name) {
			backends = append(backends, be)
			g.Backends = append(g.Backends, be.name)
			if be.note != "" {
				g.Notes[be.name] = be.note
			}
		}
	}
	if len(backends) == 0 {
		return
	}
	b.res.Groups = append(b.res.Groups, g)
	b.interleave(ctx, "namespace", g.Backends, func(round, i int) error { return b.nsRound(ctx, round, backends[i]) })
}

// interleave runs every backend once per round, in a rotated order.
func (b *bench) interleave(ctx context.Context, part string, names []string, run func(round, i int) error) {
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	for round := 1; round <= b.opts.rounds; round++ {
		for _, i := range rotate(order, round-1) {
			if ctx.Err() != nil {
				return
			}
			b.logf("%s round %d/%d: %s", part, round, b.opts.rounds, names[i])
			if err := run(round, i); err != nil {
				b.fail("round %d, %s, %s: %v", round, part, names[i], err)
			}
		}
	}
}

// nsRound starts one backend, runs every test through it and stops it.
func (b *bench) nsRound(ctx context.Context, round int, be nsBackend) error {
	inst, err := be.start(ctx, b)
	if err != nil {
		return err
	}
	defer inst.close()
	meter := b.newMeter(report.GroupNS, be.name, round, inst.pids())
	srv, err := startServers(b, inst.bind)
	if err != nil {
		return err
	}
	defer srv.close()
	for _, t := range b.selectedTests() {
		if ctx.Err() != nil {
			return nil
		}
		meter.begin()
		m, err := runNSTest(ctx, t, inst, srv.ports, b.opts.settings)
		meter.end(t.name, m)
		b.record(report.GroupNS, be.name, round, t.name, m, err)
	}
	meter.finish()
	return nil
}

// record adds a test's values to the results, or its failure.
func (b *bench) record(group, backend string, round int, test string, m measurement, err error) {
	if err != nil {
		b.fail("round %d, %s, %s, %s: %v", round, group, backend, test, err)
		return
	}
	// Every value the test yields (its metric, and a UDP test's loss),
	// the test's own metric first.
	keys := slices.DeleteFunc(slices.Sorted(maps.Keys(m.values)), func(k string) bool { return k == test })
	if _, ok := m.values[test]; ok {
		keys = append([]string{test}, keys...)
	}
	var parts []string
	for _, k := range keys {
		v := m.values[k]
		b.res.Add(group, backend, round, k, v)
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, v))
	}
	if m.warning != "" {
		b.res.Failures = append(b.res.Failures, fmt.Sprintf("round %d, %s, %s, %s (kept): %s", round, group, backend, test, m.warning))
	}
	b.logf("  %s", strings.Join(parts, " "))
}

// meter charges a backend's processes for memory and CPU over a round.
type meter struct {
	b       *bench
	group   string
	backend string
	round   int
	pids    []int
	before  proc.Usage
	ok      bool
	cpu     map[string]time.Duration // CPU used during each test
}

// newMeter records the backend's idle memory, after letting it settle.
// A backend without processes of its own (veth, QEMU's libslirp) is not
// metered.
func (b *bench) newMeter(group, backend string, round int, pids []int) *meter {
	m := &meter{b: b, group: group, backend: backend, round: round, pids: pids, cpu: map[string]time.Duration{}}
	if len(pids) == 0 {
		return m
	}
	time.Sleep(settle)
	if u, err := proc.ReadAll(pids); err == nil {
		b.res.Add(group, backend, round, report.RSSIdle, float64(u.RSSKiB)/mib)
	}
	return m
}

// begin marks the start of a test.
func (m *meter) begin() {
	if len(m.pids) == 0 {
		return
	}
	var err error
	m.before, err = proc.ReadAll(m.pids)
	m.ok = err == nil
}

// snapshot marks the end of a test.
func (m *meter) snapshot(test string) {
	if !m.ok {
		return
	}
	m.ok = false
	if after, err := proc.ReadAll(m.pids); err == nil {
		m.cpu[test] = after.CPU - m.before.CPU
	}
}

// charge records the CPU a throughput test used per GB it moved.
func (m *meter) charge(test string, res measurement) {
	metric := map[string]string{report.TCPOut: report.CPUOut, report.TCPIn: report.CPUIn}[test]
	cpu, ok := m.cpu[test]
	if metric == "" || !ok || res.bytes <= 0 {
		return
	}
	m.b.res.Add(m.group, m.backend, m.round, metric, cpu.Seconds()/(float64(res.bytes)/1e9))
}

// end is snapshot and charge, for a test whose result is at hand.
func (m *meter) end(test string, res measurement) {
	m.snapshot(test)
	m.charge(test, res)
}

// finish records the round's peak memory.
func (m *meter) finish() {
	if len(m.pids) == 0 {
		return
	}
	if u, err := proc.ReadAll(m.pids); err == nil {
		m.b.res.Add(m.group, m.backend, m.round, report.RSSPeak, float64(u.PeakRSSKiB)/mib)
	}
}

// vmMemory is the guest's memory (-m, and the vhost-user rows' memfd).
const vmMemory = "512M"

// vmTimeout bounds one VM run: boot (about 5 to 10 s under TCG on a busy
// machine) plus every test with its start-up.
func (b *bench) vmTimeout() time.Duration {
	n := time.Duration(len(b.selectedTests()))
	return 90*time.Second + n*(b.opts.settings.duration+30*time.Second)
}

// runVMRounds runs the VM rounds.
func (b *bench) runVMRounds(ctx context.Context, guest vmtest.Guest, files map[string][]byte) {
	var backends []vmBackend
	g := report.Group{Key: report.GroupVM, Title: "VMs (a small Linux guest under QEMU TCG, one emulated CPU)",
		Guest: "VM", Notes: map[string]string{}}
	for _, be := range vmBackends() {
		if want(b.opts.backends, be.name) {
			backends = append(backends, be)
			g.Backends = append(g.Backends, be.name)
			g.Notes[be.name] = be.note
		}
	}
	if len(backends) == 0 {
		return
	}
	b.res.Groups = append(b.res.Groups, g)
	b.interleave(ctx, "VM", g.Backends, func(round, i int) error {
		return b.vmRound(ctx, round, backends[i], guest, files)
	})
}

// vmRound boots the guest on one backend; the guest runs every test
// against the host's servers while the host meters the backend between
// the guest's markers.
func (b *bench) vmRound(ctx context.Context, round int, be vmBackend, guest vmtest.Guest, files map[string][]byte) error {
	dir := fmt.Sprintf("%s/vm-%d-%s", b.work, round, be.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	inst, err := be.start(ctx, b, dir)
	if err != nil {
		return err
	}
	defer inst.close()
	meter := b.newMeter(report.GroupVM, be.name, round, inst.pids())
	srv, err := startServers(b, "127.0.0.1")
	if err != nil {
		return err
	}
	defer srv.close()
	tests := b.selectedTests()
	vm, err := vmtest.Boot(guest, vmtest.Options{
		Netdev:  inst.netdev,
		Env:     inst.env,
		Script:  guestScript(tests, srv.ports, b.opts.settings),
		Files:   files,
		Memory:  vmMemory,
		Timeout: b.vmTimeout(),
	}, dir)
	if err != nil {
		return err
	}
	defer vm.Kill()
	stopOnCancel := context.AfterFunc(ctx, vm.Kill)
	defer stopOnCancel()

	// Meter each test between its markers; the outputs come after.
	perTest := b.vmTimeout()
	for _, t := range tests {
		if _, err := vm.WaitFor(markBegin+t.name, perTest); err != nil {
			return fmt.Errorf("%s: %w; console:\n%s", t.name, err, tailText(vm.Console()))
		}
		meter.begin()
		if _, err := vm.WaitFor(markEnd+t.name, perTest); err != nil {
			return fmt.Errorf("%s: %w; console:\n%s", t.name, err, tailText(vm.Console()))
		}
		// The CPU sample must be taken now; the bytes come with the
		// output, below.
		meter.snapshot(t.name)
	}
	res, err := vm.Wait()
	if err != nil {
		return fmt.Errorf("%w; console:\n%s", err, tailText(res.Console))
	}
	if gw := consoleGateway(res.Console); gw == "" {
		return fmt.Errorf("the guest got no default gateway (DHCP failed?); console:\n%s", tailText(res.Console))
	}
	for _, t := range tests {
		out, ok := consoleSection(res.Console, t.name)
		if !ok {
			b.record(report.GroupVM, be.name, round, t.name, measurement{}, fmt.Errorf("no output on the console"))
			continue
		}
		m, err := t.parse(out)
		meter.charge(t.name, m)
		b.record(report.GroupVM, be.name, round, t.name, m, err)
	}
	meter.finish()
	return nil
}

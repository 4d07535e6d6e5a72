// Command bench is slipway's benchmark (issue 6): slipway against
// slirp4netns, pasta and a veth pair for network namespaces, against
// passt and QEMU's -netdev user for VMs, and slipway alone with up to
// 10,000 concurrent flows. Backends run interleaved over several rounds;
// the report gives medians with min–max and slipway's ratio to each.
//
// It is a module of its own, so that its chart library is no dependency of
// slipway's; run it inside bench/ (make bench does):
//
//	go run . [-rounds 3] [-only ns,vm,scale] [-backends slipway,veth] [-tests tcp_out,latency]
//	go run . -render results/latest.json
//
// It needs root (namespaces, veth pairs) and writes bench/results/latest.md,
// latest.json and latest.png. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/bench/internal/report"
	"github.com/slipway-net/slipway/test/vmtest"
)

// options are the command line.
type options struct {
	rounds        int
	only          []string // ns, vm, scale
	backends      []string // empty: all
	tests         []string // empty: all
	settings      settings
	scaleFlows    []int
	scaleDuration time.Duration
	scaleSize     int
	out           string
	command       string
	render        string
	keepWork      bool
	passt         string // the passt binary
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var only, backends, tests, flows string
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; every backend runs once per round, interleaved")
	fs.StringVar(&only, "only", "ns,vm,scale", "parts to run: ns (namespaces), vm (QEMU guests), scale (many flows)")
	fs.StringVar(&backends, "backends", "", "backends to run (default all): slipway,slipway-nosandbox,slipway-strict,slipway-1q,slirp4netns,pasta,veth,passt,qemu-user,slipway-vhost,passt-vhost,qemu-user-slipway,qemu-user-slipway-process,qemu-user-slipway-65520")
	fs.StringVar(&tests, "tests", "", "tests to run (default all): tcp_out,tcp_in,latency,conn_rate,udp,udp_in")
	fs.DurationVar(&o.settings.duration, "duration", 5*time.Second, "duration of each timed test")
	fs.StringVar(&o.settings.udpRate, "udp-rate", "1G", "offered rate of the UDP tests, both ways (iperf3 -b; 0 is as fast as the sender can)")
	fs.IntVar(&o.settings.wrkConns, "wrk-connections", 16, "wrk's concurrent connections in the connection-rate test")
	fs.StringVar(&flows, "scale-flows", "1,100,1000,10000", "flow counts of the scale runs")
	fs.DurationVar(&o.scaleDuration, "scale-duration", 5*time.Second, "load phase of each scale run")
	fs.IntVar(&o.scaleSize, "scale-size", 16384, "response size in the scale runs (bytes)")
	fs.StringVar(&o.out, "out", "", "directory for latest.md, latest.json and latest.png (default: results/ in the bench module)")
	fs.StringVar(&o.command, "command", "", "the command line to name in the report (default: this one)")
	fs.StringVar(&o.render, "render", "", "only re-render the report from this results JSON")
	fs.StringVar(&o.passt, "passt", envOr("PASST", "passt"), "the passt binary ($PASST; passt-vhost needs one with --vhost-user, newer than Debian 12's)")
	fs.BoolVar(&o.keepWork, "keep", false, "keep the work directory (logs of every helper process)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds %d: need at least 1", o.rounds)
	}
	if o.settings.duration < time.Second {
		return o, fmt.Errorf("-duration %v: need at least 1s", o.settings.duration)
	}
	var err error
	if o.only, err = pickList("-only", only, []string{"ns", "vm", "scale"}); err != nil {
		return o, err
	}
	var allBackends []string
	for _, b := range nsBackends() {
		allBackends = append(allBackends, b.name)
	}
	for _, b := range vmBackends() {
		allBackends = append(allBackends, b.name)
	}
	if o.backends, err = pickList("-backends", backends, allBackends); err != nil {
		return o, err
	}
	var testNames []string
	for _, t := range allTests() {
		testNames = append(testNames, t.name)
	}
	if o.tests, err = pickList("-tests", tests, testNames); err != nil {
		return o, err
	}
	for _, f := range splitList(flows) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return o, fmt.Errorf("-scale-flows: %q is not a positive number", f)
		}
		o.scaleFlows = append(o.scaleFlows, n)
	}
	if o.command == "" {
		o.command = strings.TrimSpace("go run . " + strings.Join(args, " "))
	}
	return o, nil
}

// pickList splits a comma list and checks every item is known.
func pickList(flagName, list string, known []string) ([]string, error) {
	items := splitList(list)
	for _, it := range items {
		if !slices.Contains(known, it) {
			return nil, fmt.Errorf("%s: unknown %q (known: %s)", flagName, it, strings.Join(known, ","))
		}
	}
	return items, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// envOr is the environment variable's value, or def.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// want reports whether a list option selects item; empty selects all.
func want(list []string, item string) bool { return len(list) == 0 || slices.Contains(list, item) }

// bench is one benchmark run.
type bench struct {
	opts     options
	root     string // the slipway tree benchmarked
	benchDir string // this module's directory
	work     string // temporary files, helper logs
	logDir   string
	slipway  string // binaries built from this tree
	flowld   string
	libslirp string // the directory of slipway's libslirp.so.0
	res      *report.Results
	log      io.Writer
	started  time.Time
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "bench:", err)
		}
		return 2
	}
	if o.render != "" {
		r, err := report.Load(o.render)
		if err == nil {
			err = writeReport(&r, filepath.Dir(o.render), strings.TrimSuffix(filepath.Base(o.render), ".json"), stdout)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := benchmark(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func benchmark(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces and veth pairs (run `sudo make bench`)")
	}
	benchDir, root, err := moduleDirs(ctx)
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(benchDir, "results")
	}
	if err := ensureTools(ctx, root, o, stderr); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "slipway-bench-")
	if err != nil {
		return err
	}
	// passt, which drops to nobody, must reach its socket in here.
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	b := &bench{opts: o, root: root, benchDir: benchDir, work: work, logDir: filepath.Join(work, "logs"), log: stderr, started: time.Now()}
	defer func() {
		if o.keepWork {
			b.logf("work directory kept: %s", work)
			return
		}
		os.RemoveAll(work)
	}()
	if err := os.Mkdir(b.logDir, 0o755); err != nil {
		return err
	}
	removeStaleNamespaces(ctx)
	if err := b.build(ctx); err != nil {
		return err
	}
	b.res = &report.Results{
		Date: time.Now(), Machine: machine(), Command: o.command, Rounds: o.rounds,
		TestSeconds: o.settings.duration.Seconds(), Versions: versions(ctx, root, o.passt),
	}

	if want(o.only, "ns") {
		b.runNS(ctx)
	}
	if want(o.only, "vm") && ctx.Err() == nil {
		if err := b.runVM(ctx); err != nil {
			b.fail("VM benchmark: %v", err)
		}
	}
	if want(o.only, "scale") && ctx.Err() == nil && want(o.backends, report.Slipway) {
		b.runScale(ctx)
	}
	if ctx.Err() != nil {
		b.fail("interrupted: %v", context.Cause(ctx))
	}
	b.res.Elapsed = time.Since(b.started).Seconds()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	// A dated copy of the raw results keeps history; latest.* is what
	// the README shows.
	if err := b.res.Save(filepath.Join(o.out, b.res.Date.UTC().Format("20060102-150405")+".json")); err != nil {
		return err
	}
	if err := writeReport(b.res, o.out, "latest", stdout); err != nil {
		return err
	}
	b.logf("wrote %s", filepath.Join(o.out, "latest.md"))
	return ctx.Err()
}

// writeReport writes NAME.json, NAME.md and NAME.png into dir and prints
// the markdown.
func writeReport(r *report.Results, dir, name string, stdout io.Writer) error {
	if err := r.Save(filepath.Join(dir, name+".json")); err != nil {
		return err
	}
	png, err := os.Create(filepath.Join(dir, name+".png"))
	if err != nil {
		return err
	}
	chartErr := report.Chart(png, r)
	if err := png.Close(); chartErr == nil {
		chartErr = err
	}
	chart := name + ".png"
	if chartErr != nil {
		chart = ""
		fmt.Fprintln(os.Stderr, "bench: no chart:", chartErr)
	}
	md, err := os.Create(filepath.Join(dir, name+".md"))
	if err != nil {
		return err
	}
	if err := report.Markdown(io.MultiWriter(md, stdout), r, chart); err != nil {
		md.Close()
		return err
	}
	return md.Close()
}

// logf prints progress with the time since the start.
func (b *bench) logf(format string, args ...any) {
	el := time.Since(b.started).Round(time.Second)
	fmt.Fprintf(b.log, "[%s] %s\n", el, fmt.Sprintf(format, args...))
}

// fail records a failed measurement in the report and the log.
func (b *bench) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.res.Failures = append(b.res.Failures, msg)
	b.logf("FAILED: %s", msg)
}

// build compiles slipway and flowload from this tree, so the numbers are
// always those of the code checked out. Each is built in its own module.
func (b *bench) build(ctx context.Context) error {
	b.slipway = filepath.Join(b.work, "slipway")
	b.flowld = filepath.Join(b.work, "flowload")
	for _, t := range [][3]string{{b.slipway, b.root, "./cmd/slipway"}, {b.flowld, b.benchDir, "./flowload"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", t[0], t[2])
		// slipway as shipped: without cgo (its sandbox needs that).
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = t[1]
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s in %s: %w\n%s", t[2], t[1], err, out)
		}
	}
	// slipway's libslirp.so.0 and what it loads, for the qemu-user-slipway rows.
	b.libslirp = filepath.Join(b.work, "libslirp")
	cmd := exec.CommandContext(ctx, "make", "-s", "libslirp", "LIBSLIRP_DIR="+b.libslirp)
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make libslirp in %s: %w\n%s", b.root, err, out)
	}
	return nil
}

// The benchmark's module and the one it measures.
const (
	benchModule   = "github.com/slipway-net/slipway/bench"
	slipwayModule = "github.com/slipway-net/slipway"
)

// moduleDirs asks the go command for the bench module's directory (the
// working directory must be inside it) and for slipway's, which
// bench/go.mod replaces with the checkout around it: that is the tree the
// benchmark builds and names in the report.
func moduleDirs(ctx context.Context) (benchDir, slipwayDir string, err error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m (run the benchmark inside bench/): %w", err)
	}
	path, benchDir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if path != benchModule {
		return "", "", fmt.Errorf("the working directory is in module %q: run the benchmark inside bench/ (module %s), e.g. with make bench", path, benchModule)
	}
	out, err = exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", slipwayModule).Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m %s: %w", slipwayModule, err)
	}
	slipwayDir = strings.TrimSpace(string(out))
	if slipwayDir == "" {
		return "", "", fmt.Errorf("go list -m %s: no directory (bench/go.mod must replace it with ../)", slipwayModule)
	}
	return benchDir, slipwayDir, nil
}

// ensureTools installs missing tools from Debian with the project's
// install script (which knows every package), then checks again.
func ensureTools(ctx context.Context, root string, o options, stderr io.Writer) error {
	missing := missingTools(o)
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(stderr, "bench: installing missing tools (%s) with scripts/install-deps.sh\n", strings.Join(missing, ", "))
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "install-deps.sh"))
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing %s: %w", strings.Join(missing, ", "), err)
	}
	if missing := missingTools(o); len(missing) > 0 {
		return fmt.Errorf("still missing after install-deps.sh: %s", strings.Join(missing, ", "))
	}
	return nil
}

func missingTools(o options) []string {
	tools := []string{"go", "ip", "nsenter", "iperf3", "sockperf", "wrk", "ldd"}
	if want(o.only, "ns") {
		if want(o.backends, report.Slirp4netns) {
			tools = append(tools, "slirp4netns")
		}
		if want(o.backends, report.Pasta) {
			tools = append(tools, "pasta")
		}
	}
	if want(o.only, "vm") {
		tools = append(tools, "qemu-system-x86_64")
		if want(o.backends, report.Passt) || want(o.backends, report.PasstVhost) {
			tools = append(tools, o.passt)
		}
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return missing
}

// runVM prepares the guest once, then runs the VM rounds.
func (b *bench) runVM(ctx context.Context) error {
	b.logf("building the VM guest (test/guest/build.sh; cached after the first run)")
	guest, err := vmtest.BuildGuest()
	if err != nil {
		return err
	}
	files, err := wrkFiles()
	if err != nil {
		return err
	}
	b.runVMRounds(ctx, guest, files)
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/broker"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/internal/policy"
	"github.com/slipway-net/slipway/internal/sandbox"
	"github.com/slipway-net/slipway/internal/statefile"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/services/dns"
)

// engineJob is what a mode's launcher has opened for its engine: the
// spec, the descriptors in the spec's order, the --connect endpoints to
// dial on request, and what to clean up on the host at the end.
type engineJob struct {
	spec     engineSpec
	files    []*os.File
	connects []endpoint.Spec
	cleanup  []func()
	// log is --log-file, if given; logOut, the engine's stderr, is a
	// descriptor of it.
	log    *logFile
	logOut *os.File
	// notify, if set, tells a service manager of serve's state.
	notify *serviceNotify
	// mayListen, if set, names the only host ports the launcher binds
	// for the engine (pasta's: those its plan forwards); without it, any
	// (the API publishes ports at run time).
	mayListen func(config.Proto, netip.AddrPort) bool
	// targets are host destinations a strict engine may have sockets to
	// beyond the policy's: pasta's -T and -U targets, fixed at start.
	targets []hostTarget
}

// hostTarget is a protocol and a host destination.
type hostTarget struct {
	proto config.Proto
	addr  netip.AddrPort
}

// close releases what the launcher still holds and removes the socket
// files it made; the engine (if started) has its own descriptors.
func (j *engineJob) close() {
	for _, f := range j.files {
		f.Close()
	}
	j.files = nil
	for _, c := range j.cleanup {
		c()
	}
	j.cleanup = nil
}

// newJob starts a job for cfg: it reads the host's resolvers and opens
// the API socket and the pcap file, the files every mode may have; lf is
// the --log-file configLogger opened (nil without).
func newJob(cfg config.Config, lf *logFile) (*engineJob, error) {
	// The confined engine opens no file, and TFTP's files are not yet
	// handed to it by the launcher: say so rather than have the filter
	// kill the engine when the TFTP service opens its root.
	if cfg.TFTPRoot != "" && cfg.Sandbox != config.SandboxOff && runtime.GOOS == "linux" {
		return nil, usageError{fmt.Errorf("tftp-root %s: the sandboxed engine cannot serve files yet; run with --sandbox off to serve TFTP", cfg.TFTPRoot)}
	}
	j := &engineJob{spec: engineSpec{Config: cfg, Resolv: network.ReadResolv()}, log: lf}
	if lf != nil {
		f, err := lf.Dup()
		if err != nil {
			return nil, err
		}
		j.logOut = f
		j.cleanup = append(j.cleanup, func() { f.Close() })
	}
	removePID, err := writePIDFile(cfg.PIDFile)
	if err != nil {
		j.close()
		return nil, err
	}
	j.cleanup = append(j.cleanup, removePID)
	if cfg.APISocket != "" {
		ln, err := control.ListenSocket(cfg.APISocket)
		if err != nil {
			j.close()
			return nil, err
		}
		f, err := ln.File()
		ln.Close()
		if err != nil {
			os.Remove(cfg.APISocket)
			j.close()
			return nil, fmt.Errorf("--api-socket %s: %w", cfg.APISocket, err)
		}
		self, _ := os.Lstat(cfg.APISocket)
		j.cleanup = append(j.cleanup, func() {
			if cur, err := os.Lstat(cfg.APISocket); err == nil && self != nil && os.SameFile(cur, self) {
				os.Remove(cfg.APISocket)
			}
		})
		j.spec.API = true
		j.files = append(j.files, f)
	}
	if cfg.PCAP != "" {
		f, err := os.OpenFile(cfg.PCAP, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			j.close()
			return nil, fmt.Errorf("--pcap: %w", err)
		}
		j.spec.PCAP = true
		j.files = append(j.files, f)
	}
	return j, nil
}

// addLink hands a link's descriptor over.
func (j *engineJob) addLink(ls linkSpec, f *os.File) {
	j.spec.Links = append(j.spec.Links, ls)
	j.files = append(j.files, f)
}

// engineRun is a running engine, in a process of its own or in this one.
type engineRun struct {
	ready chan struct{}
	done  chan error // the engine's end, once
	stop  func()
	// reopenLog opens --log-file (logPath) again, for the launcher and
	// the engine (nil without --log-file).
	reopenLog func() error
	logPath   string
}

// onHangup is SIGHUP's part in a launcher's signal loop: with --log-file
// it reopens the file (logrotate renamed it) and reports true; without,
// false, and the caller takes SIGHUP as before.
func (e *engineRun) onHangup(log *slog.Logger) bool {
	if e.reopenLog == nil {
		return false
	}
	if err := e.reopenLog(); err != nil {
		log.Error("SIGHUP", "err", err)
		return true
	}
	log.Info("log file reopened", "signal", "hangup", "file", e.logPath)
	return true
}

// end stops the engine and returns how it ended.
func (e *engineRun) end() error {
	e.stop()
	return <-e.done
}

// awaitReady returns once the engine serves, or with why it ended first.
func (e *engineRun) awaitReady() error {
	select {
	case <-e.ready:
		return nil
	case err := <-e.done:
		e.done <- err
		if err == nil {
			err = errors.New("the engine exited before serving")
		}
		return err
	}
}

// startEngine starts the job's engine; the job's descriptors are the
// engine's from then on. With the sandbox on it must be called on the
// goroutine that waits for the engine (the main one): the engine dies
// with the thread that started it, which stays locked.
func startEngine(j *engineJob, log *slog.Logger) (*engineRun, error) {
	e := &engineRun{ready: make(chan struct{}), done: make(chan error, 1)}
	if j.log != nil {
		e.logPath = j.log.path
	}
	markReady := sync.OnceFunc(func() { close(e.ready) })
	files := j.files
	j.files = nil
	sandboxOff := j.spec.Config.Sandbox == config.SandboxOff
	enter, here, err := func() {}, sandboxOff, error(nil)
	if sandboxOff {
		log.Warn("sandbox off (--sandbox=off): the engine runs unconfined, with every privilege of this process")
	} else {
		// Where no confined engine process exists (platform_other.go)
		// the engine runs here, and says what it lacks as it starts.
		enter, here, err = inProcessEngine(&j.spec, log)
	}
	if err != nil {
		closeAll(files)
		return nil, err
	}
	if here {
		if j.log != nil {
			// One process, one logger: the launcher's.
			e.reopenLog = j.log.Reopen
		}
		stop := make(chan struct{})
		e.stop = sync.OnceFunc(func() { close(stop) })
		go func() {
			e.done <- runEngine(&j.spec, files, localSide{j.connects}, enter, func() error { markReady(); return nil }, stop, log)
		}()
		return e, nil
	}
	j.spec.Seccomp = sandbox.ActionFromEnv()
	// A datagram endpoint answers its VMs at their socket paths, which
	// the launcher's uid may write to and nobody may not.
	keepUID := j.spec.KeepRoot
	j.spec.HostUID, j.spec.HostUIDWhy = sandbox.HostUID(keepUID)
	pr, pw, err := os.Pipe()
	if err != nil {
		closeAll(files)
		return nil, fmt.Errorf("engine spec pipe: %w", err)
	}
	lcs, efs, err := broker.Pairs(broker.Conns)
	if err != nil {
		closeAll(append(files, pr, pw))
		return nil, err
	}
	// The launcher's own messages (a reopened log file) go on a pair of
	// their own.
	push, pushEngine, err := broker.Pair()
	if err != nil {
		closeAll(append(append(files, pr, pw), efs...))
		for _, lc := range lcs {
			lc.Close()
		}
		return nil, err
	}
	closeBroker := func() {
		for _, lc := range lcs {
			lc.Close()
		}
		push.Close()
	}
	engineFiles := append(append(append([]*os.File{pr}, efs...), pushEngine), files...)
	strict := j.spec.Config.Sandbox == config.SandboxStrict
	cmd, err := sandbox.Command(engineFiles, true, strict, keepUID)
	toLog := func(cmd *exec.Cmd) {
		if j.logOut != nil {
			cmd.Stdout, cmd.Stderr = j.logOut, j.logOut
		}
	}
	if err == nil {
		toLog(cmd)
		// Never unlocked: the engine's Pdeathsig follows this thread.
		runtime.LockOSThread()
		err = cmd.Start()
		// Strict mode without its network namespace is not strict: it
		// fails rather than run weaker.
		if err != nil && !strict && sandbox.NamespacesRefused(err) {
			// Where unprivileged user namespaces are not allowed the
			// engine still gets every layer that needs none
			// (Landlock, seccomp, no_new_privs); its report says
			// what is missing.
			log.Warn("the engine's namespaces were refused; starting it without them", "err", err)
			j.spec.KeepRoot = "no mount namespace: user namespaces are not allowed here (" + err.Error() + ")"
			if cmd, err = sandbox.Command(engineFiles, false, false, keepUID); err == nil {
				toLog(cmd)
				err = cmd.Start()
			}
		}
	}
	closeAll(engineFiles)
	if err != nil {
		pw.Close()
		closeBroker()
		return nil, fmt.Errorf("start the engine: %w", err)
	}
	go func() {
		json.NewEncoder(pw).Encode(&j.spec)
		pw.Close()
	}()
	ls := newLauncherSide(j, markReady, cmd.Process.Pid)
	for _, lc := range lcs {
		go broker.Serve(lc, ls, log)
	}
	go func() {
		err := cmd.Wait()
		closeBroker()
		e.done <- engineExit(err)
	}()
	e.stop = func() { cmd.Process.Signal(syscall.SIGTERM) }
	if j.log != nil {
		// The engine opens no file: it gets the new one's descriptor.
		e.reopenLog = func() error {
			if err := j.log.Reopen(); err != nil {
				return err
			}
			f, err := j.log.Dup()
			if err != nil {
				return err
			}
			defer f.Close()
			return broker.SendPush(push, broker.PushLog, f)
		}
	}
	return e, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// engineExit turns the engine's end into the launcher's: its exit status
// (it printed its own error), or the signal that killed it.
func engineExit(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if ws.Signal() == syscall.SIGSYS {
			return fmt.Errorf("the engine was killed by its seccomp filter (a system call outside the allow-list; %s=trap or =log shows which)", sandbox.ActionEnv)
		}
		return fmt.Errorf("the engine was killed by signal %v", ws.Signal())
	}
	return exitError{ee.ExitCode()}
}

// serveEngine runs the job's engine until it ends or a signal comes: it
// reports ready (--ready-fd) once the engine serves, passes SIGINT and
// SIGTERM on as a clean stop, and with --log-file takes SIGHUP to reopen
// it.
func serveEngine(j *engineJob, readyFD int, log *slog.Logger) error {
	defer j.close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if j.log != nil {
		// logrotate's postrotate: reopen --log-file (onHangup).
		signal.Notify(sigs, syscall.SIGHUP)
	}
	defer signal.Stop(sigs)
	e, err := startEngine(j, log)
	if err != nil {
		return err
	}
	if err := e.awaitReady(); err != nil {
		return err
	}
	if err := signalReady(readyFD); err != nil {
		e.end()
		return err
	}
	stopNotify := j.notify.serving()
	defer stopNotify()
	for {
		select {
		case err := <-e.done:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP && e.onHangup(log) {
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			stopNotify()
			return e.end()
		}
	}
}

// launcherSide answers the confined engine's requests (broker.Handler).
// Every request may come from a compromised engine: it gets only what
// the user could have asked for (a published port, a --connect
// endpoint's connection).
type launcherSide struct {
	connects []endpoint.Spec
	ready    func()
	pid      int // the engine's, whose /proc it cannot read itself
	// strict: the engine asks for its outbound sockets, each checked
	// against the start-up policy (rules) or the DNS upstreams.
	strict    bool
	rules     *policy.Rules
	upstreams map[netip.AddrPort]bool
	targets   map[hostTarget]bool
	outbound  netip.Addr
	mayListen func(config.Proto, netip.AddrPort) bool
	// statePath is --state-file, fixed at start: the engine's state
	// requests read and write that file and no other.
	statePath string
}

func newLauncherSide(j *engineJob, ready func(), pid int) *launcherSide {
	cfg := j.spec.Config
	l := &launcherSide{
		connects: j.connects, ready: ready, pid: pid,
		strict:    cfg.Sandbox == config.SandboxStrict,
		rules:     policy.FromConfig(cfg),
		upstreams: map[netip.AddrPort]bool{},
		targets:   map[hostTarget]bool{},
		outbound:  cfg.OutboundAddr,
		mayListen: j.mayListen,
		statePath: cfg.StateFile,
	}
	for _, t := range j.targets {
		l.targets[t] = true
	}
	for _, u := range cfg.DNSUpstreams {
		l.upstreams[u.AddrPort] = true
	}
	if len(cfg.DNSUpstreams) == 0 && j.spec.Resolv != nil {
		for _, u := range j.spec.Resolv.Servers {
			l.upstreams[u] = true
		}
	}
	return l
}

// errNotStrict refuses strict mode's requests from an engine that opens
// its own sockets: it has no reason to ask.
var errNotStrict = errors.New("not in strict mode")

// Connect opens a strict engine's outbound TCP (connecting, not waiting)
// or UDP socket, if the policy lets some guest flow go there, it is a
// DNS upstream or one of the job's targets. A compromised engine gets
// nothing else.
func (l *launcherSide) Connect(proto config.Proto, ap netip.AddrPort) (*os.File, error) {
	if !l.strict {
		return nil, errNotStrict
	}
	if !l.upstreams[ap] && !l.targets[hostTarget{proto, ap}] {
		if why := l.rules.HostTarget(proto, ap); why != policy.Allowed {
			return nil, fmt.Errorf("%v %v: %s", proto, ap, why)
		}
	}
	return hostnet.Connect(proto, l.localAddr(ap.Addr()), ap)
}

func (l *launcherSide) localAddr(dst netip.Addr) netip.Addr {
	if l.outbound.IsValid() && l.outbound.Is4() == dst.Unmap().Is4() {
		return l.outbound
	}
	return netip.Addr{}
}

// Ping opens an ICMP echo socket. Its destinations are the engine's to
// choose, packet by packet, out of the launcher's sight: --restrict
// refuses it, and so does host-only mode, which could not keep such a
// socket to the host. The gateway answers pings itself, without one;
// only pings to Map's aliases of the host go unanswered in strict mode.
func (l *launcherSide) Ping(v6 bool) (*os.File, error) {
	if !l.strict {
		return nil, errNotStrict
	}
	if l.rules.Restrict {
		return nil, errors.New("ping: " + string(policy.Restricted))
	}
	if l.rules.HostOnly {
		return nil, errors.New("ping: " + string(policy.HostOnlyMode))
	}
	return hostnet.PingSocket(v6)
}

// Listen binds a host port for the engine: any (the API publishes
// ports at run time), or, where the job says which (mayListen), only
// those.
func (l *launcherSide) Listen(proto config.Proto, ap netip.AddrPort) (*os.File, error) {
	if l.mayListen != nil && !l.mayListen(proto, ap) {
		return nil, fmt.Errorf("listen %s %s: not a port the command line forwards", proto, ap)
	}
	if proto == config.UDP {
		c, err := hostnet.ListenUDP(ap)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.File()
	}
	tl, err := hostnet.ListenTCP(ap)
	if err != nil {
		return nil, err
	}
	defer tl.Close()
	return tl.File()
}

func (l *launcherSide) Dial(i int) (*os.File, error) {
	if i < 0 || i >= len(l.connects) {
		return nil, fmt.Errorf("no --connect endpoint %d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := endpoint.Dial(ctx, l.connects[i])
	if err != nil {
		return nil, err
	}
	defer c.Close()
	f, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, errors.New("connection cannot be handed over")
	}
	return f.File()
}

func (l *launcherSide) Ready() { l.ready() }

// Resolv reads the host's resolv.conf for the engine, which follows it
// (network.Host.ReadResolvers) and cannot read it itself.
func (l *launcherSide) Resolv() ([]netip.AddrPort, error) {
	servers, _, _, err := dns.ReadResolvConf("/etc/resolv.conf")
	if len(servers) > 8 {
		servers = servers[:8] // the answer's size is bounded; resolvers use 3
	}
	return servers, err
}

// errNoStateFile refuses the state requests of an engine that has no
// --state-file.
var errNoStateFile = errors.New("no --state-file")

// StateLoad opens --state-file for the engine to read.
func (l *launcherSide) StateLoad() (*os.File, error) {
	if l.statePath == "" {
		return nil, errNoStateFile
	}
	f, err := os.Open(l.statePath)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("state file %s: not a regular file", l.statePath)
	}
	return f, nil
}

// stateReadTimeout bounds how long the launcher waits for the engine to
// write a state through the pipe.
const stateReadTimeout = 30 * time.Second

// StateSave replaces --state-file by what the engine writes into data, a
// pipe: at most broker.MaxState bytes, read within stateReadTimeout. The
// launcher checks the size, not the content: the engine decodes the file
// at its next start, and refuses a corrupt one there.
func (l *launcherSide) StateSave(data *os.File) error {
	defer data.Close()
	if l.statePath == "" {
		return errNoStateFile
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(data.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return errors.New("state-save: the descriptor is not a pipe")
	}
	// Through the poller, so that the deadline holds.
	fd, err := unix.Dup(int(data.Fd()))
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	r := os.NewFile(uintptr(fd), "state-pipe")
	defer r.Close()
	r.SetReadDeadline(time.Now().Add(stateReadTimeout))
	b, err := io.ReadAll(io.LimitReader(r, broker.MaxState+1))
	if err != nil {
		return fmt.Errorf("state-save: %w", err)
	}
	if len(b) > broker.MaxState {
		return fmt.Errorf("state-save: more than %d bytes", broker.MaxState)
	}
	return statefile.WriteFile(statefile.OS{}, l.statePath, b)
}

// Usage reads the engine's figures from its /proc directory, which the
// engine's empty root and seccomp filter keep it from.
func (l *launcherSide) Usage() (control.ProcessUsage, error) {
	p, err := procfs.NewProc(l.pid)
	if err != nil {
		return control.ProcessUsage{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return control.ProcessUsage{}, err
	}
	u := control.ProcessUsage{
		CPUSeconds:    st.CPUTime(),
		ResidentBytes: float64(st.ResidentMemory()),
		VirtualBytes:  float64(st.VirtualMemory()),
	}
	if t, err := st.StartTime(); err == nil {
		u.StartTimeEpoch = t
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		u.OpenFDs = float64(n)
	}
	if lim, err := p.Limits(); err == nil {
		u.MaxFDs = float64(lim.OpenFiles)
	}
	return u, nil
}

// localSide is the unconfined engine's way to the host: the host itself.
type localSide struct{ connects []endpoint.Spec }

func (localSide) ListenTCP(ap netip.AddrPort) (*net.TCPListener, error) { return hostnet.ListenTCP(ap) }
func (localSide) ListenUDP(ap netip.AddrPort) (*net.UDPConn, error)     { return hostnet.ListenUDP(ap) }
func (localSide) Usage() control.ProcessUsageFunc                       { return nil }
func (s localSide) Dial(ctx context.Context, i int) (net.Conn, error) {
	return endpoint.Dial(ctx, s.connects[i])
}

// Sockets: unconfined, the network opens its own.
func (localSide) Sockets(*network.Host, config.Config) {}

// StateFS: unconfined, the host's file system.
func (localSide) StateFS(string) statefile.FS { return statefile.OS{} }

package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/broker"
	"github.com/slipway-net/slipway/internal/pasta"
	"github.com/slipway-net/slipway/internal/statefile"
	"github.com/slipway-net/slipway/network"
)

// A compromised strict engine asks the launcher directly, over the
// broker socket, for sockets the policy forbids: each is refused, and
// the allowed ones come back.
func TestStrictBrokerRefusesWhatThePolicyForbids(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := netip.MustParseAddrPort(ln.Addr().String())
	upstream := netip.MustParseAddrPort("127.0.0.53:53")

	cfg := config.Default()
	cfg.Sandbox = config.SandboxStrict
	cfg.NoHostLoopback = true
	deny, err := config.ParseEgressDest(config.EgressDeny, "192.0.2.0/24:443")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Egress = []config.EgressRule{deny}
	j := &engineJob{spec: engineSpec{Config: cfg, Resolv: &network.Resolv{Servers: []netip.AddrPort{upstream}}}}
	client := serveBroker(t, newLauncherSide(j, func() {}, 0))
	ask := func(proto config.Proto, ap netip.AddrPort) error {
		f, err := client.Do(broker.Request{Op: broker.OpConnect, Proto: proto, Addr: ap})
		if f != nil {
			f.Close()
		}
		return err
	}
	for _, c := range []struct {
		proto config.Proto
		to    string
	}{
		{config.TCP, "169.254.169.254:80"}, // cloud metadata
		{config.TCP, open.String()},        // host loopback, refused by --no-host-loopback
		{config.UDP, "10.0.2.15:53"},       // inside the guest network
		{config.TCP, "192.0.2.7:443"},      // an egress rule
		{config.UDP, "127.0.0.53:54"},      // the upstream's address, not its port
	} {
		if err := ask(c.proto, netip.MustParseAddrPort(c.to)); !errors.Is(err, broker.ErrRefused) {
			t.Errorf("%s %s: %v, want refused", c.proto, c.to, err)
		}
	}
	if err := ask(config.UDP, upstream); err != nil {
		t.Errorf("the DNS upstream %v: %v", upstream, err)
	}
	if err := ask(config.TCP, netip.MustParseAddrPort("192.0.2.7:80")); err != nil {
		t.Errorf("an allowed destination: %v", err)
	}

	// An engine that is not strict has no reason to ask.
	cfg.Sandbox = config.SandboxOn
	j.spec.Config = cfg
	client = serveBroker(t, newLauncherSide(j, func() {}, 0))
	if _, err := client.Do(broker.Request{Op: broker.OpPing, Proto: broker.ICMP4}); !errors.Is(err, broker.ErrRefused) {
		t.Errorf("ping socket for a default-mode engine: %v, want refused", err)
	}
}

func serveBroker(t *testing.T, h broker.Handler) *broker.Client {
	t.Helper()
	lc, ef, err := broker.Pair()
	if err != nil {
		t.Fatal(err)
	}
	go broker.Serve(lc, h, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { lc.Close() })
	c, err := broker.NewClient(ef)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The confined engine keeps --state-file through its launcher: loaded,
// saved atomically (mode 0600, no temporary file left), loaded back; the
// launcher writes that one file only, and refuses what a compromised
// engine could try: more than broker.MaxState bytes, a descriptor that is
// not a pipe, a state request with no --state-file.
func TestBrokerStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	cfg := config.Default()
	cfg.StateFile = path
	j := &engineJob{spec: engineSpec{Config: cfg}}
	client := serveBroker(t, newLauncherSide(j, func() {}, 0))

	store := statefile.New(newBrokerFS(client, path), path)
	if _, ok, err := store.Load(); ok || err != nil {
		t.Fatalf("Load with no file: %v %v, want nothing and no error", ok, err)
	}
	want := network.State{Version: network.StateVersion, DHCP4: []network.StateLease4{
		{MAC: "52:54:00:00:40:01", Addr: netip.MustParseAddr("10.0.2.15"), Expires: time.Unix(1900000000, 0).UTC()}}}
	if err := store.Save(want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries after a save, want the file alone", len(ents))
	}
	got, ok, err := store.Load()
	if !ok || err != nil || len(got.DHCP4) != 1 || got.DHCP4[0].MAC != want.DHCP4[0].MAC {
		t.Fatalf("Load after Save: %+v %v %v", got, ok, err)
	}
	if err := statefile.New(newBrokerFS(client, path), filepath.Join(dir, "other.json")).Save(want); err == nil {
		t.Error("the engine's FS saved a file that is not its --state-file")
	}

	// A compromised engine, writing on the broker socket itself.
	before, _ := os.ReadFile(path)
	raw := rawBroker(t, newLauncherSide(j, func() {}, 0))
	save := func(fd int, write func()) string {
		t.Helper()
		if _, _, err := raw.WriteMsgUnix(broker.Request{Op: broker.OpStateSave}.Encode(), unix.UnixRights(fd), nil); err != nil {
			t.Fatal(err)
		}
		if write != nil {
			write()
		}
		buf := make([]byte, broker.MaxMessage)
		n, err := raw.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	r, w, _ := os.Pipe()
	ans := save(int(r.Fd()), func() {
		r.Close()
		go func() {
			w.Write(make([]byte, broker.MaxState+4096))
			w.Close()
		}()
	})
	if !strings.Contains(ans, "more than") {
		t.Errorf("a state of more than %d bytes: %s, want refused", broker.MaxState, ans)
	}
	reg, _ := os.Create(filepath.Join(dir, "regular"))
	if ans := save(int(reg.Fd()), nil); !strings.Contains(ans, "not a pipe") {
		t.Errorf("a regular file for state-save: %s, want refused", ans)
	}
	reg.Close()
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("refused saves changed the state file to %q", after)
	}

	j.spec.Config.StateFile = ""
	client = serveBroker(t, newLauncherSide(j, func() {}, 0))
	if _, err := client.StateLoad(); !errors.Is(err, broker.ErrRefused) {
		t.Errorf("state-load with no --state-file: %v, want refused", err)
	}
}

// rawBroker is the engine's end of a broker socket, to write requests on
// as a compromised engine would.
func rawBroker(t *testing.T, h broker.Handler) *net.UnixConn {
	t.Helper()
	lc, ef, err := broker.Pair()
	if err != nil {
		t.Fatal(err)
	}
	go broker.Serve(lc, h, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { lc.Close() })
	c, err := net.FileConn(ef)
	ef.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// A compromised pasta engine asks its launcher for host ports and
// sockets its command line does not name: a listener on a port no -t/-u
// forwards (or on another address, or of the other protocol) is refused,
// and in strict mode a socket to the host's loopback is refused unless it
// is a -T or -U target.
func TestPastaBrokerOnlyWhatThePlanNames(t *testing.T) {
	o, err := pasta.Parse(strings.Fields("--config-net --no-map-gw --ipv4-only -t 127.0.0.1/~1-1023,auto -u none -T 3000 --netns /x"))
	if err != nil {
		t.Fatal(err)
	}
	host := pasta.HostNet{IfName: "eth0", Addr4: netip.MustParsePrefix("192.0.2.2/24"), Gw4: netip.MustParseAddr("192.0.2.1")}
	plan, err := o.Plan(host, 32768)
	if err != nil {
		t.Fatal(err)
	}
	cfg := plan.Config
	cfg.Sandbox = config.SandboxStrict
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(free.Addr().String()).Port()
	free.Close()
	target := netip.MustParseAddrPort("127.0.0.1:3000")
	j := &engineJob{spec: engineSpec{Config: cfg, Resolv: &network.Resolv{}}, mayListen: plan.MayListen}
	client := serveBroker(t, newLauncherSide(j, func() {}, 0))
	for _, c := range []struct {
		proto config.Proto
		ap    netip.AddrPort
	}{
		{config.TCP, netip.AddrPortFrom(netip.IPv4Unspecified(), port)},
		{config.UDP, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		{config.TCP, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 22)}, // excluded
	} {
		f, err := client.Do(broker.Request{Op: broker.OpListen, Proto: c.proto, Addr: c.ap})
		if f != nil {
			f.Close()
		}
		if !errors.Is(err, broker.ErrRefused) {
			t.Errorf("listen %s %s: %v, want refused", c.proto, c.ap, err)
		}
	}
	l, err := client.ListenTCP(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	if err != nil {
		t.Fatalf("listen on a port auto forwards: %v", err)
	}
	l.Close()
	if f, err := client.Do(broker.Request{Op: broker.OpConnect, Proto: config.TCP, Addr: target}); !errors.Is(err, broker.ErrRefused) {
		if f != nil {
			f.Close()
		}
		t.Errorf("strict, no -T target: connect to %v: %v, want refused", target, err)
	}
	j.targets = []hostTarget{{config.TCP, target}}
	client = serveBroker(t, newLauncherSide(j, func() {}, 0))
	f, err := client.Do(broker.Request{Op: broker.OpConnect, Proto: config.TCP, Addr: target})
	if err != nil {
		t.Errorf("strict, the -T target %v: %v", target, err)
	} else {
		f.Close()
	}
	if f, err := client.Do(broker.Request{Op: broker.OpConnect, Proto: config.UDP, Addr: target}); !errors.Is(err, broker.ErrRefused) {
		if f != nil {
			f.Close()
		}
		t.Errorf("strict, the -T target over UDP: %v, want refused", err)
	}
}

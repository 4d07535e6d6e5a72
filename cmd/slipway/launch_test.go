package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/broker"
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

package main

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/bhyve"
)

// completed is the default configuration, as netFlags.resolve leaves it
// when no flag is given.
func completed(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Config{MTU: config.DefaultMTU}
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestApplyBhyveConfig(t *testing.T) {
	for _, c := range []struct {
		name         string
		restrictFlag bool
		mtuFlag      int // 0: --mtu not given
		bc           bhyve.Config
		wantRestrict bool
		wantMTU      int
	}{
		{"closed by default, bhyve's MTU", false, 0, bhyve.Config{}, true, bhyveMTU},
		{"open", false, 0, bhyve.Config{Open: true}, false, bhyveMTU},
		{"--restrict insists", true, 0, bhyve.Config{Open: true}, true, bhyveMTU},
		{"bhyve's mtu", false, 0, bhyve.Config{MTU: 9000}, true, 9000},
		{"bhyve's mtu over --mtu", false, 4000, bhyve.Config{MTU: 9000}, true, 9000},
		{"--mtu over the default", false, 4000, bhyve.Config{}, true, 4000},
		// --mtu given with the default's value still counts as given.
		{"--mtu equal to the default", false, config.DefaultMTU, bhyve.Config{}, true, config.DefaultMTU},
	} {
		cfg := completed(t)
		cfg.Restrict = c.restrictFlag
		if c.mtuFlag != 0 {
			cfg.MTU = c.mtuFlag
		}
		if err := applyBhyveConfig(&cfg, c.bc, c.mtuFlag != 0); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg.Restrict != c.wantRestrict || cfg.MTU != c.wantMTU {
			t.Errorf("%s: restrict %v, MTU %d; want %v, %d", c.name, cfg.Restrict, cfg.MTU, c.wantRestrict, c.wantMTU)
		}
	}
}

// hostfwd rules become published ports after any --publish.
func TestApplyBhyveForwards(t *testing.T) {
	cfg := completed(t)
	cfg.Publish = []config.PublishRule{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}
	bc := bhyve.Config{Open: true, Forwards: []bhyve.Forward{
		{Proto: "tcp", Host: netip.MustParseAddrPort("0.0.0.0:2222"), Guest: netip.AddrPortFrom(netip.Addr{}, 22)},
		{Proto: "udp", Host: netip.MustParseAddrPort("127.0.0.1:5353"), Guest: netip.MustParseAddrPort("10.0.2.20:53")},
	}}
	if err := applyBhyveConfig(&cfg, bc, false); err != nil {
		t.Fatal(err)
	}
	want := []config.PublishRule{
		{Proto: "tcp", HostPort: 8080, GuestPort: 80},
		{Proto: "tcp", HostAddr: netip.MustParseAddr("0.0.0.0"), HostPort: 2222, GuestPort: 22},
		{Proto: "udp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, GuestAddr: netip.MustParseAddr("10.0.2.20"), GuestPort: 53},
	}
	if !reflect.DeepEqual(cfg.Publish, want) {
		t.Errorf("published %v, want %v", cfg.Publish, want)
	}
}

// What bhyve sends is validated like flags, naming the setting.
func TestApplyBhyveConfigInvalid(t *testing.T) {
	for _, c := range []struct {
		bc   bhyve.Config
		flag string
	}{
		{bhyve.Config{MTU: 100}, "mtu"},
		{bhyve.Config{Forwards: []bhyve.Forward{{Proto: "tcp", Host: netip.MustParseAddrPort("0.0.0.0:2222"),
			Guest: netip.MustParseAddrPort("192.0.2.1:22")}}}, "publish"},
	} {
		cfg := completed(t)
		err := applyBhyveConfig(&cfg, c.bc, false)
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Flag != c.flag {
			t.Errorf("%+v: %v, want an error for --%s", c.bc, err, c.flag)
		}
	}
}

func TestBhyveHelperCommandLine(t *testing.T) {
	wantUsage(t, []string{"bhyve-helper"}, "-S FD is required")
	wantUsage(t, []string{"bhyve-helper", "-S", "three"}, `"three"`, "--socket")
	wantUsage(t, []string{"bhyve-helper", "-S", "3", "stray"}, "unknown command", "stray")
}

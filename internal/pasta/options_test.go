package pasta

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The command lines of podman 5 and rootlesskit's pasta driver, exactly
// (../shared/callers.md), parse to what they mean.
func TestParseCallers(t *testing.T) {
	podman := strings.Fields("--config-net -t 8080-8080:80-80 --dns-forward 169.254.1.1 -u none -T none -U none --no-map-gw --quiet --netns /run/user/1000/netns/netns-1 --map-guest-addr 169.254.1.2 --map-host-loopback 169.254.1.2 --pid /tmp/p.pid")
	o, err := Parse(podman)
	if err != nil {
		t.Fatal(err)
	}
	if !o.ConfigNet || !o.NoMapGW || !o.Quiet || o.NetNS != "/run/user/1000/netns/netns-1" || o.PIDFile != "/tmp/p.pid" {
		t.Errorf("podman: %+v", o)
	}
	ip := netip.MustParseAddr
	if !reflect.DeepEqual(o.DNSForward, []netip.Addr{ip("169.254.1.1")}) || !reflect.DeepEqual(o.MapGuestAddr, []netip.Addr{ip("169.254.1.2")}) ||
		!reflect.DeepEqual(o.MapHostLoopback, []netip.Addr{ip("169.254.1.2")}) {
		t.Errorf("podman's addresses: %+v", o)
	}
	if len(o.TCP) != 1 || !reflect.DeepEqual(o.TCP[0].Include, []PortRange{{8080, 8080, 80}}) || !o.UDP[0].None || !o.TCPNS[0].None || !o.UDPNS[0].None {
		t.Errorf("podman's ports: %+v", o)
	}

	rk := strings.Fields("--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --no-map-gw --ipv4-only --tcp-ports=auto --udp-ports=auto --host-lo-to-ns-lo 4242")
	o, err = Parse(rk)
	if err != nil {
		t.Fatal(err)
	}
	if o.PID != 4242 || o.NSIfName != "tap0" || o.MTU != 65520 || o.Prefix4 != 24 || !o.IPv4Only || !o.HostLoToNsLo || !o.Stderr ||
		!reflect.DeepEqual(o.Addresses, []netip.Addr{ip("10.0.2.100")}) || !reflect.DeepEqual(o.Gateways, []netip.Addr{ip("10.0.2.2")}) ||
		!o.TCP[0].Auto || !o.UDP[0].Auto {
		t.Errorf("rootlesskit: %+v", o)
	}
	o, err = Parse(strings.Fields("--config-net --userns=/proc/7/ns/user --netns=/run/user/1/rk/netns"))
	if err != nil || o.UserNS != "/proc/7/ns/user" || o.NetNS != "/run/user/1/rk/netns" {
		t.Errorf("rootlesskit, detached netns: %+v, %v", o, err)
	}
	for _, probe := range [][]string{{"--version"}, {"--host-lo-to-ns-lo", "--version"}} {
		if o, err := Parse(probe); err != nil || !o.Version {
			t.Errorf("rootlesskit's probe %v: %v", probe, err)
		}
	}
}

// Errors read as pasta's (getopt_long's), so podman's retry without
// --map-guest-addr finds the text it looks for.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--map-guest-adr", "1.2.3.4"}, "pasta: unrecognized option '--map-guest-adr'"},
		{[]string{"--bogus=1"}, "pasta: unrecognized option '--bogus'"},
		{[]string{"-Z"}, "pasta: invalid option -- 'Z'"},
		{[]string{"--netns"}, "pasta: option '--netns' requires an argument"},
		{[]string{"-t"}, "pasta: option requires an argument -- 't'"},
		{[]string{"--quiet=yes"}, "pasta: option '--quiet' doesn't allow an argument"},
		{[]string{"-t", "80x"}, "Invalid port specifier 80x"},
		{[]string{"--address", "nope"}, "Invalid address: nope"},
		{[]string{"--netmask", "255.0.255.0"}, "Invalid netmask: 255.0.255.0"},
		{[]string{"-4", "-6", "1"}, "mutually exclusive"},
		{[]string{"-t", "none", "-t", "none", "1"}, "only allowed once"},
		{[]string{"--mtu", "70000"}, "Invalid MTU"},
		{[]string{"--sandbox", "maybe"}, "Invalid --sandbox: maybe"},
		{[]string{"--sandbox"}, "pasta: option '--sandbox' requires an argument"},
		{[]string{"--sandbox-off"}, "pasta: unrecognized option '--sandbox-off'"},
	} {
		_, err := Parse(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestParseShapes(t *testing.T) {
	o, err := Parse([]string{"-4qf", "-t22", "-a", "192.0.2.9/28", "-n", "255.255.255.0", "--netns", "ns1"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.IPv4Only || !o.Quiet || !o.Foreground || o.TCP[0].Include[0].First != 22 || o.Prefix4 != 24 || o.NetNS != "/run/netns/ns1" {
		t.Errorf("%+v", o)
	}
	if o, err := Parse([]string{"--no-map-gw", "--map-gw", "--netns", "x"}); err != nil || o.NoMapGW {
		t.Errorf("--map-gw after --no-map-gw: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--sandbox=strict"}, {"--sandbox", "strict"}} {
		if o, err := Parse(append(args, "--netns", "x")); err != nil || o.Sandbox != "strict" {
			t.Errorf("%v: %+v, %v", args, o, err)
		}
	}
	o, err = Parse([]string{"--config-net", "sh", "-c", "true"})
	if err != nil || !reflect.DeepEqual(o.Command, []string{"sh", "-c", "true"}) {
		t.Errorf("command: %+v, %v", o, err)
	}
}

// FuzzParse: any command line parses or gives one line of error, never a
// panic; what parses plans or errs on a host.
func FuzzParse(f *testing.F) {
	f.Add("--config-net -t 8080-8080:80-80 --dns-forward 169.254.1.1 -u none -T none -U none --no-map-gw --quiet --netns /run/user/1000/netns/x --map-guest-addr 169.254.1.2")
	f.Add("--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --tcp-ports=auto 4242")
	f.Add("-4qf -t22 -a 192.0.2.9/28 -T 1000-1010:2000 -U ~53 --netns ns1")
	f.Fuzz(func(t *testing.T, line string) {
		o, err := Parse(strings.Fields(line))
		if err != nil {
			if strings.Contains(strings.TrimSpace(err.Error()), "\n") {
				t.Fatalf("%q: a multi-line error %q", line, err)
			}
			return
		}
		o.Plan(testHost, 32768)
	})
}

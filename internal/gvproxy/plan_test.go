package gvproxy

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/services/dns"
)

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o, err := Parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// podman machine's command line for QEMU (../shared/callers.md) gives
// gvproxy's network, the VM socket, the SSH port and the API socket
// forward over SSH.
func TestPlanPodmanMachine(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("k"), 0o600)
	o := parse(t, "-mtu", "1500", "-ssh-port", "42022", "-listen-qemu", "unix:///run/user/1000/podman/qemu.sock",
		"-forward-sock", "/run/user/1000/podman/podman.sock", "-forward-dest", "/run/podman/podman.sock",
		"-forward-user", "root", "-forward-identity", key, "-pid-file", "/run/gv.pid", "-log-file", "/run/gv.log")
	p, err := o.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	c := p.Config
	if c.CIDR != netip.MustParsePrefix("192.168.127.0/24") || c.Gateway != ip("192.168.127.1") || c.DNSAddress != ip("192.168.127.1") ||
		c.DHCPStart != ip("192.168.127.2") || c.MTU != 1500 || c.GatewayMAC != "5a:94:ef:e4:0c:dd" || !c.Map.GatewayIsRouter ||
		!reflect.DeepEqual(c.Map.HostLoopback, []netip.Addr{ip("192.168.127.254")}) {
		t.Errorf("network %+v", c)
	}
	if len(c.DHCPStatic) != 1 || c.DHCPStatic[0].String() != "5a:94:ef:e4:0c:ee=192.168.127.2" {
		t.Errorf("static leases %v", c.DHCPStatic)
	}
	if !reflect.DeepEqual(p.Endpoints, []string{"stream:unix:/run/user/1000/podman/qemu.sock"}) || p.Protocol != ProtoQemu {
		t.Errorf("endpoints %v %s", p.Endpoints, p.Protocol)
	}
	if !reflect.DeepEqual(p.Forwards, []Expose{{Local: "127.0.0.1:42022", Remote: "192.168.127.2:22", Protocol: "tcp"}}) {
		t.Errorf("forwards %v", p.Forwards)
	}
	if !reflect.DeepEqual(p.SSHForwards, []SSHForward{{Socket: "/run/user/1000/podman/podman.sock", Dest: "/run/podman/podman.sock", User: "root", Identity: key}}) {
		t.Errorf("ssh forwards %v", p.SSHForwards)
	}
	if p.PIDFile != "/run/gv.pid" || p.LogFile != "/run/gv.log" {
		t.Errorf("files %q %q", p.PIDFile, p.LogFile)
	}
	want := []dns.Zone{
		{Name: "containers.internal.", Records: []dns.Record{{Name: "gateway", IP: ip("192.168.127.1")}, {Name: "host", IP: ip("192.168.127.254")}}},
		{Name: "docker.internal.", Records: []dns.Record{{Name: "gateway", IP: ip("192.168.127.1")}, {Name: "host", IP: ip("192.168.127.254")}}},
	}
	if !reflect.DeepEqual(p.Zones, want) {
		t.Errorf("zones %+v", p.Zones)
	}
	// The metadata service's link-local block is closed unless asked.
	if !reflect.DeepEqual(c.Deny, []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}) {
		t.Errorf("deny %v", c.Deny)
	}
	if p, err := parse(t, "-ec2-metadata-access").Plan(nil); err != nil || len(p.Config.Deny) != 0 {
		t.Errorf("-ec2-metadata-access: deny %v, %v", p.Config.Deny, err)
	}
}

func TestPlanTransportsAndAPI(t *testing.T) {
	o := parse(t, "--listen-vfkit", "unixgram:///tmp/vf.sock", "-listen", "unix:///tmp/api.sock", "-listen", "tcp://127.0.0.1:7777",
		"-listen", "vsock://:1024", "-services", "unix:///tmp/svc.sock", "-listen-stdio", "accept", "-ssh-port", "-1", "-notification", "unix:///tmp/n.sock", "-subnet", "10.9.0.0/24")
	p, err := o.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Endpoints, []string{"dgram:unix:/tmp/vf.sock"}) || p.Protocol != ProtoVfkit || !p.Stdio || len(p.Forwards) != 0 {
		t.Errorf("%+v", p)
	}
	if len(p.Listen) != 3 || p.Listen[2].Scheme != "vsock" || p.Services.Path != "/tmp/svc.sock" || p.Notification != "/tmp/n.sock" {
		t.Errorf("api %v %v %q", p.Listen, p.Services, p.Notification)
	}
	if p.Config.Gateway != netip.MustParseAddr("10.9.0.1") || p.Host != netip.MustParseAddr("10.9.0.254") {
		t.Errorf("-subnet: gateway %s host %s", p.Config.Gateway, p.Host)
	}
	p, err = parse(t, "-listen-bess", "unixpacket:///tmp/b.sock").Plan(nil)
	if err != nil || !reflect.DeepEqual(p.Endpoints, []string{"seqpacket:unix:/tmp/b.sock"}) || p.Protocol != ProtoBess {
		t.Errorf("bess: %+v %v", p, err)
	}
	p, err = parse(t, "-listen-qemu", "tcp://127.0.0.1:5555").Plan(nil)
	if err != nil || !reflect.DeepEqual(p.Endpoints, []string{"stream:tcp:127.0.0.1:5555"}) {
		t.Errorf("qemu tcp: %+v %v", p, err)
	}
}

// A bad value is one line naming it, as gvproxy words it where it has words.
func TestPlanErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-forward-sock", "/a"}, "must all be specified together"},
		{[]string{"-forward-sock", "/a", "-forward-dest", "/b", "-forward-user", "u", "-forward-identity", "/nonexistent"}, "identity file"},
		{[]string{"-ssh-port", "80"}, "ssh-port value must be between 1024 and 65535"},
		{[]string{"-listen-bess", "unix:///x"}, "listen-bess must be unixpacket:// address"},
		{[]string{"-listen-vfkit", "unix:///x"}, "listen-vfkit must be unixgram:// address"},
		{[]string{"-listen-qemu", "unix:///a", "-listen-bess", "unixpacket:///b"}, "cannot use qemu and bess"},
		{[]string{"-listen-vpnkit", "unix:///a"}, "not supported"},
		{[]string{"-listen", "http://x"}, "-listen"},
		{[]string{"-notification", "tcp://x:1"}, "must be unix://"},
		{[]string{"-subnet", "192.168.127.0/30"}, "invalid subnet"},
		{[]string{"-mtu", "100"}, "mtu"},
	} {
		o, err := Parse(c.args, io.Discard)
		if err == nil {
			_, err = o.Plan(nil)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := Parse([]string{"-bogus"}, io.Discard); err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -bogus") {
		t.Errorf("unknown flag: %v", err)
	}
}

const testYAML = `
listen: [unix:///tmp/api.sock]
log-level: debug
stack:
  mtu: 9000
  subnet: 192.168.5.0/24
  gatewayIP: 192.168.5.2
  gatewayMacAddress: "5a:94:ef:e4:0c:01"
  dns:
    - name: internal.
      records:
        - name: host.lima
          ip: 192.168.5.2
        - regexp: '^lima-.*$'
          ip: 192.168.5.15
      defaultIP: 192.168.5.3
  dnsSearchDomains: [lab.example]
  forwards:
    "127.0.0.1:60022": 192.168.5.15:22
    "udp:127.0.0.1:5353": 192.168.5.15:53
  nat:
    192.168.5.254: 127.0.0.1
  dhcpStaticLeases:
    192.168.5.15: "52:55:55:aa:bb:cc"
interfaces:
  qemu: unix:///tmp/q.sock
forwards:
  - socket: /tmp/p.sock
    dest: /run/podman/podman.sock
    user: core
    identity: /dev/null
pid-file: /tmp/gv.pid
unknown-key-of-a-newer-gvproxy: 1
`

// The YAML file's keys, and flags over them.
func TestPlanYAML(t *testing.T) {
	f, err := ParseFile([]byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parse(t, "-mtu", "1500", "-pid-file", "/tmp/flag.pid").Plan(f)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	c := p.Config
	if c.CIDR != netip.MustParsePrefix("192.168.5.0/24") || c.Gateway != ip("192.168.5.2") || c.MTU != 1500 || c.LogLevel != "debug" ||
		c.GatewayMAC != "5a:94:ef:e4:0c:01" || !reflect.DeepEqual(c.DNSSearch, []string{"lab.example"}) ||
		!reflect.DeepEqual(c.Map.HostLoopback, []netip.Addr{ip("192.168.5.254")}) {
		t.Errorf("network %+v", c)
	}
	if len(c.DHCPStatic) != 1 || c.DHCPStatic[0].String() != "52:55:55:aa:bb:cc=192.168.5.15" {
		t.Errorf("leases %v", c.DHCPStatic)
	}
	if p.PIDFile != "/tmp/flag.pid" || len(p.Listen) != 1 || !reflect.DeepEqual(p.Endpoints, []string{"stream:unix:/tmp/q.sock"}) {
		t.Errorf("plan %+v", p)
	}
	wantF := []Expose{{Local: "127.0.0.1:60022", Remote: "192.168.5.15:22", Protocol: "tcp"}, {Local: "127.0.0.1:5353", Remote: "192.168.5.15:53", Protocol: "udp"}}
	if !reflect.DeepEqual(p.Forwards, wantF) {
		t.Errorf("forwards %v", p.Forwards)
	}
	if len(p.Zones) != 1 || p.Zones[0].DefaultIP != ip("192.168.5.3") || p.Zones[0].Records[1].Regexp != "^lima-.*$" {
		t.Errorf("zones %+v", p.Zones)
	}
	if len(p.SSHForwards) != 1 || p.SSHForwards[0].User != "core" {
		t.Errorf("ssh forwards %v", p.SSHForwards)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"stack: {subnet: nonsense}", "invalid subnet"},
		{"stack: {nat: {192.168.127.254: 10.0.0.1}}", "loopback"},
		{"stack: {dhcpStaticLeases: {192.168.127.9: zz}}", "dhcpStaticLeases"},
		{"stack: {dns: [{name: x., records: [{name: a, ip: nope}]}]}", "invalid ip"},
		{"stack: [", "failed to parse"},
	} {
		f, err := ParseFile([]byte(bad.yaml))
		if err == nil {
			_, err = parse(t).Plan(f)
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.yaml, err, bad.want)
		}
	}
}

// FuzzParseFile: any file is a configuration or an error, never a panic;
// a configuration that plans gives a network config that validates.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(testYAML))
	f.Add([]byte("stack: {mtu: 70000}"))
	f.Add([]byte("listen: [vsock://:1024]\nstack: {forwards: {':1': '1.2.3.4:5'}}"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := ParseFile(b)
		if err != nil {
			return
		}
		p, err := (&Options{SSHPort: 2222, set: map[string]bool{}}).Plan(file)
		if err != nil {
			return
		}
		if err := p.Config.Validate(); err != nil {
			t.Fatalf("a plan whose config does not validate: %v", err)
		}
		for _, e := range p.Forwards {
			if _, err := exposeRule(e, netip.Addr{}); err != nil && e.Protocol == "" {
				t.Fatalf("forward without protocol %+v", e)
			}
		}
	})
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// realClient is one real DHCP client's life: a lease, a renewal, a
// release. Each client runs in a network namespace of its own inside the
// one of `slipway run`, on a macvlan of eth0 with a MAC of its own, so
// slipway sees it as one more guest and its lease is its own (not the
// static binding of the namespace's address).
type realClient struct {
	name string // the client's namespace and interface, and its markers
	mac  string
	v6   bool
	// The shell commands, run in the client's namespace with $i its
	// interface and $d a directory of its own. start returns once the
	// client has a lease or runs in the background; renew makes it
	// renew, release makes it give the lease back.
	start, renew, release string
	// settled, if set, is a shell condition (on $d) that holds once the
	// client is done renewing: dhcpcd ignores a release while it is
	// still confirming what it rebound.
	settled string
}

// clientScripts are the hook scripts the clients run, written to the
// test's directory: each sets or removes the address it is told, as a
// distribution's would, and touches nothing of the host's (/etc/resolv.conf,
// the host name: the namespace shares the host's UTS namespace).
var clientScripts = map[string]string{
	// replace, not flush and add: removing an interface's last address
	// flushes its ARP cache, and udhcpc's RELEASE, sent right after a
	// renewal, then waited for ARP and was dropped by deconfig's flush.
	"udhcpc.sh": `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew) ip -4 addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
`,
	"dhclient.sh": `#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
RELEASE|EXPIRE|STOP) [ -n "${old_ip_address:-}" ] && ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
BOUND6|RENEW6|REBIND6|REBOOT6) ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" ;;
RELEASE6|EXPIRE6|STOP6) [ -n "${old_ip6_address:-}" ] && ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface" ;;
esac
exit 0
`,
}

// dhclient runs ISC dhclient (-4 or -6) once with the test's hook script
// and the client's own lease and pid files, plus args.
func dhclient(family, args string) string {
	return fmt.Sprintf(`timeout 30 dhclient %s -1 -v -lf $d/leases -pf $d/pid -sf $dir/dhclient.sh %s $i >>$d/log 2>&1`, family, args)
}

// dhcpcd runs dhcpcd (-4 or -6) with args.
func dhcpcd(family, args string) string {
	return fmt.Sprintf(`timeout 30 dhcpcd %s %s $i >>$d/log 2>&1`, family, args)
}

// dhcpcdStart starts dhcpcd's daemon, without hooks (-c /bin/true: they
// would write the host's name and NTP configuration) or configuration
// file, and waits for its first address.
const dhcpcdStart = "-c /bin/true -f /dev/null -j $d/dhcpcd.log -w -t 30"

var realClients = []realClient{
	{
		name: "udhcpc", mac: "52:54:00:c1:00:01",
		// -f in the background: SIGUSR1 renews, SIGUSR2 releases.
		start:   `busybox udhcpc -i $i -f -t 10 -T 1 -s $dir/udhcpc.sh -p $d/pid -x hostname:udhcpc >>$d/log 2>&1 &`,
		renew:   `kill -USR1 $(cat $d/pid)`,
		release: `kill -USR2 $(cat $d/pid)`,
		// The renewal's ACK handled (the server's lease moves when it
		// sends the ACK, before udhcpc has read it).
		settled: `[ $(grep -c 'obtained from' $d/log) -ge 2 ]`,
	},
	{
		name: "dhclient", mac: "52:54:00:c1:00:02",
		// Run again with its lease, dhclient asks for it again
		// (INIT-REBOOT): slipway extends it.
		start: dhclient("-4", ""), renew: dhclient("-4", ""),
		// dhclient sends its RELEASE through a kernel socket and runs
		// its RELEASE hook (which removes the address) right after: the
		// kernel, still asking ARP for the server, then drops the
		// datagram with the ARP cache the removal flushes (seen in CI
		// under load). A distribution's hook does the same; a ping
		// first leaves a neighbour entry, so the RELEASE goes at once.
		release: `busybox ping -c 1 -W 2 $(sed -n 's/.*dhcp-server-identifier \([0-9.]*\);/\1/p' $d/leases | tail -n 1) >>$d/log 2>&1; ` +
			dhclient("-4", "-r"),
	},
	{
		name: "dhcpcd", mac: "52:54:00:c1:00:03",
		start: dhcpcd("-4", dhcpcdStart), renew: dhcpcd("-4", "-n"), release: dhcpcd("-4", "-k"),
		settled: `[ $(grep -c 'leased ' $d/dhcpcd.log) -ge 2 ]`,
	},
	{
		name: "dhclient6", mac: "52:54:00:c1:00:04", v6: true,
		start: dhclient("-6", ""),
		// dhclient -6 run again only confirms its address (a Confirm
		// extends nothing); moved back in its lease file to past its
		// T1, it renews at once.
		renew: `sed -i "s/starts [0-9]*;/starts $(($(date +%s)-4000));/" $d/leases && ` +
			`(dhclient -6 -d -lf $d/leases -pf $d/pid -sf $dir/dhclient.sh $i >>$d/log 2>&1 &)`,
		release: dhclient("-6", "-r"),
	},
	{
		name: "dhcpcd6", mac: "52:54:00:c1:00:05", v6: true,
		// dhcpcd asks DHCPv6 for an address once the router
		// advertisement says so (its M flag).
		start: dhcpcd("-6", dhcpcdStart), renew: dhcpcd("-6", "-n"), release: dhcpcd("-6", "-k"),
		settled: `[ $(grep -c 'renew in ' $d/dhcpcd.log) -ge 2 ]`,
	},
}

// clientPrelude is the shell every real-client test starts with: a /run
// and dhcpcd and dhclient state directories of the namespace's own
// (so `ip netns`, the clients' pid files, sockets and DUIDs stay in it),
// the hook scripts, and the functions:
//
//	mkclient NAME MAC   a namespace NAME with a macvlan NAME of eth0
//	lease KEY           the lease (JSON) of /v1/leases whose line has KEY
//	await COND          polls COND (20 s at most, then fails)
func clientPrelude(api, dir string) []string {
	lines := []string{
		`mount -t tmpfs slipway-test /run`,
		`for s in /var/lib/dhcpcd /var/lib/dhcp; do [ -d $s ] && mount -t tmpfs slipway-test $s; done`,
		`mkdir -p /run/netns`,
		`dir=` + dir + `; export dir`,
	}
	for name, body := range clientScripts {
		lines = append(lines, fmt.Sprintf("cat >$dir/%s <<'EOS'\n%sEOS\nchmod +x $dir/%s", name, body, name))
	}
	return append(lines,
		`mkclient() { ip netns add $1 && ip link add $1 link eth0 address $2 type macvlan mode bridge 2>/dev/null && ip link set $1 netns $1 && ip -n $1 link set lo up && ip -n $1 link set $1 up; }`,
		fmt.Sprintf(`lease() { curl -s --unix-socket %s http://slipway/v1/leases | tr -d ' \n' | grep -o "{[^}]*$1[^}]*}"; }`, api),
		`await() { n=0; until eval "$1"; do n=$((n+1)); [ $n -lt 400 ] || return 1; sleep 0.05; done; }`,
	)
}

// clientLife is the shell for one client's life, printing markers
// NAME_got, NAME_renewed and NAME_released (its lease at each point,
// empty when it has none) and NAME_addr, the address the client set on
// its interface.
func clientLife(c realClient) []string {
	key := c.mac // a DHCPv4 lease names the MAC; a DHCPv6 one a DUID ending in it
	fam := "-4"
	if c.v6 {
		key, fam = strings.ReplaceAll(c.mac, ":", ""), "-6"
	}
	in := func(sh string) string {
		return fmt.Sprintf(`ip netns exec %s sh -c %s`, c.name, shq(fmt.Sprintf(`i=%s; d=$dir/%s; %s`, c.name, c.name, sh)))
	}
	return []string{
		fmt.Sprintf(`mkdir -p $dir/%s && mkclient %s %s`, c.name, c.name, c.mac),
		// The link-local address must be usable before a DHCPv6
		// client binds it.
		fmt.Sprintf(`await '[ -z "$(ip -n %s -6 addr show tentative)" ]'`, c.name),
		fmt.Sprintf(`%s || echo "@%s_start=failed"`, in(c.start), c.name),
		fmt.Sprintf(`await '[ -n "$(lease %s)" ]'; got=$(lease %s); echo "@%s_got=$got"`, key, key, c.name),
		fmt.Sprintf(`await '[ -n "$(ip -n %s %s -o addr show dev %s scope global)" ]'; echo "@%s_addr=$(ip -n %s %s -o addr show dev %s scope global | awk '{print $4}' | tr '\n' ' ')"`,
			c.name, fam, c.name, c.name, c.name, fam, c.name),
		// The clock of an expiry has nanoseconds: any renewal moves it.
		fmt.Sprintf(`%s || echo "@%s_renew=failed"`, in(c.renew), c.name),
		fmt.Sprintf(`await '[ "$(lease %s)" != "$got" ]'; echo "@%s_renewed=$(lease %s)"`, key, c.name, key),
		fmt.Sprintf(`d=$dir/%s; await %s || echo "@%s_settled=never"`, c.name, shq(cond(c.settled)), c.name),
		fmt.Sprintf(`%s || echo "@%s_release=failed"`, in(c.release), c.name),
		fmt.Sprintf(`await '[ -z "$(lease %s)" ]' || echo "@%s_log=$(tail -n 8 $dir/%s/log | tr '\n' '|')"; echo "@%s_released=$(lease %s)"`, key, c.name, c.name, c.name, key),
		fmt.Sprintf(`pkill -F $dir/%s/pid 2>/dev/null; true`, c.name),
	}
}

// shq quotes s for the shell.
func shq(s string) string { return `'` + strings.ReplaceAll(s, `'`, `'\''`) + `'` }

// cond is a shell condition, true when none is given.
func cond(sh string) string {
	if sh == "" {
		return "true"
	}
	return sh
}

// leaseRecord is one entry of /v1/leases.
type leaseRecord struct {
	MAC     string     `json:"mac"`
	DUID    string     `json:"duid"`
	Addr    netip.Addr `json:"addr"`
	Expires time.Time  `json:"expires"`
	Static  bool       `json:"static"`
}

// checkClient asserts one client's life from its markers: a lease in the
// pool of its family that the client set on its interface, an expiry
// that moved forward on renewal at the same address, and no lease once
// given back.
func checkClient(t *testing.T, c realClient, m map[string]string, pool netip.Prefix) {
	t.Helper()
	for _, step := range []string{"start", "renew", "settled", "release"} {
		if m[c.name+"_"+step] != "" {
			t.Errorf("%s: the %s command failed", c.name, step)
		}
	}
	var got, renewed leaseRecord
	if err := json.Unmarshal([]byte(m[c.name+"_got"]), &got); err != nil {
		t.Errorf("%s: no lease in /v1/leases (%q): %v", c.name, m[c.name+"_got"], err)
		return
	}
	if !pool.Contains(got.Addr) || got.Static || got.Expires.Before(time.Now()) {
		t.Errorf("%s: lease %+v, want a dynamic, unexpired one in %v", c.name, got, pool)
	}
	if !strings.HasPrefix(m[c.name+"_addr"], got.Addr.String()+"/") && !strings.Contains(m[c.name+"_addr"], " "+got.Addr.String()+"/") {
		t.Errorf("%s: the client set %q on its interface, its lease is for %v", c.name, m[c.name+"_addr"], got.Addr)
	}
	if err := json.Unmarshal([]byte(m[c.name+"_renewed"]), &renewed); err != nil {
		t.Errorf("%s: no lease after the renewal (%q): %v", c.name, m[c.name+"_renewed"], err)
	} else if renewed.Addr != got.Addr || !renewed.Expires.After(got.Expires) {
		t.Errorf("%s: renewed %+v, want %v with an expiry after %v", c.name, renewed, got.Addr, got.Expires)
	}
	if r := m[c.name+"_released"]; r != "" {
		t.Errorf("%s: lease still listed after the release: %s\n%s", c.name, r, m[c.name+"_log"])
	}
}

// runClients runs the life of every real client of one family (v6 or
// not) in one `slipway run`, then the shell lines of more, and checks each
// client's; it returns the markers and the output.
func runClients(t *testing.T, v6 bool, more ...string) (map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	api := filepath.Join(dir, "api.sock")
	lines := append([]string{waitFlows(api)}, clientPrelude(api, dir)...)
	var run []realClient
	for _, c := range realClients {
		if c.v6 == v6 {
			run = append(run, c)
			lines = append(lines, clientLife(c)...)
		}
	}
	res := runNS(t, []string{"--api-socket", api}, script(append(lines, more...)...))
	m := testenv.Markers(res.Output)
	pool := netip.MustParsePrefix("10.0.2.0/24")
	if v6 {
		pool = netip.MustParsePrefix("fd00::/64")
	}
	for _, c := range run {
		checkClient(t, c, m, pool)
	}
	return m, res.Output
}

// TestRealDHCPClients: busybox udhcpc, ISC dhclient and dhcpcd each get a
// DHCPv4 lease, renew it and release it, as /v1/leases shows; and
// dhclient on the namespace's own interface, whose address is a static
// binding: released, the binding stays, without the expiry of a lease.
func TestRealDHCPClients(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox", "dhclient", "dhcpcd", "curl", "ip", "pkill")
	m, output := runClients(t, false,
		`timeout 30 dhclient -4 -1 -lf $dir/eth0.leases -pf $dir/eth0.pid -sf /bin/true eth0 >/dev/null 2>&1`,
		`echo "@static_got=$(lease 52:54:0a:00:02:0f)"`,
		`timeout 30 dhclient -4 -r -lf $dir/eth0.leases -pf $dir/eth0.pid -sf /bin/true eth0 >/dev/null 2>&1`,
		`await '! lease 52:54:0a:00:02:0f | grep -q expires'; echo "@static_released=$(lease 52:54:0a:00:02:0f)"`,
	)
	var st, rel leaseRecord
	if err := json.Unmarshal([]byte(m["static_got"]), &st); err != nil || !st.Static || st.Expires.IsZero() {
		t.Errorf("the namespace's own lease after dhclient: %q (%v), want static with an expiry", m["static_got"], err)
	}
	if err := json.Unmarshal([]byte(m["static_released"]), &rel); err != nil || !rel.Static || !rel.Expires.IsZero() || rel.Addr != netip.MustParseAddr("10.0.2.15") {
		t.Errorf("the namespace's own lease after dhclient -r: %q (%v), want the static binding of 10.0.2.15 without an expiry", m["static_released"], err)
	}
	if t.Failed() {
		t.Logf("output:\n%s", output)
	}
}

// TestRealDHCPv6Clients: ISC dhclient -6 and dhcpcd -6 each get a DHCPv6
// address, renew it and release it, as /v1/leases shows; rdisc6 hears the
// router advertisement and the kernel forms its SLAAC address from it.
func TestRealDHCPv6Clients(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "dhclient", "dhcpcd", "rdisc6", "curl", "ip", "pkill")
	m, output := runClients(t, true,
		`mkclient rdisc 52:54:00:c1:00:06`,
		// rdisc6 cannot solicit from a tentative address.
		`await '[ -z "$(ip -n rdisc -6 addr show tentative)" ]'`,
		`ip netns exec rdisc rdisc6 -1 -w 3000 rdisc >$dir/rdisc6.out 2>&1; echo "@rdisc6_exit=$?"`,
		`for f in "Stateful address conf" "Stateful other conf" "Router lifetime" "MTU" "Prefix" "On-link" "Autonomous address conf" "Recursive DNS server"; do echo "@ra_$(echo $f | tr ' .' '__')=$(grep -m1 "^ *$f" $dir/rdisc6.out | sed 's/^[^:]*: *//; s/ *(.*//; s/ *seconds//; s/ *bytes.*//')"; done`,
		`await '[ -n "$(ip -n rdisc -6 -o addr show dev rdisc scope global | grep -v tentative)" ]'; echo "@slaac=$(ip -n rdisc -6 -o addr show dev rdisc scope global | awk '{print $4}')"`,
	)
	checkMarkers(t, m, map[string]string{
		"rdisc6_exit":                "0",
		"ra_Stateful_address_conf":   "Yes",
		"ra_Stateful_other_conf":     "Yes",
		"ra_Router_lifetime":         "1800",
		"ra_MTU":                     "65520",
		"ra_Prefix":                  "fd00::/64",
		"ra_On-link":                 "Yes",
		"ra_Autonomous_address_conf": "Yes",
		"ra_Recursive_DNS_server":    "fd00::3",
		"slaac":                      "fd00::5054:ff:fec1:6/64",
	}, "rdisc6: ")
	if t.Failed() {
		t.Logf("output:\n%s", output)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
)

func TestCtlClientOptions(t *testing.T) {
	for _, c := range []struct {
		o    ctlOptions
		want string
	}{
		{ctlOptions{output: "table"}, "--api-socket is required"},
		{ctlOptions{socket: "/run/s.sock", output: "yaml"}, `invalid value "yaml" for --output`},
		{ctlOptions{socket: "/run/s.sock", output: ""}, `invalid value "" for --output`},
	} {
		_, err := c.o.client()
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a usage error saying %q", c.o, err, c.want)
		}
	}
	for _, out := range []string{"table", "json"} {
		if _, err := (&ctlOptions{socket: "/run/s.sock", output: out}).client(); err != nil {
			t.Errorf("-o %s: %v", out, err)
		}
	}
}

// Bad arguments are refused before the API is called, so no socket is
// needed to see them (the socket given does not exist).
func TestCtlCommandLine(t *testing.T) {
	const sock = "/nonexistent/slipway.sock"
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add"}, "requires at least 1 arg")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add", "8080:80", "8081"}, `invalid rule "8081"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "add", "8080:80/icmp"}, `invalid rule "8080:80/icmp"`, `"icmp"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "rm", "1", "x"}, `invalid forward id "x"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "forward", "rm", "-1"}, "unknown shorthand flag")
	wantUsage(t, []string{"ctl", "forward", "ls"}, "--api-socket is required")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "-o", "xml", "leases"}, `"xml" for --output`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "stats", "now"}, "unknown command", "now")
}

// fakeAPI serves canned JSON answers, by method and path, on a unix
// socket in place of a running slipway's control API, and records the
// bodies it was sent.
func fakeAPI(t *testing.T, answers map[string]string) (socket string, bodies *[]string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	bodies = new([]string)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*bodies = append(*bodies, strings.TrimSpace(string(b)))
		a, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			http.Error(w, `{"error":"no such thing"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, a)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return socket, bodies
}

// runCtl runs `slipway ctl --api-socket socket args...` and returns what
// it printed.
func runCtl(t *testing.T, socket string, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	root := newRootCmd(&out, &errs)
	root.SetArgs(append([]string{"ctl", "--api-socket", socket}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("ctl %v: %v (stderr %q)", args, err, errs.String())
	}
	return out.String()
}

const (
	forwardsJSON = `[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.15","guest_port":80,"connections":3},
		{"id":2,"proto":"udp","host_addr":"::1","host_port":5000,"host_port_end":5002,"guest_addr":"10.0.2.15","guest_port":6000,"guest_port_end":6002,"connections":0}]`
	forwardJSON = `{"id":3,"proto":"tcp","host_addr":"127.0.0.1","host_port":2222,"guest_addr":"10.0.2.15","guest_port":22,"connections":0}`
)

func TestCtlTables(t *testing.T) {
	expires := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	socket, bodies := fakeAPI(t, map[string]string{
		"GET /v1/forwards":      forwardsJSON,
		"POST /v1/forwards":     forwardJSON,
		"DELETE /v1/forwards/1": `{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.15","guest_port":80,"connections":3}`,
		"GET /v1/leases": `[{"mac":"52:54:00:12:34:01","addr":"10.0.2.15","hostname":"guest","expires":"2026-01-02T03:04:05Z","static":false},
			{"mac":"52:54:00:12:34:02","addr":"10.0.2.16","static":true},
			{"duid":"00030001525400123401","iaid":7,"addr":"fd00::100","expires":"2026-01-02T03:04:05Z","static":false}]`,
		"GET /v1/links": `[{"port":1,"name":"qemu","since":"2026-01-02T03:04:05Z","rx_frames":10,"rx_bytes":1000,"tx_frames":20,"tx_bytes":2000,"drops":{"a":1,"b":2}}]`,
		"GET /v1/flows": `[{"id":4,"proto":"tcp","direction":"outbound","guest":"10.0.2.15:40000","remote":"192.0.2.1:443","host":"192.0.2.1:443","state":"established","to_host_bytes":100,"to_guest_bytes":2000,"age_seconds":61.6},
			{"id":5,"proto":"udp","direction":"published","forward":2,"guest":"10.0.2.15:6000","remote":"198.51.100.1:3000","host":"198.51.100.1:3000","state":"open","to_host_bytes":0,"to_guest_bytes":5,"age_seconds":0.4}]`,
		"GET /v1/stats": `{"uptime_seconds":3661.5,"links":1,"flows":{"total":2,"tcp":1,"udp":1,"published":1,"max":16384,"refused_full":0},
			"forwarder":{"refused":{"zeta":1,"alpha":2},"connect_failed":3},"publish":{"forwards":2,"ports":4,"refused":0,"connect_failed":1},
			"stack_drops":{"b":0,"a":5},"dhcp":{"leases":2,"received":10,"replied":8},"dns":{"queries":9,"local":1,"forwarded":7,"servfail":1}}`,
	})
	local := expires.Local().Format(time.DateTime)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"forward", "ls"}, `ID  PROTO  HOST             GUEST                CONNECTIONS
1   tcp    0.0.0.0:8080     10.0.2.15:80         3
2   udp    [::1]:5000-5002  10.0.2.15:6000-6002  0
`},
		{[]string{"forward", "add", "127.0.0.1:2222:22"}, `ID  PROTO  HOST            GUEST         CONNECTIONS
3   tcp    127.0.0.1:2222  10.0.2.15:22  0
`},
		{[]string{"forward", "rm", "1"}, `ID  PROTO  HOST          GUEST         CONNECTIONS
1   tcp    0.0.0.0:8080  10.0.2.15:80  3
`},
		{[]string{"leases"}, `ADDRESS    CLIENT                            HOSTNAME  EXPIRES              STATIC
10.0.2.15  52:54:00:12:34:01                 guest     ` + local + `  false
10.0.2.16  52:54:00:12:34:02                 -         never                true
fd00::100  duid 00030001525400123401 iaid 7  -         ` + local + `  false
`},
		{[]string{"links"}, `PORT  LINK  UP SINCE             RX FRAMES  RX BYTES  TX FRAMES  TX BYTES  DROPS
1     qemu  ` + local + `  10         1000      20         2000      3
`},
		{[]string{"flows"}, `ID  PROTO  DIRECTION     GUEST            REMOTE             HOST               STATE        TO HOST  TO GUEST  AGE
4   tcp    outbound      10.0.2.15:40000  192.0.2.1:443      192.0.2.1:443      established  100      2000      1m2s
5   udp    published(2)  10.0.2.15:6000   198.51.100.1:3000  198.51.100.1:3000  open         0        5         0s
`},
		{[]string{"stats"}, `uptime                    1h1m2s
links                     1
dhcp leases               2
dhcp received             10
dhcp replied              8
dns forwarded             7
dns local                 1
dns queries               9
dns servfail              1
flows max                 16384
flows published           1
flows refused_full        0
flows tcp                 1
flows total               2
flows udp                 1
forwarder connect_failed  3
forwarder refused: alpha  2
forwarder refused: zeta   1
publish connect_failed    1
publish forwards          2
publish ports             4
publish refused           0
stack_drops a             5
stack_drops b             0
`},
	} {
		if got := runCtl(t, socket, c.args...); got != c.want {
			t.Errorf("ctl %v printed\n%s\nwant\n%s", c.args, got, c.want)
		}
	}
	if got := (*bodies)[1]; !strings.Contains(got, `"host_port":2222`) || !strings.Contains(got, `"guest_port":22`) {
		t.Errorf("forward add sent %s", got)
	}
}

func TestCtlJSON(t *testing.T) {
	socket, _ := fakeAPI(t, map[string]string{"GET /v1/forwards": forwardsJSON})
	got := runCtl(t, socket, "-o", "json", "forward", "ls")
	if !strings.HasPrefix(got, "[\n  {\n    \"id\": 1,") {
		t.Fatalf("ctl -o json forward ls printed %s", got)
	}
}

// ctl dns against a real network's API: add a name, see it listed, and a
// bad record is a usage error naming it.
func TestCtlDNS(t *testing.T) {
	n, err := network.New(config.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	socket := filepath.Join(t.TempDir(), "api.sock")
	srv, err := control.Listen(socket, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	out := runCtl(t, socket, "dns", "add", "db.internal=10.0.2.50", "db.internal=fd00::50")
	if !strings.Contains(out, "db.internal") || !strings.Contains(out, "10.0.2.50,fd00::50") {
		t.Errorf("add:\n%s", out)
	}
	out = runCtl(t, socket, "dns", "ls")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "host.containers.internal") || !strings.Contains(out, "10.0.2.50,fd00::50") {
		t.Errorf("ls:\n%s", out)
	}
	if got := n.DNS().Records()["db.internal."]; len(got) != 2 {
		t.Errorf("the network's records: %v", got)
	}
	wantUsage(t, []string{"ctl", "--api-socket", socket, "dns", "add", "db.internal"}, `invalid record "db.internal"`)
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/slipway-net/slipway/bench/internal/parse"
)

// Marker lines the guest's script prints around each test. The host
// samples the backend's CPU when it sees BEGIN and END, and reads the
// test's output between OUT and OUT-END.
const (
	markGateway = "@@GW "
	markBegin   = "@@BEGIN "
	markEnd     = "@@END "
	markOut     = "@@OUT "
	markOutEnd  = "@@OUT-END "
)

// guestScript is the VM's test script: each test's client against the
// host's servers at the guest's default gateway, which every VM backend
// maps to the host's loopback (10.0.2.2 for slipway and libslirp, the
// host's own gateway address for passt). The output is printed after the
// END marker so printing it does not count as test time.
func guestScript(tests []testDef, p ports, s settings) string {
	var b strings.Builder
	b.WriteString("gw=$(ip route | awk '/^default/ {print $3; exit}')\n")
	fmt.Fprintf(&b, "echo \"%s$gw\"\n", markGateway)
	b.WriteString("[ -n \"$gw\" ] || exit 1\n")
	// A wedged test must not hold the VM until its overall timeout.
	limit := int((s.duration + 60*time.Second) / time.Second)
	for _, t := range tests {
		fmt.Fprintf(&b, "echo '%s%s'\n", markBegin, t.name)
		fmt.Fprintf(&b, "timeout %d %s >/tmp/%s.out 2>&1\n", limit, shellJoin(t.args("${gw}", p, s)), t.name)
		fmt.Fprintf(&b, "echo \"%s%s rc=$?\"\n", markEnd, t.name)
		fmt.Fprintf(&b, "echo '%s%s'; cat /tmp/%s.out; echo; echo '%s%s'\n", markOut, t.name, t.name, markOutEnd, t.name)
	}
	return b.String()
}

// shellJoin double-quotes every argument, leaving $ alone so ${gw}
// expands.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`")
	for i, a := range args {
		q[i] = `"` + r.Replace(a) + `"`
	}
	return strings.Join(q, " ")
}

// consoleSection returns the lines the guest printed between
// "@@OUT name" and "@@OUT-END name".
func consoleSection(console, name string) (string, bool) {
	lines := strings.Split(console, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != markOut+name {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == markOutEnd+name {
				return strings.Join(lines[i+1:j], "\n"), true
			}
		}
		return "", false
	}
	return "", false
}

// consoleGateway returns the gateway the guest's script found.
func consoleGateway(console string) string {
	for _, l := range strings.Split(console, "\n") {
		if _, gw, ok := strings.Cut(l, markGateway); ok {
			return strings.TrimSpace(gw)
		}
	}
	return ""
}

// wrkFiles returns wrk and the libraries it links, to be added to the
// guest's initramfs: the cached guest carries iperf3 and sockperf but not
// wrk, and adding it per run keeps the shared guest build unchanged.
func wrkFiles() (map[string][]byte, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("wrk: %w", err)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	files := map[string][]byte{}
	for _, path := range append([]string{"/usr/bin/wrk"}, parse.LddPaths(string(out))...) {
		src := path
		if path == "/usr/bin/wrk" {
			src = bin
		}
		data, err := os.ReadFile(src) // follows the soname symlinks
		if err != nil {
			return nil, fmt.Errorf("reading %s for the guest: %w", src, err)
		}
		files[path] = data
	}
	return files, nil
}

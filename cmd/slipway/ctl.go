package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
)

// ctlTimeout bounds one API call of `slipway ctl`.
const ctlTimeout = 30 * time.Second

type ctlOptions struct {
	socket string
	output string
}

func (o *ctlOptions) client() (*control.Client, error) {
	if o.socket == "" {
		return nil, usageError{errors.New("--api-socket is required (the --api-socket of the running slipway; serve without one prints its socket, serve-PID.sock under /run/slipway for root, $XDG_RUNTIME_DIR/slipway otherwise)")}
	}
	switch o.output {
	case "table", "json":
	default:
		return nil, usageError{fmt.Errorf("invalid value %q for --output: want table or json", o.output)}
	}
	return control.NewClient(o.socket), nil
}

// call runs one request and prints its answer as JSON or with table.
func (o *ctlOptions) call(cmd *cobra.Command, method, path string, body, out any, table func(io.Writer)) error {
	if err := o.do(cmd, method, path, body, out); err != nil {
		return err
	}
	return o.print(cmd, out, table)
}

// do runs one request, decoding the answer into out.
func (o *ctlOptions) do(cmd *cobra.Command, method, path string, body, out any) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), ctlTimeout)
	defer cancel()
	return c.Do(ctx, method, path, body, out)
}

// print writes out as JSON or with table.
func (o *ctlOptions) print(cmd *cobra.Command, out any, table func(io.Writer)) error {
	w := cmd.OutOrStdout()
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func newCtlCmd() *cobra.Command {
	var o ctlOptions
	cmd := &cobra.Command{
		Use:   "ctl --api-socket PATH COMMAND",
		Short: "Control a running slipway through its API socket",
		Long: `ctl talks to the control API of a slipway started with --api-socket:
published ports (forward add|ls|rm), DHCP leases, links and links handed
over at run time (link add|rm|down|up), flows, statistics, the state to
keep over a restart (state), the configuration and a graceful stop.
Output is a table, or the API's JSON with -o json.`,
		Example: `  slipway ctl --api-socket /run/slipway.sock forward add 8080:80 127.0.0.1:5353:53/udp
  slipway ctl --api-socket /run/slipway.sock forward ls
  slipway ctl --api-socket /run/slipway.sock forward rm 1
  slipway ctl --api-socket /run/slipway.sock dns add db.internal=10.0.2.50
  slipway ctl --api-socket /run/slipway.sock -o json flows`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.socket, "api-socket", "", "the control API socket of the running slipway")
	cmd.PersistentFlags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")

	forward := &cobra.Command{Use: "forward", Short: "Published ports", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	forward.AddCommand(&cobra.Command{
		Use:   "add RULE...",
		Short: "Publish host ports: [HOSTIP:]HOSTPORT[-END]:[GUESTIP:]GUESTPORT[-END][/tcp|/udp]",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rules []config.PublishRule
			for _, a := range args {
				r, err := config.ParsePublish(a)
				if err != nil {
					return usageError{fmt.Errorf("invalid rule %q: %w", a, err)}
				}
				rules = append(rules, r)
			}
			added := []control.Forward{}
			var failed error
			for _, r := range rules {
				var fw control.Forward
				if err := o.do(cmd, http.MethodPost, "/v1/forwards", control.ForwardRequest{PublishRule: r}, &fw); err != nil {
					// Rules before it stay published; say which.
					failed = fmt.Errorf("%s: %w", r, err)
					break
				}
				added = append(added, fw)
			}
			if len(added) > 0 {
				if err := o.print(cmd, added, func(w io.Writer) { forwardTable().write(w, added) }); err != nil {
					return err
				}
			}
			return failed
		},
	})
	forward.AddCommand(listCmd(&o, &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List published ports"},
		"/v1/forwards", forwardTable()))
	forward.AddCommand(&cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"remove"},
		Short:   "Remove published ports by ID",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if _, err := strconv.ParseUint(a, 10, 64); err != nil {
					return usageError{fmt.Errorf("invalid forward id %q", a)}
				}
			}
			for _, a := range args {
				var fw control.Forward
				err := o.call(cmd, http.MethodDelete, "/v1/forwards/"+a, nil, &fw, func(w io.Writer) {
					forwardTable().write(w, []control.Forward{fw})
				})
				if err != nil {
					return err // it names the forward
				}
			}
			return nil
		},
	})
	cmd.AddCommand(forward)

	cmd.AddCommand(newCtlLinkCmd(&o))
	cmd.AddCommand(newCtlRuntimeCmds(&o)...)
	dns := &cobra.Command{Use: "dns", Short: "Names slipway's DNS answers itself", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	dns.AddCommand(listCmd(&o, &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List the names and their addresses"},
		"/v1/dns/records", dnsTable()))
	dns.AddCommand(&cobra.Command{
		Use:   "add NAME=IP...",
		Short: "Add addresses to names (A for IPv4, AAAA for IPv6); guests resolve them at once",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var recs []config.DNSRecord
			for _, a := range args {
				r, err := config.ParseDNSRecord(a)
				if err != nil {
					return usageError{fmt.Errorf("invalid record %q: %w", a, err)}
				}
				recs = append(recs, r)
			}
			var added []control.DNSRecord
			for _, r := range recs {
				var rec control.DNSRecord
				if err := o.do(cmd, http.MethodPost, "/v1/dns/records", control.DNSRecord{Name: r.Name, IPs: []netip.Addr{r.IP}}, &rec); err != nil {
					return fmt.Errorf("%s: %w", r, err)
				}
				added = append(added, rec)
			}
			return o.print(cmd, added, func(w io.Writer) { dnsTable().write(w, added) })
		},
	})
	cmd.AddCommand(dns)
	cmd.AddCommand(listCmd(&o, &cobra.Command{Use: "leases", Short: "List DHCP leases"}, "/v1/leases", leaseTable()))
	cmd.AddCommand(listCmd(&o, &cobra.Command{Use: "links", Short: "List guest links and their counters"}, "/v1/links", linkTable()))
	cmd.AddCommand(listCmd(&o, &cobra.Command{Use: "flows", Short: "List flows between guests and the host"}, "/v1/flows", flowTable()))
	cmd.AddCommand(&cobra.Command{
		Use: "stats", Short: "Show the network's statistics", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st control.Stats
			return o.call(cmd, http.MethodGet, "/v1/stats", nil, &st, func(w io.Writer) { printStats(w, st) })
		},
	})
	return cmd
}

// listCmd completes cmd into a subcommand that gets the list at path
// and prints it as tb.
func listCmd[T any](o *ctlOptions, cmd *cobra.Command, path string, tb table[T]) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var rows []T
		return o.call(cmd, http.MethodGet, path, nil, &rows, func(w io.Writer) { tb.write(w, rows) })
	}
	return cmd
}

// table is how ctl prints a list of T: a header, and the cells of a row.
type table[T any] struct {
	header []any
	row    func(T) []any
}

func (tb table[T]) write(w io.Writer, rows []T) {
	writeRow(w, tb.header...)
	for _, r := range rows {
		writeRow(w, tb.row(r)...)
	}
}

// writeRow writes one line of a table, cells as %v, separated by tabs for
// the tabwriter print puts under every table to line them up.
func writeRow(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

func forwardTable() table[control.Forward] {
	return table[control.Forward]{
		header: []any{"ID", "PROTO", "HOST", "GUEST", "CONNECTIONS"},
		row: func(f control.Forward) []any {
			return []any{f.ID, f.Proto, endpoints(f.HostAddr.String(), f.HostPort, f.HostPorts()),
				endpoints(f.GuestAddr.String(), f.GuestPort, f.GuestPorts()), f.Connections}
		},
	}
}

func dnsTable() table[control.DNSRecord] {
	return table[control.DNSRecord]{
		header: []any{"NAME", "ADDRESSES"},
		row: func(r control.DNSRecord) []any {
			ips := make([]string, len(r.IPs))
			for i, a := range r.IPs {
				ips[i] = a.String()
			}
			return []any{r.Name, strings.Join(ips, ",")}
		},
	}
}

func leaseTable() table[network.LeaseInfo] {
	return table[network.LeaseInfo]{
		header: []any{"ADDRESS", "CLIENT", "HOSTNAME", "EXPIRES", "STATIC"},
		row: func(l network.LeaseInfo) []any {
			exp := "never"
			if !l.Static {
				exp = l.Expires.Local().Format(time.DateTime)
			}
			client := l.MAC
			if client == "" {
				client = fmt.Sprintf("duid %s iaid %d", l.DUID, l.IAID)
			}
			return []any{l.Addr, client, dash(l.Hostname), exp, l.Static}
		},
	}
}

func linkTable() table[control.Link] {
	return table[control.Link]{
		header: []any{"PORT", "LINK", "UP SINCE", "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES", "DROPS"},
		row: func(l control.Link) []any {
			var drops uint64
			for _, v := range l.Drops {
				drops += v
			}
			return []any{l.Port, l.Name, l.Since.Local().Format(time.DateTime), l.RxFrames, l.RxBytes, l.TxFrames, l.TxBytes, drops}
		},
	}
}

func flowTable() table[control.Flow] {
	return table[control.Flow]{
		header: []any{"ID", "PROTO", "DIRECTION", "GUEST", "REMOTE", "HOST", "STATE", "TO HOST", "TO GUEST", "AGE"},
		row: func(f control.Flow) []any {
			dir := f.Direction
			if f.Forward != 0 {
				dir = fmt.Sprintf("%s(%d)", dir, f.Forward)
			}
			return []any{f.ID, f.Proto, dir, f.Guest, f.Remote, f.Host, f.State, f.ToHostBytes, f.ToGuestBytes,
				time.Duration(f.AgeSeconds * float64(time.Second)).Round(time.Second)}
		},
	}
}

// endpoints prints ADDR:PORT or ADDR:PORT-END, IPv6 in brackets.
func endpoints(addr string, port uint16, n int) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	s := addr + ":" + strconv.Itoa(int(port))
	if n > 1 {
		s += "-" + strconv.Itoa(int(port)+n-1)
	}
	return s
}

// printStats shows every counter of /v1/stats, section by section, a
// count kept by reason as one row per reason.
func printStats(w io.Writer, st control.Stats) {
	row := func(k string, v any) { writeRow(w, k, v) }
	row("uptime", time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second))
	row("links", st.Links)
	for _, name := range sortedKeys(st.Sections) {
		sec := st.Sections[name]
		for _, k := range sortedKeys(sec) {
			switch v := sec[k].(type) {
			case map[string]any:
				for _, reason := range sortedKeys(v) {
					row(name+" "+k+": "+reason, v[reason])
				}
			default:
				row(name+" "+k, v)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Command flowload is the scale benchmark's load tool: a server that
// answers fixed-size requests, and a client that opens many concurrent
// TCP flows to it and runs a closed request/response loop on each.
//
//	flowload server -listen 127.0.0.1:0
//	flowload client -addr 10.0.2.2:PORT -flows 10000 -size 16384 -duration 5s [-wait]
//
// The server prints "listening ADDR" once it accepts. The client prints
// one JSON line after connecting ({"connected": ...}) and one after the
// load ({"result": ...}). With -wait it reads a line from stdin between
// the two, so the benchmark can measure the idle flows' memory first.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/bench/internal/flows"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flowload:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: flowload server|client [flags]")
	}
	switch args[0] {
	case "server":
		return server(args[1:], stdout)
	case "client":
		return client(args[1:], stdin, stdout)
	default:
		return fmt.Errorf("unknown mode %q (want server or client)", args[0])
	}
}

func server(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "listening", l.Addr())
	// Serve until told to stop; the listener's close ends Serve.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		l.Close()
	}()
	return flows.Serve(l)
}

func client(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var cfg flows.Config
	fs.StringVar(&cfg.Addr, "addr", "", "server address HOST:PORT")
	fs.IntVar(&cfg.Flows, "flows", 1, "concurrent TCP flows")
	fs.IntVar(&cfg.ResponseSize, "size", 16384, "response size in bytes")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long the flows exchange requests")
	fs.IntVar(&cfg.DialConcurrency, "dial-concurrency", 128, "connects in progress at once")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 20*time.Second, "one connect")
	wait := fs.Bool("wait", false, "after connecting, wait for a line on stdin before the load")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Addr == "" || cfg.Flows < 1 || cfg.ResponseSize < 0 || cfg.ResponseSize > flows.MaxResponse {
		return fmt.Errorf("need -addr, -flows >= 1 and 0 <= -size <= %d", flows.MaxResponse)
	}
	conns, rep := flows.Dial(context.Background(), cfg)
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(map[string]any{"connected": rep}); err != nil {
		return err
	}
	if *wait {
		if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the go-ahead on stdin: %w", err)
		}
	}
	return enc.Encode(map[string]any{"result": flows.Load(conns, cfg)})
}

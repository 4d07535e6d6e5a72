package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"github.com/slipway-net/slipway/config"
)

// configLogger is the logger cfg asks for: its level, text or JSON, to
// --log-file (appended to, kept open for the life of the process) or to
// stderr.
func configLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, error) {
	w := stderr
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, usageError{fmt.Errorf("invalid value %q for --log-file: %w", cfg.LogFile, err)}
		}
		w = f
	}
	return formatLogger(cfg.LogLevel, cfg.LogFormat, w), nil
}

// formatLogger logs at level in format (text or json) to w.
func formatLogger(level, format string, w io.Writer) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	o := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// writePIDFile writes this process's pid to path (--pid-file); the
// returned func removes it again.
func writePIDFile(path string) (remove func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	if err := writePID(path); err != nil {
		return nil, fmt.Errorf("--pid-file: %w", err)
	}
	return func() { os.Remove(path) }, nil
}

// writePID writes this process's pid to path, one line.
func writePID(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

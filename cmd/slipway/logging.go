package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
)

// configLogger is the logger cfg asks for: its level, text or JSON, to
// --log-file (appended to, kept open, opened again on SIGHUP: the file
// it returns) or to stderr (and no file).
func configLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, *logFile, error) {
	if cfg.LogFile == "" {
		return formatLogger(cfg.LogLevel, cfg.LogFormat, stderr), nil, nil
	}
	lf, err := openLogFile(cfg.LogFile)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("invalid value %q for --log-file: %w", cfg.LogFile, err)}
	}
	return formatLogger(cfg.LogLevel, cfg.LogFormat, lf), lf, nil
}

// logFile is --log-file: the launcher's log, and the engine's stderr
// through a descriptor of it. Reopen opens the path again, for logrotate
// (which renames the file, then sends SIGHUP); what is written from then
// on goes to the new file.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

// Reopen opens the path again and writes there from now on; on failure
// the old file stays in use.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopen --log-file: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Dup is a descriptor of the file in use, to hand to the engine.
func (l *logFile) Dup() (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fd, err := unix.FcntlInt(l.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	return os.NewFile(uintptr(fd), l.path), nil
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

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/slipway-net/slipway/network"
)

// What a VMM that drives slipway needs besides links: the state to carry
// over a restart, the effective configuration, and a graceful stop.

// Shutdown's bounds on the drain.
const (
	DefaultShutdownTimeout = 10 * time.Second
	MaxShutdownTimeout     = 5 * time.Minute
)

// OnShutdown sets what POST /v1/shutdown does once the flows are drained:
// end the process (the front-end's job). Without it the endpoint answers
// 501.
func (s *Server) OnShutdown(fn func()) { s.onShutdown.Store(&fn) }

func (s *Server) getState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.n.State())
}

// putState imports a State, as GET /v1/state gave it, into this network.
func (s *Server) putState(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, network.MaxStateBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("state larger than %d bytes", network.MaxStateBytes))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("reading the state: %w", err))
		return
	}
	st, err := network.DecodeState(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.n.Restore(st); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, s.n.State())
}

// getConfig answers the effective configuration, under the names of the
// flags and the config file's keys. It holds no secrets: slipway's
// configuration has none.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg := s.n.Config()
	y, err := yaml.Marshal(&cfg)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// ShutdownRequest is the body of POST /v1/shutdown (optional).
type ShutdownRequest struct {
	// TimeoutSeconds bounds the wait for open flows (default 10, at
	// most 300).
	TimeoutSeconds *float64 `json:"timeout_seconds,omitempty"`
}

// ShutdownAnswer is the answer of POST /v1/shutdown.
type ShutdownAnswer struct {
	Status         string  `json:"status"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Flows          int     `json:"flows"`
}

func (s *Server) shutdown(w http.ResponseWriter, r *http.Request) {
	var req ShutdownRequest
	if r.ContentLength != 0 {
		if !decodeBody(w, r, &req) {
			return
		}
	}
	timeout := DefaultShutdownTimeout
	if req.TimeoutSeconds != nil {
		d := time.Duration(*req.TimeoutSeconds * float64(time.Second))
		if *req.TimeoutSeconds < 0 || d > MaxShutdownTimeout {
			writeError(w, http.StatusBadRequest, fmt.Errorf("timeout_seconds %v: want 0 to %v", *req.TimeoutSeconds, MaxShutdownTimeout.Seconds()))
			return
		}
		timeout = d
	}
	fn := s.onShutdown.Load()
	if fn == nil {
		writeError(w, http.StatusNotImplemented, errors.New("this slipway cannot be shut down through its API"))
		return
	}
	if !s.shuttingDown.CompareAndSwap(false, true) {
		writeError(w, http.StatusConflict, errors.New("already shutting down"))
		return
	}
	writeJSON(w, http.StatusAccepted, ShutdownAnswer{Status: "shutting down", TimeoutSeconds: timeout.Seconds(), Flows: len(s.n.Flows())})
	s.log.Info("api: shutdown requested", "timeout", timeout)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if left := s.n.Drain(ctx); left > 0 {
			s.log.Warn("shutdown: flows still open at the timeout", "flows", left)
		}
		(*fn)()
	}()
}

package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// handler routes the HTTP API. Requests no route matches get a JSON error
// with the status the router chose (404, or 405 with Allow).
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("GET /v1/forwards", s.listForwards)
	mux.HandleFunc("POST /v1/forwards", s.addForward)
	mux.HandleFunc("DELETE /v1/forwards/{id}", s.removeForward)
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.n.EgressRules())
	})
	mux.HandleFunc("POST /v1/rules", s.addRule)
	mux.HandleFunc("PUT /v1/rules", s.replaceRules)
	mux.HandleFunc("DELETE /v1/rules/{id}", s.removeRule)
	mux.HandleFunc("GET /v1/leases", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.n.LeaseInfos())
	})
	mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, links(s.n))
	})
	mux.HandleFunc("POST /v1/links", s.addLink)
	mux.HandleFunc("DELETE /v1/links/{port}", s.removeLink)
	mux.HandleFunc("POST /v1/links/{port}/down", func(w http.ResponseWriter, r *http.Request) { s.setLinkUp(w, r, false) })
	mux.HandleFunc("POST /v1/links/{port}/up", func(w http.ResponseWriter, r *http.Request) { s.setLinkUp(w, r, true) })
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, flows(s.n))
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, stats(s.n))
	})
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("GET /v1/state", s.getState)
	mux.HandleFunc("PUT /v1/state", s.putState)
	mux.HandleFunc("GET /v1/config", s.getConfig)
	mux.HandleFunc("POST /v1/shutdown", s.shutdown)
	mux.HandleFunc("GET /v1/dns/records", s.listDNSRecords)
	mux.HandleFunc("POST /v1/dns/records", s.addDNSRecord)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(s.n), collectors.NewGoCollector(), buildInfoGauge())
	if s.usage != nil {
		reg.MustRegister(newProcessCollector(s.usage))
	} else {
		reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}}))
	s.gvproxyRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Descriptors the request did not take are closed when it ends.
		if fc := connFDs(r.Context()); fc != nil {
			defer fc.discard()
		}
		if h, pattern := mux.Handler(r); pattern == "" {
			// The router's own 404/405 answer is plain text; keep its
			// status and headers (Allow), answer in JSON.
			rec := &statusRecorder{header: w.Header()}
			h.ServeHTTP(rec, r)
			msg := "no such endpoint: " + r.URL.Path
			if rec.status == http.StatusMethodNotAllowed {
				msg = fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)
			}
			writeError(w, rec.status, errors.New(msg))
			return
		}
		mux.ServeHTTP(w, r) // routes again, setting the path's values
	})
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("api: metrics", "err", fmt.Sprint(v...)) }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok", UptimeSeconds: time.Since(s.n.Started()).Seconds()})
}

func (s *Server) listForwards(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.n.Forwards())
}

func (s *Server) addForward(w http.ResponseWriter, r *http.Request) {
	var req ForwardRequest
	if !decodeBody(w, r, &req) {
		return
	}
	rule := req.PublishRule
	if req.Spec != "" {
		if rule != (config.PublishRule{}) {
			writeError(w, http.StatusBadRequest, errors.New("give either spec or the rule's fields, not both"))
			return
		}
		var err error
		if rule, err = config.ParsePublish(req.Spec); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("invalid value %q for spec: %w", req.Spec, err))
			return
		}
	}
	fw, err := s.n.Publish(rule)
	writeResult(w, http.StatusCreated, fw, err)
}

func (s *Server) removeForward(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("forward id %q is not a number", r.PathValue("id")))
		return
	}
	fw, err := s.n.Unpublish(id)
	writeResult(w, http.StatusOK, fw, err)
}

func (s *Server) addRule(w http.ResponseWriter, r *http.Request) {
	var req RuleRequest
	if !decodeBody(w, r, &req) {
		return
	}
	rule, err := config.ParseEgressRule(req.Rule)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid value %q for rule: %w", req.Rule, err))
		return
	}
	index := -1
	if req.Index != nil {
		index = *req.Index
	}
	added, err := s.n.AddEgressRule(rule, index)
	writeResult(w, http.StatusCreated, added, err)
}

func (s *Server) replaceRules(w http.ResponseWriter, r *http.Request) {
	var req RulesRequest
	if !decodeBody(w, r, &req) {
		return
	}
	rules := make([]config.EgressRule, 0, len(req.Rules))
	for _, text := range req.Rules {
		rule, err := config.ParseEgressRule(text)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("invalid value %q for rules: %w", text, err))
			return
		}
		rules = append(rules, rule)
	}
	list, err := s.n.SetEgressRules(rules)
	writeResult(w, http.StatusOK, list, err)
}

func (s *Server) removeRule(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rule id %q is not a number", r.PathValue("id")))
		return
	}
	rule, err := s.n.RemoveEgressRule(id)
	writeResult(w, http.StatusOK, rule, err)
}

// setLinkUp takes a link down or up and answers with the link as it is
// now.
func (s *Server) setLinkUp(w http.ResponseWriter, r *http.Request, up bool) {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("link port %q is not a number", r.PathValue("port")))
		return
	}
	if err := s.n.SetLinkUp(port, up); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	for _, l := range links(s.n) {
		if l.Port == port {
			writeJSON(w, http.StatusOK, l)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("link on port %d: %w", port, network.ErrNotFound))
}

// events streams the network's events as JSON lines until the client
// goes, the network closes, or the client falls too far behind.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sub, err := s.n.Subscribe()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// statusOf maps an error of the network to an HTTP status.
func statusOf(err error) int {
	var fe *config.FieldError
	switch {
	case errors.As(err, &fe), errors.Is(err, syscall.EADDRNOTAVAIL),
		errors.Is(err, network.ErrStateCorrupt), errors.Is(err, network.ErrStateVersion):
		return http.StatusBadRequest
	case errors.Is(err, network.ErrNotFound), errors.Is(err, network.ErrNoLink):
		return http.StatusNotFound
	case errors.Is(err, network.ErrConflict), errors.Is(err, syscall.EADDRINUSE), errors.Is(err, network.ErrRestoreConflict):
		return http.StatusConflict
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return http.StatusForbidden
	case errors.Is(err, network.ErrLimit), errors.Is(err, network.ErrTooManySubscribers):
		return http.StatusTooManyRequests
	case errors.Is(err, network.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// decodeBody reads one JSON object of at most MaxBody bytes with no
// unknown fields and nothing after it; otherwise it answers with the
// error and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, MaxBody), v); err != nil {
		status := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			status = http.StatusRequestEntityTooLarge
			err = fmt.Errorf("request body larger than %d bytes", MaxBody)
		}
		writeError(w, status, err)
		return false
	}
	return true
}

// decodeJSON decodes exactly one JSON value from rd into v, strictly.
func decodeJSON(rd io.Reader, v any) error {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return err
		case errors.Is(err, io.EOF):
			return errors.New("empty request body: want a JSON object")
		}
		return fmt.Errorf("malformed request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return errors.New("malformed request: data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, ErrorResponse{Error: err.Error()})
}

// writeResult answers with what the network did: v with status, or err
// with the status statusOf gives it.
func writeResult(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, status, v)
}

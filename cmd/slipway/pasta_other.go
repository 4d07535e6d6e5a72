//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/slipway-net/slipway/internal/pasta"
	"github.com/slipway-net/slipway/network"
)

// The pasta personality needs Linux (pasta.go); on other systems the
// engine is never handed a pasta spec, and these keep engine.go one file.

// pastaSpec is the pasta personality's part of an engineSpec.
type pastaSpec struct {
	Plan *pasta.Plan `json:"plan"`
}

func (s *pastaSpec) files() int       { return 0 }
func (s *pastaSpec) maxFiles() uint64 { return 0 }

// pastaEngine is the engine side of the pasta personality.
type pastaEngine struct{ spec *pastaSpec }

func adoptPasta(*pastaSpec, []*os.File) (*pastaEngine, error) {
	return nil, errors.New("the pasta personality is Linux-only")
}

func (p *pastaEngine) hook(*network.Host) {}

func (p *pastaEngine) start(context.Context, *network.Network, network.Host, *slog.Logger) error {
	return errors.New("the pasta personality is Linux-only")
}

func (p *pastaEngine) close() {}

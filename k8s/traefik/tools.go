//go:build tools

// Package tools pins the ingress controller the local cluster runs, so that go
// mod tidy keeps it in go.mod and go build can build it from this module.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)

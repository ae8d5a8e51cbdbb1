// Package emutest starts an emulator for a test, against the Azurite that
// EVOFS_AZURITE_URL names (contrib/azurite/run sets it).
package emutest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// Start starts an emulator with an in-memory store and a fresh container of
// its own (tests sharing one Azurite are isolated), applies mod to the
// config, and closes it when the test ends. It fails the test if
// EVOFS_AZURITE_URL is not set.
func Start(t testing.TB, mod ...func(*emulator.Config)) *emulator.Server {
	t.Helper()
	endpoint := os.Getenv("EVOFS_AZURITE_URL")
	if endpoint == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: run the tests with `make test` (or contrib/azurite/run go test ...)")
	}
	cfg := emulator.Config{BlobEndpoint: endpoint, Container: ContainerName()}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := emulator.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close emulator: %v", err)
		}
	})
	return s
}

// ContainerName returns a fresh random container name ("t" + 24 hex).
func ContainerName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

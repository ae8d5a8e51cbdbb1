package emulator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/time/rate"
)

// Network shaping of the blob proxy: one token bucket over the bytes of
// every blob request body (uploads) and response body (downloads), shared by
// all clients and both directions, as one link of that bandwidth would be;
// and a fixed delay before each blob request (BlobLatency). The bytes are
// paced as they flow, in pieces of at most shapeChunk, so a shaped transfer
// still streams.

// shapeChunk is the most bytes a shaped body moves between two waits on
// the bucket.
const shapeChunk = 64 << 10

// burstFor is the bucket's depth at bps bytes/s: 10 ms of traffic, at
// least one chunk and at most 1 MiB, so that an idle link lets a short
// burst through but a long transfer runs at the rate.
func burstFor(bps int64) int {
	return int(min(max(bps/100, shapeChunk), 1<<20))
}

// newShaper is an unlimited bucket, limited at bps bytes/s if bps > 0.
func newShaper(bps int64) *rate.Limiter {
	lim := rate.NewLimiter(rate.Inf, shapeChunk)
	setBandwidth(lim, bps)
	return lim
}

// setBandwidth sets lim to bps bytes/s, or unlimited if bps <= 0.
func setBandwidth(lim *rate.Limiter, bps int64) {
	if bps <= 0 {
		lim.SetLimit(rate.Inf)
		return
	}
	lim.SetBurst(burstFor(bps))
	lim.SetLimit(rate.Limit(bps))
}

// SetShaping sets the blob proxy's network: a bandwidth shared by every
// blob transfer in both directions (bytes per second, 0 = unlimited) and
// the delay added before each blob request (as SetLatency's blob delay).
// Requests already under way keep the delay they had; their remaining bytes
// follow the new bandwidth, unless they started unshaped.
func (s *Server) SetShaping(bytesPerSec int64, latency time.Duration) {
	s.setKnobs(func(k *knobSet) {
		k.blobBandwidth, k.blobLatency = max(bytesPerSec, 0), max(latency, 0)
		setBandwidth(s.shaper, k.blobBandwidth)
	})
}

// waitBytes takes n bytes' worth of tokens from lim, waiting for them; it
// fails only when ctx ends first.
func waitBytes(ctx context.Context, lim *rate.Limiter, n int) error {
	for n > 0 {
		if lim.Limit() == rate.Inf {
			return nil
		}
		// The burst may change between calls (SetShaping): never ask for
		// more than it, or WaitN refuses.
		k := min(n, max(lim.Burst(), 1))
		if err := lim.WaitN(ctx, k); err != nil {
			return fmt.Errorf("blob proxy shaping: %w", err)
		}
		n -= k
	}
	return nil
}

// shapedBody paces a request body: each read returns at most shapeChunk
// bytes and then waits for their tokens.
type shapedBody struct {
	io.ReadCloser
	ctx context.Context
	lim *rate.Limiter
}

func (b *shapedBody) Read(p []byte) (int, error) {
	if len(p) > shapeChunk {
		p = p[:shapeChunk]
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if werr := waitBytes(b.ctx, b.lim, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// shapedWriter paces a response body: it waits for each piece's tokens
// before writing it. It unwraps for http.ResponseController.
type shapedWriter struct {
	http.ResponseWriter
	ctx context.Context
	lim *rate.Limiter
}

func (w *shapedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		piece := p[:min(len(p), shapeChunk)]
		if err := waitBytes(w.ctx, w.lim, len(piece)); err != nil {
			return written, err
		}
		n, err := w.ResponseWriter.Write(piece)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (w *shapedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ParseBandwidth reads a bandwidth in bytes per second: a plain number of
// bytes, bytes with a unit ("125MB", "100MiB/s"), or bits with one
// ("1Gbit/s", "800Mbps": divided by 8). "", "0", "off" and "unlimited"
// are 0, no limit.
func ParseBandwidth(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "", "0", "off", "unlimited":
		return 0, nil
	}
	t = strings.TrimSpace(strings.TrimSuffix(t, "/s"))
	bits := false
	for _, suffix := range []string{"bit", "bps"} {
		if rest, ok := strings.CutSuffix(t, suffix); ok {
			t, bits = rest+"b", true
			break
		}
	}
	n, err := humanize.ParseBytes(t)
	if err != nil {
		return 0, fmt.Errorf("bandwidth %q: %w", s, err)
	}
	if bits {
		n /= 8
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("bandwidth %q: too large", s)
	}
	return int64(n), nil
}

package cache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// tracer writes one line per step of each block's way through the cache
// (see Options.Trace):
//
//	<ms since Open> <file id>@<version id> <block> <step>
//
// Steps: want (readahead picked the block), slot (it got its readahead
// slots), fetch (the Fetcher was called; "demand" or "readahead" follows),
// first-byte (the Fetcher's own mark: the response began), fetched (the
// Fetcher returned), stored (it is in its file and indexed, or was dropped), wait and
// woke (a reader blocked on the block and got it).
type tracer struct {
	t0 time.Time
	mu sync.Mutex
	w  *bufio.Writer // GUARDED_BY(mu)
}

func newTracer(w io.Writer) *tracer {
	if w == nil {
		return nil
	}
	return &tracer{t0: time.Now(), w: bufio.NewWriterSize(w, 64<<10)}
}

// mark records step of block b. A nil tracer does nothing.
func (t *tracer) mark(b *block, step string) {
	if t == nil {
		return
	}
	ms := float64(time.Since(t.t0).Microseconds()) / 1000
	t.mu.Lock()
	fmt.Fprintf(t.w, "%.3f %s@%s %d %s\n", ms, b.v.FileID, b.v.VersionID, b.idx, step)
	t.mu.Unlock()
}

// flush writes out buffered lines.
func (t *tracer) flush() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.w.Flush()
	t.mu.Unlock()
}

type traceKey struct{}

// traceMark is what a fetch's context carries when tracing is on.
type traceMark func(step string)

// TraceMark adds step to the trace of the block being fetched on ctx, if
// the cache traces (Options.Trace) and ctx is a fetch's context. A Fetcher
// calls it for steps the cache cannot see, such as "first-byte".
func TraceMark(ctx context.Context, step string) {
	if m, ok := ctx.Value(traceKey{}).(traceMark); ok {
		m(step)
	}
}

// Tracing reports whether ctx is the context of a traced fetch: a Fetcher
// can skip setting up its own marks otherwise.
func Tracing(ctx context.Context) bool {
	_, ok := ctx.Value(traceKey{}).(traceMark)
	return ok
}

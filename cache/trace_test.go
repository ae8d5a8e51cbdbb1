package cache

import (
	"context"
	"strings"
	"testing"
)

// markingSource marks "first-byte" in the trace, as evofs's fetcher does.
type markingSource struct{ *source }

func (m markingSource) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	if !Tracing(ctx) {
		return 0, context.Canceled // the cache must hand a traced context to its Fetcher
	}
	TraceMark(ctx, "first-byte")
	return m.source.FetchAt(ctx, p, off)
}

func TestTraceRecordsEveryStep(t *testing.T) {
	trace := &syncBuffer{}
	c, _ := openCache(t, "disk", "", Options{BlockSize: 64 << 10, Trace: trace})
	src := newSource(4*64<<10, 1)
	f := c.File(Version{FileID: "tr", VersionID: "1", Size: src.size}, markingSource{src}, FileOptions{})
	readAll(t, f, src.size, 16<<10)
	settle(t, c, f)
	f.Close()
	c.trace.flush()
	steps := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(trace.String()), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 4 || fields[1] != "tr@1" {
			t.Fatalf("malformed trace line %q", l)
		}
		steps[fields[3]]++
	}
	for _, s := range []string{"fetch", "first-byte", "fetched", "stored", "wait", "woke"} {
		if steps[s] == 0 {
			t.Errorf("no %q step in the trace:\n%s", s, trace.String())
		}
	}
	if steps["fetched"] != 4 || steps["stored"] != 4 {
		t.Errorf("%d fetched and %d stored steps for 4 blocks", steps["fetched"], steps["stored"])
	}
	if Tracing(context.Background()) {
		t.Error("Tracing is true outside a fetch")
	}
	TraceMark(context.Background(), "nothing") // no trace: no effect, no panic
}

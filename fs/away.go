package fs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/evofs/evofs/remote"
)

// A kernel request that needs the service waits while the service answers
// (however slowly: a big read on a slow link is not a failure) and stops
// waiting once the service is away (remote.Health: silent for its
// StallAfter). It then fails with EIO and one log line; what it started
// (a fetch, an upload) goes on in the background and finishes when the
// service is back.

// errServiceAway is the error of a request given up because the service
// stopped answering. It is EIO to applications.
var errServiceAway = errors.New("the service does not answer")

// awayPoll is how often a waiting request looks at the service's health.
const awayPoll = 250 * time.Millisecond

// awayCtx returns a context that is cancelled (cause errServiceAway) once
// h says the service is away, checked every awayPoll while the caller
// waits; done releases it. A request that does not wait longer than
// awayPoll is never cancelled, so answers from the cache go on while the
// service is away.
func awayCtx(ctx context.Context, h *remote.Health) (context.Context, func()) {
	if h == nil {
		return ctx, func() {}
	}
	c, cancel := context.WithCancelCause(ctx)
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	check := func() {
		if h.Down() {
			cancel(errServiceAway)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(awayPoll)
		}
	}
	mu.Lock()
	t = time.AfterFunc(awayPoll, check)
	mu.Unlock()
	return c, func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
		cancel(nil)
	}
}

// awayErr turns err, the failure of a request made with ctx from awayCtx,
// into errServiceAway when that is why it ended.
func awayErr(ctx context.Context, h *remote.Health, err error) error {
	if err == nil || !errors.Is(context.Cause(ctx), errServiceAway) {
		return err
	}
	return fmt.Errorf("%w (since %s)", errServiceAway, h.DownSince().Format(time.TimeOnly))
}

// away is awayCtx with the mount's Health; awayErr likewise.
func (f *FS) away(ctx context.Context) (context.Context, func()) { return awayCtx(ctx, f.opt.Health) }

func (f *FS) awayErr(ctx context.Context, err error) error { return awayErr(ctx, f.opt.Health, err) }

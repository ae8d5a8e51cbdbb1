package remote

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"
)

// LinkSource asks the File API for a fresh link to the same blob (same
// version_id): get-by-id ?version_id=V for a download link, update-by-id
// ?version_id=V for an upload link.
type LinkSource func(ctx context.Context) (string, error)

// Link renewal tuning.
const (
	// maxRenewMargin caps how long before its expiry a link is renewed.
	maxRenewMargin = 2 * time.Minute
	// renewRetryAfter is how long a failed proactive renewal waits before
	// the next attempt, while the current link is still usable.
	renewRetryAfter = 5 * time.Second
	// renewTimeout bounds one call of the LinkSource. The call runs detached
	// from the caller that started it so that other waiters still get its
	// result if that caller gives up.
	renewTimeout = 2 * time.Minute
)

// Link is a pre-signed link that renews itself: proactively when its expiry
// (the `se` query parameter) is within a margin (the smaller of 2 minutes
// and a quarter of its lifetime when first seen), and on demand through
// Renew after the store refused it (errors.Is(err, ErrLinkExpired)).
//
// A Link is safe for concurrent use. Concurrent renewals are coalesced: N
// goroutines that hit the same expired link cause one LinkSource call.
type Link struct {
	renew LinkSource
	now   func() time.Time // the clock; tests replace it

	mu       sync.Mutex
	url      string
	renewAt  time.Time // zero: never renew proactively (no expiry known)
	expires  time.Time // zero: unknown
	retryAt  time.Time // after a failed proactive renewal, not before this
	flight   *renewal  // the renewal in progress, if any
	renewals int64
}

// renewal is one LinkSource call that several goroutines may wait for.
type renewal struct {
	done chan struct{}
	url  string
	err  error
}

// NewLink returns a Link that starts with url and asks renew for a new one.
// renew may be nil for a link that cannot be renewed.
func NewLink(url string, renew LinkSource) *Link {
	return newLink(url, renew, time.Now)
}

// newLink is NewLink on the clock now.
func newLink(url string, renew LinkSource, now func() time.Time) *Link {
	l := &Link{renew: renew, now: now}
	l.install(url)
	return l
}

// install makes u the current link and computes when to renew it. The
// caller holds l.mu (or owns l exclusively).
func (l *Link) install(u string) {
	now := l.now()
	l.url = u
	l.expires, l.renewAt = time.Time{}, time.Time{}
	exp, ok := linkExpiry(u)
	if !ok {
		return
	}
	l.expires = exp
	margin := min(maxRenewMargin, exp.Sub(now)/4)
	l.renewAt = exp.Add(-max(margin, 0))
}

// linkExpiry reads the `se` (signed expiry) query parameter of a SAS link.
func linkExpiry(link string) (time.Time, bool) {
	u, err := url.Parse(link)
	if err != nil {
		return time.Time{}, false
	}
	se := u.Query().Get("se")
	if se == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, se); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// URL returns the current link, renewing it first when it is about to
// expire. A failed proactive renewal is not an error while the current link
// has not expired yet: the current link is returned and the renewal is
// tried again a little later.
func (l *Link) URL(ctx context.Context) (string, error) {
	l.mu.Lock()
	cur := l.url
	now := l.now()
	due := l.renew != nil && !l.renewAt.IsZero() && !now.Before(l.renewAt) &&
		(l.flight != nil || !now.Before(l.retryAt))
	stillValid := l.expires.IsZero() || now.Before(l.expires)
	l.mu.Unlock()
	if !due {
		return cur, nil
	}
	u, err := l.Renew(ctx, cur)
	if err == nil {
		return u, nil
	}
	if ctx.Err() != nil || !stillValid {
		return "", err
	}
	l.mu.Lock()
	l.retryAt = l.now().Add(renewRetryAfter)
	l.mu.Unlock()
	return cur, nil
}

// Renew returns a fresh link. It calls the LinkSource only if stale is still
// the current link; if another goroutine renewed it meanwhile, it returns
// that newer link, and if a renewal is in progress it waits for it. ctx
// bounds the wait; a renewal that a cancelled caller started still completes
// for the others.
func (l *Link) Renew(ctx context.Context, stale string) (string, error) {
	l.mu.Lock()
	if l.url != stale {
		cur := l.url
		l.mu.Unlock()
		return cur, nil
	}
	if l.renew == nil {
		l.mu.Unlock()
		return "", fmt.Errorf("renew link: %w (no link source)", ErrLinkExpired)
	}
	f := l.flight
	if f == nil {
		f = &renewal{done: make(chan struct{})}
		l.flight = f
		go l.runRenewal(context.WithoutCancel(ctx), f)
	}
	l.mu.Unlock()
	select {
	case <-f.done:
		return f.url, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("renew link: %w", ctx.Err())
	}
}

// runRenewal calls the LinkSource once and publishes its result to f.
func (l *Link) runRenewal(ctx context.Context, f *renewal) {
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	u, err := l.renew(ctx)
	if err == nil && u == "" {
		err = errors.New("link source returned an empty link")
	}
	l.mu.Lock()
	if err != nil {
		f.err = fmt.Errorf("renew link: %w", redactErr(err))
	} else {
		l.install(u)
		l.renewals++
		l.retryAt = time.Time{}
		f.url = u
	}
	l.flight = nil
	l.mu.Unlock()
	close(f.done)
}

// Renewals reports how many times the link was renewed.
func (l *Link) Renewals() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewals
}

// String prints the link without its query string (the signature).
func (l *Link) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Redact(l.url)
}

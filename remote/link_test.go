package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sasURL is a link shaped like a SAS link that expires at se.
func sasURL(n int, se time.Time) string {
	return fmt.Sprintf("https://acct.blob.core.windows.net/c/b?sv=2024-08-04&se=%s&sp=r&sig=SECRET%d",
		se.UTC().Format(time.RFC3339), n)
}

// countingSource issues links that live ttl on clk, counting the calls.
type countingSource struct {
	clk   *fakeClock
	ttl   time.Duration
	calls atomic.Int64
}

func (s *countingSource) next(context.Context) (string, error) {
	n := s.calls.Add(1)
	return sasURL(int(n), s.clk.Now().Add(s.ttl)), nil
}

func TestLinkExpiryParse(t *testing.T) {
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, url string
		ok        bool
		want      time.Time
	}{
		{"rfc3339", "https://h/c/b?se=2030-01-02T03%3A04%3A05Z&sig=x", true, want},
		{"unescaped", "https://h/c/b?se=2030-01-02T03:04:05Z&sig=x", true, want},
		{"fraction", "https://h/c/b?se=2030-01-02T03:04:05.0000000Z", true, want},
		{"minutes", "https://h/c/b?se=2030-01-02T03:04Z", true, want.Add(-5 * time.Second)},
		{"date", "https://h/c/b?se=2030-01-02", true, time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"none", "https://h/c/b?sig=x", false, time.Time{}},
		{"garbage", "https://h/c/b?se=soon", false, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := linkExpiry(tc.url)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("linkExpiry = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestLinkProactiveRenewal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		notYet    time.Duration // URL at this age keeps the link
		renewedAt time.Duration // URL at this age renews it
	}{
		{"production 30m, margin 2m", 30 * time.Minute, 27*time.Minute + 59*time.Second, 28 * time.Minute},
		{"short 40s, margin 10s", 40 * time.Second, 29 * time.Second, 30 * time.Second},
		{"already expired", -time.Minute, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			src := &countingSource{clk: clk, ttl: 30 * time.Minute}
			first := sasURL(0, clk.Now().Add(tc.ttl))
			l := newLink(first, src.next, clk.Now)
			ctx := context.Background()
			if tc.notYet >= 0 {
				clk.Advance(tc.notYet)
				if u, err := l.URL(ctx); err != nil || u != first {
					t.Fatalf("at %v: URL = %q, %v; want the first link", tc.notYet, u, err)
				}
				clk.Advance(tc.renewedAt - tc.notYet)
			}
			u, err := l.URL(ctx)
			if err != nil || u == first {
				t.Fatalf("at %v: URL = %q, %v; want a renewed link", tc.renewedAt, u, err)
			}
			if l.Renewals() != 1 || src.calls.Load() != 1 {
				t.Fatalf("renewals %d, source calls %d; want 1, 1", l.Renewals(), src.calls.Load())
			}
			// The fresh link is good for a while: no second renewal.
			if u2, _ := l.URL(ctx); u2 != u || src.calls.Load() != 1 {
				t.Fatalf("second URL renewed again (%d calls)", src.calls.Load())
			}
		})
	}
}

func TestLinkRenewCoalesced(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	release := make(chan struct{})
	var calls atomic.Int64
	first := sasURL(0, clk.Now().Add(time.Hour))
	l := newLink(first, func(ctx context.Context) (string, error) {
		calls.Add(1)
		<-release
		return sasURL(1, clk.Now().Add(time.Hour)), nil
	}, clk.Now)

	const n = 50
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = l.Renew(context.Background(), first) })
	}
	time.Sleep(50 * time.Millisecond) // let them all queue on the one renewal
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] == first || got[i] != got[0] {
			t.Fatalf("goroutine %d: %q, %v", i, got[i], errs[i])
		}
	}
	if calls.Load() != 1 || l.Renewals() != 1 {
		t.Fatalf("source calls %d, renewals %d; want 1, 1", calls.Load(), l.Renewals())
	}
	// A late goroutine still holding the old link gets the new one for free.
	if u, err := l.Renew(context.Background(), first); err != nil || u != got[0] || calls.Load() != 1 {
		t.Fatalf("stale Renew = %q, %v (calls %d)", u, err, calls.Load())
	}
}

func TestLinkRenewCancelledWaiter(t *testing.T) {
	release := make(chan struct{})
	first := sasURL(0, time.Now().Add(time.Hour))
	l := NewLink(first, func(ctx context.Context) (string, error) {
		<-release
		return sasURL(1, time.Now().Add(time.Hour)), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := l.Renew(ctx, first); done <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Renew: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("cancelled Renew did not return")
	}
	// The renewal it started completes for the others.
	other := make(chan string, 1)
	go func() { u, _ := l.Renew(context.Background(), first); other <- u }()
	close(release)
	if u := <-other; u == first || u == "" {
		t.Fatalf("renewal after cancelled starter = %q", u)
	}
	if l.Renewals() != 1 {
		t.Fatalf("renewals = %d, want 1", l.Renewals())
	}
}

func TestLinkRenewFailure(t *testing.T) {
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	var calls atomic.Int64
	first := sasURL(0, clk.Now().Add(time.Minute))
	l := newLink(first, func(context.Context) (string, error) {
		calls.Add(1)
		return "", fmt.Errorf("GET https://hub/file?version_id=1&sig=TOPSECRET: %w", ErrGone)
	}, clk.Now)
	ctx := context.Background()

	// Proactive renewal fails while the link is still valid: keep it, and
	// do not ask again at once.
	clk.Advance(50 * time.Second)
	for range 3 {
		if u, err := l.URL(ctx); err != nil || u != first {
			t.Fatalf("URL = %q, %v; want the still valid link", u, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("source calls = %d, want 1 (backoff after a failure)", calls.Load())
	}
	// Once expired, the failure is the caller's.
	clk.Advance(time.Minute)
	_, err := l.URL(ctx)
	if err == nil || !errors.Is(err, ErrGone) {
		t.Fatalf("URL of an expired, unrenewable link: %v", err)
	}
	if strings.Contains(err.Error(), "sig=") || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error leaks the link: %v", err)
	}
	if _, err := NewLink(first, nil).Renew(ctx, first); !errors.Is(err, ErrLinkExpired) {
		t.Fatalf("Renew without a source: %v", err)
	}
}

func TestLinkWithoutExpiryNeverRenewsProactively(t *testing.T) {
	var calls atomic.Int64
	l := NewLink("http://127.0.0.1/c/b?sig=x", func(context.Context) (string, error) {
		calls.Add(1)
		return "http://127.0.0.1/c/b?sig=y", nil
	})
	if u, err := l.URL(context.Background()); err != nil || u != "http://127.0.0.1/c/b?sig=x" || calls.Load() != 0 {
		t.Fatalf("URL = %q, %v, calls %d", u, err, calls.Load())
	}
	if s := l.String(); s != "http://127.0.0.1/c/b" {
		t.Fatalf("String = %q", s)
	}
}

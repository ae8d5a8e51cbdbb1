package remote

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// RetryPolicy bounds the retries of one File API call: at most MaxAttempts
// tries, none started after MaxElapsed, waiting a jittered exponential
// backoff between them (full jitter: a random wait up to Base·2ⁿ, capped at
// Max). A Retry-After header is honoured up to Max.
type RetryPolicy struct {
	MaxAttempts int
	Base        time.Duration
	Max         time.Duration
	MaxElapsed  time.Duration
}

// DefaultRetryPolicy is what a zero RetryPolicy means.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 8, Base: 100 * time.Millisecond, Max: 4 * time.Second, MaxElapsed: 2 * time.Minute}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts > 0 {
		d.MaxAttempts = p.MaxAttempts
	}
	if p.Base > 0 {
		d.Base = p.Base
	}
	if p.Max > 0 {
		d.Max = p.Max
	}
	if p.MaxElapsed > 0 {
		d.MaxElapsed = p.MaxElapsed
	}
	return d
}

// backoff is the wait before retry number n (1 for the first retry).
func (p RetryPolicy) backoff(n int, resp *http.Response) time.Duration {
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			return min(time.Duration(s)*time.Second, p.Max)
		}
	}
	ceil := p.Base << min(n-1, 20)
	if ceil <= 0 || ceil > p.Max {
		ceil = p.Max
	}
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryableTransportErr reports whether a request that failed without an
// HTTP response (connection refused or reset, a dropped connection, a
// truncated body) may be tried again. A cancelled context may not.
func retryableTransportErr(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	// Resets, refusals and EOFs of a dropped connection are all worth
	// another try; only the caller giving up is not.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

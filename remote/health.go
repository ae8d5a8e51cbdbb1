package remote

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultStallAfter is Health's default silence before the service counts
// as away.
const DefaultStallAfter = 5 * time.Second

// Health follows whether the service answers, from the exchanges of the
// File API client and the blob transfers that share it. The service is
// away once it has been silent for StallAfter: an exchange has waited that
// long for an answer, or every exchange since the last answer failed
// or with a server error (refused, reset, timed out, any 5xx) for
// that long. Any answer brings it back. One line is logged when it goes
// away and one when it answers again.
//
// Nothing runs in the background: the state is worked out when exchanges
// begin and end and when a waiter asks (Down), so a wait that polls Down
// learns of a stall within its polling interval even while every request
// hangs. A nil *Health is a service that is never away.
type Health struct {
	stallAfter time.Duration
	log        *slog.Logger
	now        func() time.Time

	mu         sync.Mutex
	next       uint64               // GUARDED_BY(mu): id of the next exchange
	inflight   map[uint64]time.Time // GUARDED_BY(mu): start of each exchange without an answer yet
	lastAnswer time.Time            // GUARDED_BY(mu)
	failedAt   time.Time            // GUARDED_BY(mu): first failure since lastAnswer (zero: none)
	lastFail   string               // GUARDED_BY(mu): what that failure was (no secrets: redacted)
	downSince  time.Time            // GUARDED_BY(mu): zero while the service answers
	told       bool                 // GUARDED_BY(mu): the line saying it went away was logged
	onBack     []func()             // GUARDED_BY(mu)
}

// OnBack registers f to run (in a goroutine of its own) each time the
// service answers again after being away: retries waiting out a backoff
// can go at once.
func (h *Health) OnBack(f func()) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onBack = append(h.onBack, f)
}

// NewHealth returns a Health that calls the service away after stallAfter
// of silence (DefaultStallAfter if <= 0) and logs to log (nil: discard).
func NewHealth(stallAfter time.Duration, log *slog.Logger) *Health {
	if stallAfter <= 0 {
		stallAfter = DefaultStallAfter
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Health{stallAfter: stallAfter, log: log, now: time.Now, inflight: map[uint64]time.Time{}}
}

// begin records an exchange about to be sent; end is told how it went.
func (h *Health) begin() uint64 {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	h.inflight[h.next] = h.now()
	return h.next
}

// end records the outcome of exchange id: answered (any HTTP answer but a
// 5xx, or blob bytes moving) or failed with what; an
// exchange its caller gave up (neither answered nor a what) says nothing.
func (h *Health) end(id uint64, answered bool, what string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight, id)
	if !answered && what == "" {
		return
	}
	if answered {
		h.answeredLocked()
		return
	}
	if h.failedAt.IsZero() {
		h.failedAt, h.lastFail = h.now(), what
	}
	h.checkLocked()
}

// progress records bytes moving on a long exchange: the service is there.
func (h *Health) progress() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answeredLocked()
}

func (h *Health) answeredLocked() {
	now := h.now()
	h.lastAnswer, h.failedAt, h.lastFail = now, time.Time{}, ""
	// Exchanges still waiting started before this answer: they count
	// from now.
	for id, at := range h.inflight {
		if at.Before(now) {
			h.inflight[id] = now
		}
	}
	if !h.downSince.IsZero() {
		if h.told {
			h.log.Info("service answers again", "away", now.Sub(h.downSince).Round(time.Second))
		}
		h.downSince, h.told = time.Time{}, false
		for _, f := range h.onBack {
			go f()
		}
	}
}

// checkLocked declares the service away once it has been silent long
// enough.
func (h *Health) checkLocked() {
	if !h.downSince.IsZero() {
		return
	}
	silent := h.failedAt
	for _, at := range h.inflight {
		if silent.IsZero() || at.Before(silent) {
			silent = at
		}
	}
	if silent.IsZero() || h.now().Sub(silent) < h.stallAfter {
		return
	}
	h.downSince = silent
	if h.lastAnswer.IsZero() {
		return // never reached: the caller that needed it says so
	}
	h.told = true
	why := h.lastFail
	if why == "" {
		why = "no answer for " + h.now().Sub(silent).Round(time.Second).String()
	}
	h.log.Warn("service stopped answering: what needs it fails with EIO, cached files stay readable, saves wait in the journal",
		"since", silent.Format(time.RFC3339), "why", why)
}

// Down reports whether the service is away now.
func (h *Health) Down() bool { return !h.DownSince().IsZero() }

// DownSince is when the service went silent, zero while it answers.
func (h *Health) DownSince() time.Time {
	if h == nil {
		return time.Time{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checkLocked()
	return h.downSince
}

package remote

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHealth is a Health on a clock the test moves, logging to a buffer.
func fakeHealth(stallAfter time.Duration) (*Health, *time.Time, *bytes.Buffer) {
	var logs bytes.Buffer
	h := NewHealth(stallAfter, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	return h, &now, &logs
}

func TestHealth(t *testing.T) {
	type step struct {
		advance time.Duration
		do      string // "begin", "answer", "fail", "abandon", "progress"
		down    bool   // Down() after the step
	}
	tests := []struct {
		name       string
		steps      []step
		away, back int // log lines
	}{
		{"a request unanswered past the stall is a stall", []step{
			{0, "answer", false}, {0, "begin", false}, {4 * time.Second, "", false}, {2 * time.Second, "", true},
			{time.Second, "answer", false},
		}, 1, 1},
		{"failures alone for long enough", []step{
			{0, "answer", false}, {0, "fail", false}, {3 * time.Second, "fail", false}, {3 * time.Second, "fail", true},
		}, 1, 0},
		{"an answer between failures keeps it up", []step{
			{0, "answer", false}, {0, "fail", false}, {3 * time.Second, "answer", false}, {3 * time.Second, "fail", false},
			{3 * time.Second, "", false},
		}, 0, 0},
		{"bytes moving on a long download keep it up", []step{
			{0, "answer", false}, {0, "begin", false}, {4 * time.Second, "progress", false}, {4 * time.Second, "progress", false},
			{4 * time.Second, "", false}, {2 * time.Second, "", true},
		}, 1, 0},
		{"a caller giving up says nothing", []step{
			{0, "answer", false}, {0, "begin", false}, {time.Second, "abandon", false}, {time.Minute, "", false},
		}, 0, 0},
		{"never reached: away, but not logged as stopped", []step{
			{0, "fail", false}, {6 * time.Second, "fail", true}, {0, "answer", false},
		}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, now, logs := fakeHealth(5 * time.Second)
			var backs sync.WaitGroup
			var called int
			var mu sync.Mutex
			h.OnBack(func() { mu.Lock(); called++; mu.Unlock(); backs.Done() })
			var open []uint64
			for i, s := range tc.steps {
				*now = now.Add(s.advance)
				switch s.do {
				case "begin":
					open = append(open, h.begin())
				case "answer":
					if h.Down() {
						backs.Add(1)
					}
					h.end(h.begin(), true, "")
					for _, id := range open {
						h.end(id, true, "")
					}
					open = nil
				case "fail":
					h.end(h.begin(), false, "connection refused")
				case "abandon":
					for _, id := range open {
						h.end(id, false, "")
					}
					open = nil
				case "progress":
					h.progress()
				}
				if got := h.Down(); got != s.down {
					t.Fatalf("step %d (%+v): down %v, want %v", i, s, got, s.down)
				}
			}
			backs.Wait()
			if got := strings.Count(logs.String(), "service stopped answering"); got != tc.away {
				t.Errorf("%d lines saying it went away, want %d:\n%s", got, tc.away, logs)
			}
			if got := strings.Count(logs.String(), "service answers again"); got != tc.back {
				t.Errorf("%d lines saying it is back, want %d:\n%s", got, tc.back, logs)
			}
			if strings.Contains(logs.String(), "sig=") {
				t.Errorf("a signature in the log:\n%s", logs)
			}
		})
	}
}

func TestHealthNilIsAlwaysUp(t *testing.T) {
	var h *Health
	h.end(h.begin(), false, "x")
	h.progress()
	h.OnBack(func() {})
	if h.Down() || !h.DownSince().IsZero() {
		t.Fatal("a nil Health is away")
	}
}

package emulator

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/evofs/evofs/remote"
)

// knobSet are the settings a test may turn while the emulator runs.
type knobSet struct {
	apiFault, blobFault     float64
	apiLatency, blobLatency time.Duration
	blobBandwidth           int64 // bytes/s over all blob bodies, 0 = unlimited; see shaping.go
	linkTTL, tokenTTL       time.Duration
	// stall, while not nil, holds every API and blob request unanswered
	// (the connection stays open) until it is closed: a service that
	// stops answering. A request whose client goes away ends then.
	stall  chan struct{}
	script map[string]*scripted // by API operation; see FailCalls
}

// scripted is a fault armed for one API operation: the next skip calls
// are served, the n after them answered with a problem document.
type scripted struct {
	skip, n int
	status  int
	code    string
}

func (s *Server) knobs() knobSet {
	s.knobMu.Lock()
	defer s.knobMu.Unlock()
	return s.knob
}

func (s *Server) setKnobs(f func(k *knobSet)) {
	s.knobMu.Lock()
	defer s.knobMu.Unlock()
	f(&s.knob)
}

// SetFaults sets the probabilities (0..1) of injected API and blob faults.
func (s *Server) SetFaults(api, blob float64) {
	s.setKnobs(func(k *knobSet) { k.apiFault, k.blobFault = clamp01(api), clamp01(blob) })
}

// SetLatency sets the delays added before each API and blob request.
func (s *Server) SetLatency(api, blob time.Duration) {
	s.setKnobs(func(k *knobSet) { k.apiLatency, k.blobLatency = max(api, 0), max(blob, 0) })
}

// SetLinkTTL sets the lifetime of the links handed out from now on.
func (s *Server) SetLinkTTL(d time.Duration) {
	if d > 0 {
		s.setKnobs(func(k *knobSet) { k.linkTTL = d })
	}
}

// SetTokenTTL sets the lifetime of access tokens issued from now on.
func (s *Server) SetTokenTTL(d time.Duration) {
	if d > 0 {
		s.setKnobs(func(k *knobSet) { k.tokenTTL = d })
	}
}

// SetStalled makes the service stop answering API and blob requests
// (true) or answer again (false); held requests then go on.
func (s *Server) SetStalled(on bool) {
	s.setKnobs(func(k *knobSet) {
		switch {
		case on && k.stall == nil:
			k.stall = make(chan struct{})
		case !on && k.stall != nil:
			close(k.stall)
			k.stall = nil
		}
	})
}

// waitStall holds a request while the service is stalled; it reports
// false if the client went away meanwhile.
func waitStall(r *http.Request, k knobSet) bool {
	if k.stall == nil {
		return true
	}
	select {
	case <-k.stall:
		return true
	case <-r.Context().Done():
		return false
	}
}

// FailCalls arms a scripted fault for the API operation op (OpListFiles,
// ...): of its next calls, skip are served as usual and the n after them
// are answered with a problem document of status and code (a 400
// files/invalid-path, a 502 metadata/store-error...), so that a test fails
// a call part-way through a sequence, deterministically. It replaces what
// was armed for op before; n 0 disarms it.
func (s *Server) FailCalls(op string, skip, n, status int, code string) {
	s.setKnobs(func(k *knobSet) {
		if k.script == nil {
			k.script = map[string]*scripted{}
		}
		k.script[op] = &scripted{skip: skip, n: n, status: status, code: code}
	})
}

// scriptedFault takes one call of op off its script: the problem to
// answer, or nil to serve it.
func (s *Server) scriptedFault(op string) *apiError {
	s.knobMu.Lock()
	defer s.knobMu.Unlock()
	sc := s.knob.script[op]
	switch {
	case sc == nil:
		return nil
	case sc.skip > 0:
		sc.skip--
		return nil
	case sc.n <= 0:
		delete(s.knob.script, op)
		return nil
	}
	sc.n--
	return &apiError{status: sc.status, code: sc.code, detail: "scripted fault"}
}

func clamp01(f float64) float64 { return min(max(f, 0), 1) }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Fault kinds, drawn uniformly when a fault strikes.
const (
	faultServerError = iota // 500
	faultBadGateway         // 502
	faultUnavailable        // 503
	faultDrop               // connection closed without an answer
	faultKinds
)

// roll reports whether a fault with probability rate strikes now.
func roll(rate float64) bool { return rate > 0 && rand.Float64() < rate }

// dropConn closes the client connection without answering. It reports false
// if the connection cannot be hijacked (then the caller answers 503).
// counted runs before the close: once the client sees the connection drop it
// may ask for the stats at once, and they must already hold this request.
func dropConn(w http.ResponseWriter, counted func()) bool {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	counted()
	_ = conn.Close()
	return true
}

// apiFault answers r with an injected API fault (the status writer records
// its status); a dropped connection calls counted before it drops.
func apiFault(w http.ResponseWriter, counted func()) {
	switch rand.IntN(faultKinds) {
	case faultServerError:
		writeProblem(w, problemf(http.StatusInternalServerError, remote.CodeAPIErrors, "injected fault"))
		return
	case faultBadGateway:
		code := remote.CodeBadGateway
		if rand.IntN(2) == 0 {
			code = remote.CodeMetadataStoreError
		}
		writeProblem(w, problemf(http.StatusBadGateway, code, "injected fault"))
		return
	case faultDrop:
		if dropConn(w, counted) {
			return
		}
	}
	// There is no 503 code in the contract's table: the body says api-errors.
	writeProblem(w, &apiError{status: http.StatusServiceUnavailable, code: remote.CodeAPIErrors, detail: "injected fault: service unavailable"})
}

// blobFault answers r as Azure Storage would fail (the status writer
// records its status); a dropped connection calls counted before it drops.
func blobFault(w http.ResponseWriter, counted func()) {
	var status int
	var code string
	switch rand.IntN(faultKinds) {
	case faultServerError:
		status, code = http.StatusInternalServerError, "InternalError"
	case faultBadGateway:
		status, code = http.StatusBadGateway, "BadGateway"
	case faultDrop:
		if dropConn(w, counted) {
			return
		}
		fallthrough
	default:
		status, code = http.StatusServiceUnavailable, "ServerBusy"
	}
	writeStorageError(w, status, code, "injected fault")
}

func writeStorageError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`<?xml version="1.0" encoding="utf-8"?><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error>`))
}

// statusWriter records the status and body bytes of a response. It unwraps
// for http.ResponseController (flush, hijack).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 { // 1xx are interim answers
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent, 200 if nothing was written.
func (w *statusWriter) code() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.status
}

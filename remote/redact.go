package remote

import (
	"net/http"
	"regexp"
)

// Secrets never reach a log line or an error message: SAS signatures travel
// in link query strings and tokens in Authorization headers. Every error that
// may carry a link's text passes through redactErr.

var (
	urlQuery      = regexp.MustCompile(`(?i)\b(https?://[^\s"'<>?#]*)[?#][^\s"'<>]*`)
	secretPattern = regexp.MustCompile(`(?i)(sig=|access_token=|refresh_token=|client_secret=|code=|bearer\s+)[^&\s"']+`)
)

// Redact drops the query string of every URL in s (where SAS signatures
// travel) and replaces any other secret it recognises (tokens, a stray
// sig= parameter) with "REDACTED".
func Redact(s string) string {
	return secretPattern.ReplaceAllString(urlQuery.ReplaceAllString(s, "$1"), "${1}REDACTED")
}

// redactedError keeps the chain of err for errors.Is/As but prints it
// without secrets.
type redactedError struct{ err error }

func (r redactedError) Error() string { return Redact(r.err.Error()) }
func (r redactedError) Unwrap() error { return r.err }

func redactErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(redactedError); ok {
		return err
	}
	return redactedError{err}
}

// BlobError is a failed transfer on a pre-signed link: the operation, the
// HTTP status and the storage error code (x-ms-error-code). Its message
// never holds the link's signature.
type BlobError struct {
	Op     string // "get blob", "put block", ...
	Status int
	Code   string // e.g. "AuthorizationFailure", "BlobNotFound"
	Err    error  // the underlying error, printed redacted
}

func (e *BlobError) Error() string {
	msg := e.Op
	if e.Status != 0 {
		msg += ": " + http.StatusText(e.Status)
	}
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Err != nil {
		msg += ": " + Redact(e.Err.Error())
	}
	return msg
}

func (e *BlobError) Unwrap() error { return e.Err }

// Is matches ErrLinkExpired for a link the store no longer accepts,
// ErrForbidden for a link without the needed permission and ErrNotFound for
// a missing blob.
func (e *BlobError) Is(target error) bool {
	switch target {
	case ErrLinkExpired:
		return e.Status == http.StatusForbidden &&
			(e.Code == "AuthenticationFailed" || e.Code == "AuthorizationFailure")
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	}
	return false
}

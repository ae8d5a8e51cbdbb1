package remote

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors to test with errors.Is. An *Error matches the one its
// status or code stands for; blob transfer errors match them too.
var (
	ErrNotFound           = errors.New("not found")
	ErrGone               = errors.New("gone")
	ErrAlreadyExists      = errors.New("already exists")
	ErrForbidden          = errors.New("forbidden")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrInvalid            = errors.New("invalid request")
	ErrNoUploadInProgress = errors.New("no upload in progress")
	// ErrLinkExpired: a pre-signed link was refused as expired or invalid.
	ErrLinkExpired = errors.New("link expired or invalid")
)

// Error is a failed File API call: the HTTP status and the problem
// document's code, detail and, for 403, the roles. It never holds a token or
// a signed link.
type Error struct {
	Op             string // the call, e.g. "get file"
	Status         int
	Code           string // e.g. "files/not-found"; empty if the body had none
	Title          string
	Detail         string
	PermittedRoles []string
	YourRole       string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", e.Op, e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	} else {
		fmt.Fprintf(&b, " %s", http.StatusText(e.Status))
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	} else if e.Title != "" {
		fmt.Fprintf(&b, ": %s", e.Title)
	}
	if e.Status == http.StatusForbidden && (e.YourRole != "" || len(e.PermittedRoles) > 0) {
		fmt.Fprintf(&b, " (role %q, permitted %v)", e.YourRole, e.PermittedRoles)
	}
	return b.String()
}

// Is matches the sentinel errors by status and code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrGone:
		return e.Status == http.StatusGone
	case ErrAlreadyExists:
		return e.Status == http.StatusConflict
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrNoUploadInProgress:
		return e.Code == CodeNoUploadInProgress
	case ErrInvalid:
		return (e.Status == http.StatusBadRequest && e.Code != CodeNoUploadInProgress) ||
			e.Status == http.StatusUnprocessableEntity
	}
	return false
}

// Temporary reports whether the call may succeed if tried again.
func (e *Error) Temporary() bool { return retryableStatus(e.Status) }

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// ProblemCode extracts the error code from a problem type URL.
func ProblemCode(typ string) string {
	if i := strings.Index(typ, "/file-api/"); i >= 0 {
		return typ[i+len("/file-api/"):]
	}
	return ""
}

// ErrorCode returns the service's error code carried by err ("files/gone"),
// or "" if err is not a File API error. Log lines name it.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var b *BlobError
	if errors.As(err, &b) {
		return b.Code
	}
	return ""
}

package fs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"

	"github.com/evofs/evofs/remote"
)

// errno is the one place where errors become what an application sees.
// It logs one line naming the operation, the path and the service's error
// code; interruptions are not logged.
func errno(log *slog.Logger, op, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	e := toErrno(err)
	// A bare errno is an answer (ENOTEMPTY, EEXIST...), not a failure to
	// report.
	if bare, ok := err.(syscall.Errno); ok && bare == e {
		return e
	}
	var r *refusal
	switch {
	case errors.As(err, &r):
		log.Warn(op+" refused", "path", path, "code", r.code, "errno", e.Error(), "why", r.why)
	case e != syscall.EINTR:
		log.Error(op+" failed", "path", path, "code", remote.ErrorCode(err), "errno", e.Error(), "err", err)
	}
	return e
}

// refusal is an answer evofs gives without asking the service: a name the
// service would refuse, a write on a read-only mount or by a role that may
// only read. Unlike a bare errno it is logged, with the path and the
// service's code for it where it has one.
type refusal struct {
	errno syscall.Errno
	code  string
	why   string
}

func (r *refusal) Error() string { return r.why }
func (r *refusal) Unwrap() error { return r.errno }

// errReadOnly refuses a change on a mount made with --read-only.
var errReadOnly error = &refusal{errno: syscall.EROFS, why: "the mount is read-only"}

func toErrno(err error) syscall.Errno {
	var se syscall.Errno
	switch {
	case errors.Is(err, errServiceAway), errors.Is(err, context.DeadlineExceeded):
		// A deadline is always evofs's own (the kernel sets none): the
		// service did not answer in time.
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR // the caller was interrupted
	case errors.As(err, new(*net.OpError)), errors.As(err, new(*net.DNSError)):
		// The service cannot be reached (refused, reset, unreachable):
		// the errno inside is the socket's, not one for a file.
		return syscall.EIO
	case errors.As(err, &se):
		return se
	case errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrGone):
		return syscall.ENOENT
	case errors.Is(err, remote.ErrForbidden), errors.Is(err, remote.ErrUnauthorized):
		return syscall.EACCES
	case errors.Is(err, remote.ErrAlreadyExists):
		return syscall.EEXIST
	case errors.Is(err, remote.ErrInvalid):
		return syscall.EINVAL
	}
	return syscall.EIO
}

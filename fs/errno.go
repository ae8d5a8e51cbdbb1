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
	// A bare errno is an answer (ENOTEMPTY, EEXIST, EACCES of the role
	// probe...), not a failure to report.
	if bare, ok := err.(syscall.Errno); ok && bare == e {
		return e
	}
	if e != syscall.EINTR {
		log.Error(op+" failed", "path", path, "code", remote.ErrorCode(err), "errno", e.Error(), "err", err)
	}
	return e
}

func toErrno(err error) syscall.Errno {
	var se syscall.Errno
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
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

package fs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/evofs/evofs/remote"
)

func TestToErrno(t *testing.T) {
	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{&remote.Error{Status: 404, Code: remote.CodeNotFound}, syscall.ENOENT},
		{&remote.Error{Status: 410, Code: remote.CodeGone}, syscall.ENOENT},
		{&remote.Error{Status: 403, Code: remote.CodeInsufficientRole}, syscall.EACCES},
		{&remote.Error{Status: 401, Code: remote.CodeInvalidToken}, syscall.EACCES},
		{&remote.Error{Status: 409, Code: remote.CodeAlreadyExists}, syscall.EEXIST},
		{&remote.Error{Status: 400, Code: remote.CodeInvalidPath}, syscall.EINVAL},
		{&remote.Error{Status: 503}, syscall.EIO},
		{&remote.BlobError{Status: 404, Code: "BlobNotFound"}, syscall.ENOENT},
		{fmt.Errorf("read: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("write: %w", syscall.ENOSPC), syscall.ENOSPC},
		{errors.New("mystery"), syscall.EIO},
	}
	for _, tc := range cases {
		if got := toErrno(fmt.Errorf("wrapped: %w", tc.err)); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.err, got, tc.want)
		}
	}
}

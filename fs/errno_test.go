package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// TestErrnoLogsOneLinePerFailure: a failure and a refusal each log one line
// naming the operation, the path and the service's code; a bare errno (an
// answer such as ENOENT) and an interruption log nothing.
func TestErrnoLogsOneLinePerFailure(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want syscall.Errno
		line string // "" for no line
	}{
		{"service error", &remote.Error{Status: 403, Code: remote.CodeInsufficientRole}, syscall.EACCES,
			`level=ERROR msg="open failed" path=/a/b code=auth/insufficient-role errno="permission denied"`},
		{"long name", checkName("a/" + strings.Repeat("x", 256)), syscall.ENAMETOOLONG,
			`level=WARN msg="open refused" path=/a/b code=files/invalid-path errno="file name too long" why="the name is 256 bytes; the service allows 255"`},
		{"long path", checkName(strings.Repeat("abcdefgh/", 120) + "x"), syscall.ENAMETOOLONG,
			`level=WARN msg="open refused" path=/a/b code=files/invalid-path errno="file name too long" why="the path is 1081 bytes; the service allows 1024"`},
		{"control character", checkName("a/b\x01"), syscall.EINVAL,
			`level=WARN msg="open refused" path=/a/b code=files/invalid-path errno="invalid argument" why="the service refuses such names: name contains '\\x01'"`},
		{"read-only", errReadOnly, syscall.EROFS,
			`level=WARN msg="open refused" path=/a/b code="" errno="read-only file system" why="the mount is read-only"`},
		{"viewer", errViewer, syscall.EACCES,
			`level=WARN msg="open refused" path=/a/b code=auth/insufficient-role errno="permission denied" why="the workspace role only allows reading"`},
		{"bare errno", syscall.ENOENT, syscall.ENOENT, ""},
		{"interrupted", fmt.Errorf("read: %w", context.Canceled), syscall.EINTR, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf strings.Builder
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}}))
			if got := errno(log, "open", "/a/b", tc.err); got != tc.want {
				t.Errorf("errno %v, want %v", got, tc.want)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			switch {
			case tc.line == "" && buf.Len() != 0:
				t.Errorf("logged %q, want nothing", buf.String())
			case tc.line != "" && (len(lines) != 1 || !strings.HasPrefix(lines[0], tc.line)):
				t.Errorf("logged %q, want one line starting %q", buf.String(), tc.line)
			}
		})
	}
}

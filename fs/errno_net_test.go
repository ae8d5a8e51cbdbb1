package fs

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// A service that cannot be reached is EIO, not the socket's errno
// (ECONNREFUSED from read() would mean nothing to an application).
func TestToErrnoUnreachableServiceIsEIO(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	for _, err := range []error{refused, reset} {
		if got := toErrno(fmt.Errorf("get download link: %w", err)); got != syscall.EIO {
			t.Errorf("%v: got %v, want EIO", err, got)
		}
	}
}

package fs

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// TestCheckRenamed: a folder rename is refused, before anything moves,
// when a new path of any file or folder under it is one the service would
// refuse.
func TestCheckRenamed(t *testing.T) {
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	deep := long("d", 250) + "/" + long("e", 250) + "/" + long("f", 250) // 752 bytes
	cases := []struct {
		name  string
		to    string
		files []string // below the folder
		dirs  []string // below the folder
		want  error
	}{
		{name: "short", to: "b", files: []string{"x.txt", "sub/y.txt"}, dirs: []string{"sub"}},
		{name: "empty folder", to: "b"},
		{name: "a path of exactly 1024 bytes", to: long("t", 255) + "/" + long("u", 15), files: []string{deep}},
		{name: "a path of 1025 bytes", to: long("t", 255) + "/" + long("u", 16), files: []string{deep}, want: syscall.ENAMETOOLONG},
		{name: "the long one is a folder with nothing in it", to: long("t", 255) + "/" + long("u", 16), dirs: []string{deep}, want: syscall.ENAMETOOLONG},
		{name: "the long one is last", to: long("t", 255) + "/" + long("u", 200), files: []string{"a", "b", deep + "/z"}, want: syscall.ENAMETOOLONG},
		{name: "a name the service refuses", to: "b", files: []string{"ok.txt", "bad\x01.txt"}, want: syscall.EINVAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var files []dirMove
			for _, f := range tc.files {
				files = append(files, dirMove{from: "a/" + f, to: tc.to + "/" + f})
			}
			dirs := []string{tc.to}
			for _, d := range tc.dirs {
				dirs = append(dirs, tc.to+"/"+d)
			}
			err := checkRenamed("a", tc.to, files, dirs)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var r *refusal
			if !errors.Is(err, tc.want) || !errors.As(err, &r) {
				t.Fatalf("got %v, want a refusal with %v", err, tc.want)
			}
			if toErrno(err) != tc.want {
				t.Fatalf("errno %v, want %v", toErrno(err), tc.want)
			}
		})
	}
}

package fs

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/mnt/evo", "/mnt/evo"},
		{`/mnt/my\040drive`, "/mnt/my drive"},
		{`/a\011b\012c\134d`, "/a\tb\nc\\d"},
		{`/odd\04`, `/odd\04`},
		{`/not\999octal`, `/not\999octal`},
	} {
		if got := unescapeMountinfo(tc.in); got != tc.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

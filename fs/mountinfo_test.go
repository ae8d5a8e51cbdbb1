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

func TestParseMountinfo(t *testing.T) {
	text := "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		`612 30 0:77 / /home/geo/Pit\040design rw,nosuid,nodev,relatime shared:300 - fuse.evofs Pit\040design rw,user_id=0` + "\n" +
		"short line\n"
	got := ParseMountinfo(text)
	want := []MountEntry{
		{Device: "98:0", MountPoint: "/mnt/parent", FSType: "ext3", Source: "/dev/root"},
		{Device: "0:77", MountPoint: "/home/geo/Pit design", FSType: "fuse.evofs", Source: "Pit design"},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseMountinfo: %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

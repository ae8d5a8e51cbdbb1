package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	evofs "github.com/evofs/evofs/fs"
)

func statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status MOUNTPOINT",
		Short: "List the uploads an evofs mount has not finished",
		Long: `List the files of a running evofs mount whose content is not yet committed as a
version in Evo: being uploaded, queued (async write-back), or waiting for a retry after a
failure, with their progress. Unmounting is safe whatever it shows: pending uploads are
finished at unmount (sync) or at the next mount with the same cache dir (async).`,
		Example: "  evofs status ~/evo\n  evofs status --json ~/evo | jq .pending",
		Args:    needArgs("MOUNTPOINT, the folder an evofs mount serves"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.OutOrStdout(), args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

type mountStatus struct {
	WriteBack        string                `json:"write_back"`
	UnreachableSince string                `json:"unreachable_since"` // RFC 3339; "" while the service answers
	PendingTotal     int                   `json:"pending_total"`     // all pending uploads; Pending may list only the first
	Pending          []evofs.PendingUpload `json:"pending"`
	Conflicts        []evofs.Conflict      `json:"conflicts"`
}

func runStatus(w io.Writer, mountpoint string, asJSON bool) error {
	buf := make([]byte, 1<<16)
	var n int
	var err error
	for {
		n, err = unix.Getxattr(mountpoint, evofs.StatusXattr, buf)
		if err != unix.ERANGE {
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if err != nil {
		return fmt.Errorf("%s is not an evofs mount (or it does not answer): %w", mountpoint, err)
	}
	if asJSON {
		_, err := fmt.Fprintln(w, string(buf[:n]))
		return err
	}
	var st mountStatus
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		return fmt.Errorf("status of %s: %w", mountpoint, err)
	}
	fmt.Fprintf(w, "write-back: %s\n", st.WriteBack)
	if st.UnreachableSince != "" {
		since := st.UnreachableSince
		if t, err := time.Parse(time.RFC3339, since); err == nil {
			since = fmt.Sprintf("%s (%s)", t.Local().Format(time.DateTime), humanize.Time(t))
		}
		fmt.Fprintf(w, "service: not answering since %s; cached files stay readable, saves wait here\n", since)
	}
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "conflict: %s changed elsewhere; this mount's save is %s\n", c.Path, c.Copy)
	}
	if len(st.Pending) == 0 {
		fmt.Fprintln(w, "no pending uploads")
		return nil
	}
	fmt.Fprintf(w, "%d pending upload(s):\n", max(st.PendingTotal, len(st.Pending)))
	for _, p := range st.Pending {
		state := "queued"
		switch {
		case p.Uploading:
			state = fmt.Sprintf("uploading %s of %s", humanize.IBytes(uint64(p.Staged)), humanize.IBytes(uint64(p.Size)))
		case p.Open:
			state = "open"
		case p.Failures > 0:
			state = fmt.Sprintf("retrying after %d failure(s): %s", p.Failures, p.LastError)
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", p.Path, humanize.IBytes(uint64(p.Size)), state)
	}
	if more := st.PendingTotal - len(st.Pending); more > 0 {
		fmt.Fprintf(w, "  ... and %d more\n", more)
	}
	return nil
}

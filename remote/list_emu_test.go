package remote_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// TestListAllWhileOthersDelete sweeps a 3,000-file workspace in pages of
// 100 while 4 other clients delete 1,200 of its files (chosen by a seeded
// permutation of their paths): no sweep may miss a file that was never
// deleted (a delete counts from the moment it is sent), and none may list
// a file twice.
func TestListAllWhileOthersDelete(t *testing.T) {
	const (
		files    = 3000
		pageSize = 100
		victims  = 1200
		deleters = 4
		seed     = 15
	)
	emu := emutest.Start(t, func(c *emulator.Config) { c.Synthetic, c.MaxListLimit = files, pageSize })
	emu.SetLatency(2*time.Millisecond, 0) // pages take a while, as over a network
	c := emuClient(t, emu, nil)
	ctx := context.Background()

	all, err := c.ListAll(ctx, remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	quiet := emu.Stats().APICalls(emulator.OpListFiles)
	if len(all) != files {
		t.Fatalf("first sweep: %d files, want %d", len(all), files)
	}
	slices.SortFunc(all, func(a, b remote.ListFile) int {
		if a.FullPath() < b.FullPath() {
			return -1
		}
		return 1
	})
	order := rand.New(rand.NewPCG(seed, seed)).Perm(files)[:victims]

	var mu sync.Mutex
	deleted := map[string]bool{} // GUARDED_BY(mu)
	var wg sync.WaitGroup
	for d := range deleters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			del := emuClient(t, emu, nil)
			for i := d; i < len(order); i += deleters {
				id := all[order[i]].FileID
				mu.Lock()
				deleted[id] = true
				mu.Unlock()
				if err := del.DeleteFile(ctx, id); err != nil {
					t.Errorf("delete %s: %v", id, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	sweeps, calls := 0, int64(0)
	for running := true; running; sweeps++ {
		select {
		case <-done:
			running = false // one more sweep after the last delete
		default:
		}
		before := emu.Stats().APICalls(emulator.OpListFiles)
		got, err := c.ListAll(ctx, remote.ListOptions{})
		if err != nil {
			t.Fatalf("sweep %d: %v", sweeps, err)
		}
		n := emu.Stats().APICalls(emulator.OpListFiles) - before
		calls += n
		mu.Lock()
		gone := len(deleted)
		seen := map[string]bool{}
		for _, f := range got {
			if seen[f.FileID] {
				t.Errorf("sweep %d: %s listed twice", sweeps, f.FileID)
			}
			seen[f.FileID] = true
		}
		missed := 0
		for _, f := range all {
			if !deleted[f.FileID] && !seen[f.FileID] {
				missed++
			}
		}
		mu.Unlock()
		t.Logf("sweep %d: %d files listed, %d deletes sent, %d list calls", sweeps, len(got), gone, n)
		if missed > 0 {
			t.Errorf("sweep %d missed %d files that were never deleted", sweeps, missed)
		}
	}
	final, err := c.ListAll(ctx, remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != files-victims {
		t.Errorf("after the deletes: %d files listed, want %d", len(final), files-victims)
	}
	t.Logf("%d sweeps during the deletes, %.1f list calls a sweep (%d without changes)", sweeps, float64(calls)/float64(sweeps), quiet)
	if sweeps < 3 {
		t.Errorf("only %d sweeps ran during the deletes: the test proves little", sweeps)
	}
}

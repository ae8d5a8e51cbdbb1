//go:build race

package cache

// gcHoldsWrites: see valueLogGC. Under the race detector the rewrite runs
// with writes held off, so the detector does not report Badger's own race.
const gcHoldsWrites = true

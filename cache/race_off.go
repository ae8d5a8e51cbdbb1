//go:build !race

package cache

// gcHoldsWrites: see valueLogGC.
const gcHoldsWrites = false

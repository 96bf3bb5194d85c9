//go:build race

package vhostuser_test

// raceEnabled: the race detector allocates on synchronisation, so
// allocation counts are only meaningful without it.
const raceEnabled = true

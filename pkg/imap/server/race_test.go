//go:build race

package server

// The race detector adds memory to every goroutine and allocation.
const raceEnabled = true

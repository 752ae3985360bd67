//go:build !linux

package main

// monotonicMicros: systemd runs only on Linux.
func monotonicMicros() (string, bool) { return "", false }

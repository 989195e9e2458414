//go:build !linux

package l7

import "errors"

var errNoAffinity = errors.New("cpu affinity is only supported on linux")

func allowedCPUs() ([]int, error)                      { return nil, errNoAffinity }
func startPinned(start func() error, cpus []int) error { return errNoAffinity }
func pinProcess(cpus []int) (func() error, error)      { return nil, errNoAffinity }
func threadCPUs(pid int) ([]string, error)             { return nil, errNoAffinity }

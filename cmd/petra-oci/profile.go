package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles starts the profiles asked for in the environment, for measuring
// (docs: bench/run.sh); the returned function writes them. Not flags: profiling is
// for whoever works on petra-oci, not part of its interface.
//
//	PETRA_OCI_CPUPROFILE=FILE  CPU profile of the whole command
//	PETRA_OCI_MEMPROFILE=FILE  heap profile (allocations) at the end of the command
func startProfiles() func() {
	cpu, mem := os.Getenv("PETRA_OCI_CPUPROFILE"), os.Getenv("PETRA_OCI_MEMPROFILE")
	if cpu == "" && mem == "" {
		return func() {}
	}
	var cf *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "petra-oci: PETRA_OCI_CPUPROFILE: %v\n", err)
		} else {
			cf = f
		}
	}
	if mem != "" {
		runtime.MemProfileRate = 64 << 10
	}
	return func() {
		if cf != nil {
			pprof.StopCPUProfile()
			cf.Close()
		}
		if mem != "" {
			f, err := os.Create(mem)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "petra-oci: PETRA_OCI_MEMPROFILE: %v\n", err)
			}
		}
	}
}

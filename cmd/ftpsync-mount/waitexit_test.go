package main

import (
	"os/exec"
	"testing"
	"time"
)

func TestWaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap it, as the mount's parent would
	start := time.Now()
	if !waitExit(cmd.Process.Pid, 5*time.Second) {
		t.Fatal("waitExit did not see the process end")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 3*time.Second {
		t.Errorf("waitExit returned after %v for a 0.2 s process", d)
	}

	long := exec.Command("sleep", "10")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	defer long.Process.Kill()
	if waitExit(long.Process.Pid, 100*time.Millisecond) {
		t.Fatal("waitExit reported a running process as exited")
	}
}

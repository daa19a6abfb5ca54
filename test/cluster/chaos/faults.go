// The faults: one at a time, at seeded random moments, each kind once
// per shuffled round.
package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sriov-dra/sriov-dra/test/cluster/chaos/report"
)

func (c *chaos) injectFaults(ctx context.Context) {
	rng := rand.New(rand.NewPCG(c.o.seed, 0))
	var round []string
	for {
		gap := 5*time.Second + time.Duration(rng.IntN(10_000))*time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		if len(round) == 0 {
			round = append([]string(nil), report.FaultKinds()...)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		kind := round[0]
		round = round[1:]
		hold := 10*time.Second + time.Duration(rng.IntN(15_000))*time.Millisecond
		start := time.Now()
		err := c.fault(ctx, kind, hold)
		c.mu.Lock()
		c.sum.Faults[kind]++
		c.mu.Unlock()
		if err != nil {
			fmt.Printf("chaos: %s %s: %v\n", time.Now().Format("15:04:05"), kind, err)
		} else {
			fmt.Printf("chaos: %s %s done in %s\n", time.Now().Format("15:04:05"), kind, time.Since(start).Round(100*time.Millisecond))
		}
	}
}

func (c *chaos) fault(ctx context.Context, kind string, hold time.Duration) error {
	switch kind {
	case report.FaultDriverKill:
		pid := driverPID()
		if pid == 0 {
			return errors.New("no driver process found")
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	case report.FaultDriverRollout:
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"chaos.sriov.dra.dev/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
		return retry(ctx, 30*time.Second, func() error {
			_, err := c.cs.AppsV1().DaemonSets("sriov-dra").Patch(context.Background(), "sriov-dra", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		})
	case report.FaultRuntime:
		return c.restartRuntime()
	case report.FaultKubelet:
		return c.restart("kubelet", 0)
	case report.FaultAPIServer:
		return c.restart("kube-apiserver", 20*time.Second)
	case report.FaultDiskFull:
		return fillFor(c.o.stateDir, hold)
	}
	return fmt.Errorf("unknown fault %q", kind)
}

// restartRuntime restarts the cluster's container runtime, keyed on
// RUNTIME: each runtime the harness can run names its component here.
func (c *chaos) restartRuntime() error {
	switch c.o.runtime {
	case "containerd", "":
		return c.restart("containerd", 0)
	case "crio":
		return c.restart("crio", 0)
	}
	return fmt.Errorf("no restart for runtime %q (RUNTIME): add its component to restartRuntime", c.o.runtime)
}

// restart stops a harness component (by the PID cluster.sh recorded),
// waits down for away, and starts it again with the same command line,
// environment-free of changes, logging where it logged.
func (c *chaos) restart(name string, away time.Duration) error {
	pidFile := filepath.Join(c.o.clusterDir, "pids", name+".pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: pid file %s: %w", name, pidFile, err)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("%s (pid %d) not running: %w", name, pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 150 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(away)
	logf, err := os.OpenFile(filepath.Join(c.o.clusterDir, "logs", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s again: %w", name, err)
	}
	// Not waited for: it runs on after this program, as cluster.sh's do.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	if name == "kube-apiserver" {
		return retry(context.Background(), 90*time.Second, func() error {
			_, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
			return err
		})
	}
	return nil
}

func alive(pid int) bool {
	// A zombie (our own child, not reaped) counts as gone.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

// fillFor fills the file system of dir until it has no space, keeps it
// full for hold, then frees the space.
func fillFor(dir string, hold time.Duration) error {
	p := filepath.Join(dir, "chaos-fill")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(p)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			f.Close()
			return fmt.Errorf("fill %s: %w", dir, err)
		}
	}
	// Small writes may still fit a partial block.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	f.Close()
	time.Sleep(hold)
	return nil
}

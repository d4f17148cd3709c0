package vm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/testenv"
	"github.com/vmssd/vmssd/internal/vmimage"
)

// Benchmarks of real VMs (TCG on hosts without usable KVM). Run with
//
//	go test ./tests/vm -run '^$' -bench . -benchtime 3x -timeout 30m
//
// and record the figures in docs/benchmarks.md. Each reports seconds from
// the start until every VM answers HTTP 200 on its health probe.

// BenchmarkBareQEMUBoot1 is the floor: the same image booted by a bare
// qemu-system-x86_64 with the driver's flags, to the first HTTP 200.
func BenchmarkBareQEMUBoot1(b *testing.B) { benchBare(b, 1, 1) }

// BenchmarkBareQEMUBoot4 boots 4 at once; BenchmarkBareQEMUBoot4By2 boots
// them at most 2 at a time, as the driver's boot admission does on 2 cores.
func BenchmarkBareQEMUBoot4(b *testing.B)    { benchBare(b, 4, 4) }
func BenchmarkBareQEMUBoot4By2(b *testing.B) { benchBare(b, 4, 2) }

// BenchmarkVMSSCreate1Healthy and BenchmarkVMSSCreate4Healthy time a scale
// set create until the API reports every VM healthy.
func BenchmarkVMSSCreate1Healthy(b *testing.B) { benchVMSS(b, 1) }
func BenchmarkVMSSCreate4Healthy(b *testing.B) { benchVMSS(b, 4) }

func unpacked(b *testing.B) (kernel, initrd, cmdline string) {
	art := vmimage.Build(b, "1.0.0", false)
	st, err := artifact.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	d, _, err := st.ImportFile(context.Background(), art)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := st.Unpack(context.Background(), d)
	if err != nil {
		b.Fatal(err)
	}
	m, err := st.Manifest(context.Background(), d)
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, "rootfs", m.QEMU.Kernel), filepath.Join(dir, "rootfs", m.QEMU.Initrd), m.QEMU.Cmdline
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP200(url string, deadline time.Time) bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func benchBare(b *testing.B, n, parallel int) {
	kernel, initrd, cmdline := unpacked(b)
	var total time.Duration
	var pssKB int
	for b.Loop() {
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var procs []*exec.Cmd
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				port := freePort(b)
				cmd := exec.Command("qemu-system-x86_64",
					"-machine", "pc", "-accel", "tcg,thread=single,tb-size=16", "-cpu", "qemu64",
					"-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
					"-monitor", "none", "-serial", "null",
					"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:80", port),
					"-device", "virtio-net-pci,netdev=net0,romfile=",
					"-kernel", kernel, "-initrd", initrd, "-append", cmdline+" vmssd.hostname=bare"+strconv.Itoa(i))
				if err := cmd.Start(); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				procs = append(procs, cmd)
				mu.Unlock()
				if !waitHTTP200(fmt.Sprintf("http://127.0.0.1:%d/health", port), time.Now().Add(5*time.Minute)) {
					b.Error("bare VM did not answer")
				}
			})
		}
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		time.Sleep(2 * time.Second)
		pssKB = 0
		for _, p := range procs {
			pssKB += pss(p.Process.Pid)
			_ = p.Process.Signal(syscall.SIGKILL)
			_ = p.Wait()
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/healthy")
	b.ReportMetric(float64(pssKB)/1024/float64(n), "MiB-PSS/VM")
}

func benchVMSS(b *testing.B, n int) {
	art := vmimage.Build(b, "1.0.0", false)
	dataDir := b.TempDir()
	e := testenv.Start(b, testenv.Options{DataDir: dataDir, HealthGrace: 5 * time.Minute})
	publish(b, e, art, "1.0.0")
	e.CreateRG("rg")
	var total time.Duration
	var pssKB int
	for i := 0; b.Loop(); i++ {
		path := e.VMSSPath("rg", fmt.Sprintf("b%d", i))
		body := vmBody(n)
		start := time.Now()
		if r := e.Do(http.MethodPut, path, body); r.Status != http.StatusCreated {
			b.Fatalf("create: %d %s", r.Status, r.Body)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			r := e.Do(http.MethodGet, path+"/virtualMachines?$expand=instanceView", nil)
			if strings.Count(string(r.Body), "HealthState/healthy") == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d VMs not healthy: %s", n, r.Body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		time.Sleep(2 * time.Second)
		pssKB = 0
		for _, pid := range qemuPIDs(filepath.Join(dataDir, "hosts", "local", "vms")) {
			pssKB += pss(pid)
		}
		if st, m := e.Wait(e.Do(http.MethodDelete, path, nil), 5*time.Minute); st != "Succeeded" {
			b.Fatalf("delete: %s %v", st, m)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/healthy")
	b.ReportMetric(float64(pssKB)/1024/float64(n), "MiB-PSS/VM")
}

// pss is a process's proportional set size in KiB.
func pss(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

package exec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupPrefix names every job cgroup this package creates, so a worker
// restarted after a crash finds and removes its leftovers.
const cgroupPrefix = "p2pjob-"

// cgroups is where job cgroups go on this machine: a cgroup v2 directory
// (for cgroup.kill and, when its controllers are enabled there, limits)
// and cgroup v1 directories for the memory, pids and cpu controllers that
// v2 does not provide. Any of them may be empty: then that guarantee falls
// back to rlimits (see README, "Running a worker safely").
type cgroups struct {
	prefix   string            // cgroupPrefix + this executor's owner tag
	v2       string            // parent dir in the cgroup2 hierarchy ("" none)
	v2ctrl   map[string]bool   // controllers enabled for v2's children
	v1       map[string]string // controller -> parent dir in its v1 hierarchy
	describe string
}

// detectCgroups finds writable cgroup parents for this process: its own
// cgroup in each hierarchy (job cgroups are its children, so they count
// against whatever confines the worker).
//
// owner tags this executor's cgroups (derived from its job directory), so
// workers sharing a cgroup never clean up each other's jobs.
func detectCgroups(owner string) *cgroups {
	cg := &cgroups{prefix: cgroupPrefix + owner + "-", v1: map[string]string{}, v2ctrl: map[string]bool{}}
	mounts := cgroupMounts()
	self := selfCgroups()
	if mnt, ok := mounts[""]; ok {
		dir := filepath.Join(mnt, self[""])
		if writable(dir) {
			cg.v2 = dir
			// Controllers must be on in dir's subtree_control for its
			// children. Enabling them fails when dir holds processes
			// (the worker itself) unless dir is the root: then v1 or
			// rlimits take over.
			avail, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
			for _, c := range []string{"memory", "pids", "cpu"} {
				if !hasWord(string(avail), c) {
					continue
				}
				_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0)
				sub, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
				if hasWord(string(sub), c) {
					cg.v2ctrl[c] = true
				}
			}
		}
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if cg.v2ctrl[c] {
			continue
		}
		if mnt, ok := mounts[c]; ok {
			dir := filepath.Join(mnt, self[c])
			if writable(dir) {
				cg.v1[c] = dir
			}
		}
	}
	var parts []string
	if cg.v2 != "" {
		parts = append(parts, "cgroup v2 (kill"+ctrlList(cg.v2ctrl)+")")
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if cg.v1[c] != "" {
			parts = append(parts, "cgroup v1 "+c)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no cgroups (rlimits only)")
	}
	cg.describe = strings.Join(parts, ", ")
	cg.cleanLeftovers()
	return cg
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func ctrlList(m map[string]bool) string {
	var s string
	for _, c := range []string{"memory", "pids", "cpu"} {
		if m[c] {
			s += ", " + c
		}
	}
	return s
}

func writable(dir string) bool { return syscall.Access(dir, 2 /* W_OK */) == nil }

// cgroupMounts maps each v1 controller to its mount point, and "" to the
// cgroup2 mount.
func cgroupMounts() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || len(fields) < 5 {
			continue
		}
		mnt, fstype, super := fields[4], fields[sep+1], fields[sep+3]
		switch fstype {
		case "cgroup2":
			if _, ok := out[""]; !ok {
				out[""] = mnt
			}
		case "cgroup":
			for _, o := range strings.Split(super, ",") {
				switch o {
				case "memory", "pids", "cpu":
					if _, ok := out[o]; !ok {
						out[o] = mnt
					}
				}
			}
		}
	}
	return out
}

// selfCgroups maps each controller (and "" for v2) to this process's
// cgroup path.
func selfCgroups() map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// jobLimits are what a job cgroup enforces.
type jobLimits struct {
	memory uint64 // bytes
	pids   int
	cpus   float64 // CPUs of bandwidth; 0 no limit
}

// jobCgroup is one job's set of cgroup directories.
type jobCgroup struct {
	dirs []string          // every directory created (v2 first if any)
	v2   string            // the v2 one ("" none)
	ctrl map[string]string // controller -> directory holding its files
	v1   map[string]bool   // controllers enforced through v1
}

// create makes the job's cgroups and sets their limits. A controller that
// cannot be set up is left out (the caller applies rlimits for it).
func (cg *cgroups) create(name string, l jobLimits) (*jobCgroup, error) {
	j := &jobCgroup{ctrl: map[string]string{}, v1: map[string]bool{}}
	if cg.v2 != "" {
		dir := filepath.Join(cg.v2, cg.prefix+name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("exec: cgroup: %w", err)
		}
		j.dirs = append(j.dirs, dir)
		j.v2 = dir
		for c := range cg.v2ctrl {
			j.ctrl[c] = dir
		}
	}
	for c, parent := range cg.v1 {
		dir := filepath.Join(parent, cg.prefix+name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			j.remove()
			return nil, fmt.Errorf("exec: cgroup: %w", err)
		}
		j.dirs = append(j.dirs, dir)
		j.ctrl[c] = dir
		j.v1[c] = true
	}
	if err := j.setLimits(l); err != nil {
		j.remove()
		return nil, err
	}
	return j, nil
}

func (j *jobCgroup) setLimits(l jobLimits) error {
	write := func(c, file, val string) error {
		if err := os.WriteFile(filepath.Join(j.ctrl[c], file), []byte(val), 0); err != nil {
			return fmt.Errorf("exec: cgroup %s: %w", file, err)
		}
		return nil
	}
	if _, ok := j.ctrl["memory"]; ok {
		mem := strconv.FormatUint(l.memory, 10)
		if j.v1["memory"] {
			if err := write("memory", "memory.limit_in_bytes", mem); err != nil {
				return err
			}
			// No swapping around the limit (the file exists only with
			// swap accounting).
			_ = write("memory", "memory.memsw.limit_in_bytes", mem)
		} else {
			if err := write("memory", "memory.max", mem); err != nil {
				return err
			}
			_ = write("memory", "memory.swap.max", "0")
		}
	}
	if _, ok := j.ctrl["pids"]; ok {
		if err := write("pids", "pids.max", strconv.Itoa(l.pids)); err != nil {
			return err
		}
	}
	if _, ok := j.ctrl["cpu"]; ok && l.cpus > 0 {
		quota := strconv.Itoa(int(l.cpus * 100000))
		if j.v1["cpu"] {
			_ = write("cpu", "cpu.cfs_period_us", "100000")
			if err := write("cpu", "cpu.cfs_quota_us", quota); err != nil {
				return err
			}
		} else if err := write("cpu", "cpu.max", quota+" 100000"); err != nil {
			return err
		}
	}
	return nil
}

// has reports whether controller c limits this job.
func (j *jobCgroup) has(c string) bool { _, ok := j.ctrl[c]; return ok }

// join moves pid into every job cgroup. The helper waits for this before
// it starts the job's program, so nothing the job runs is outside them.
func (j *jobCgroup) join(pid int) error {
	for _, d := range j.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("exec: join cgroup %s: %w", d, err)
		}
	}
	return nil
}

// procs lists the processes left in the job's cgroups.
func (j *jobCgroup) procs() []int {
	seen := map[int]bool{}
	var out []int
	for _, d := range j.dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// kill ends every process in the job's cgroups: cgroup.kill where v2 has
// it (atomic against forks), else SIGKILL to each listed process until
// none is left (a process forking in between is caught by the next pass;
// pids.max bounds how many there can be).
func (j *jobCgroup) kill() {
	if j.v2 != "" {
		if err := os.WriteFile(filepath.Join(j.v2, "cgroup.kill"), []byte("1"), 0); err == nil {
			j.waitEmpty()
			return
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ps := j.procs()
		if len(ps) == 0 {
			return
		}
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond) // let the kernel reap before re-reading
	}
}

func (j *jobCgroup) waitEmpty() {
	deadline := time.Now().Add(5 * time.Second)
	for len(j.procs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// oomKilled reports whether the memory controller killed a process of the
// job (or refused it memory).
func (j *jobCgroup) oomKilled() bool {
	d, ok := j.ctrl["memory"]
	if !ok {
		return false
	}
	if j.v1["memory"] {
		b, _ := os.ReadFile(filepath.Join(d, "memory.oom_control"))
		if n := statField(string(b), "oom_kill"); n > 0 {
			return true
		}
		b, _ = os.ReadFile(filepath.Join(d, "memory.failcnt"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n > 0
	}
	b, _ := os.ReadFile(filepath.Join(d, "memory.events"))
	return statField(string(b), "oom_kill") > 0 || statField(string(b), "max") > 0
}

// pidsExhausted reports whether a fork was refused by pids.max.
func (j *jobCgroup) pidsExhausted() bool {
	d, ok := j.ctrl["pids"]
	if !ok {
		return false
	}
	b, _ := os.ReadFile(filepath.Join(d, "pids.events"))
	return statField(string(b), "max") > 0
}

func statField(s, key string) int {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// remove kills what is left and deletes the job's cgroups.
func (j *jobCgroup) remove() error {
	j.kill()
	var errs []error
	for _, d := range j.dirs {
		var err error
		for range 100 { // rmdir fails while the last task is being torn down
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("exec: remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// cleanLeftovers kills and removes job cgroups a crashed worker left.
func (cg *cgroups) cleanLeftovers() {
	parents := []string{}
	if cg.v2 != "" {
		parents = append(parents, cg.v2)
	}
	for _, p := range cg.v1 {
		parents = append(parents, p)
	}
	for _, p := range parents {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), cg.prefix) {
				d := filepath.Join(p, e.Name())
				j := &jobCgroup{dirs: []string{d}}
				if p == cg.v2 {
					j.v2 = d
				}
				_ = j.remove()
			}
		}
	}
}

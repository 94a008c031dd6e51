package series

import (
	"fmt"
	"strconv"
)

// Job is one point of the sweep.
type Job struct {
	Index      int               // 0-based position in the sweep
	ID         string            // "job-1", "job-01", "job-0001", ...: 1-based, zero-padded to the width of the count
	Params     map[string]string // param name -> value
	Args       []string          // args with placeholders substituted; an exec series' program first
	Env        map[string]string // env with placeholders substituted
	InputPaths []string          // inputs with placeholders substituted, resolved against Spec.Dir
}

// JobCount is the number of jobs the sweep expands to: the product of the
// params' value counts, 1 with no params. It fails with ErrTooManyJobs
// beyond MaxJobs.
func (s *Spec) JobCount() (int, error) {
	return countJobs(s.Params)
}

func countJobs(params []Param) (int, error) {
	total := 1
	for _, p := range params {
		c := len(p.Values)
		if c == 0 {
			return 0, &Error{Field: "params." + p.Name, Err: fmt.Errorf("no values")}
		}
		if c > MaxJobs || total*c > MaxJobs {
			return 0, &Error{Field: "params." + p.Name, Err: fmt.Errorf("%w: the sweep reaches more than %d jobs", ErrTooManyJobs, MaxJobs)}
		}
		total *= c
	}
	return total, nil
}

// Expand lists the sweep's jobs: the cartesian product of the params in the
// order written, the last param varying fastest. The size is checked before
// anything is allocated.
func (s *Spec) Expand() ([]Job, error) {
	n, err := s.JobCount()
	if err != nil {
		return nil, err
	}
	t, err := s.templates()
	if err != nil {
		return nil, err
	}
	width := len(strconv.Itoa(n))
	jobs := make([]Job, n)
	idx := make([]int, len(s.Params)) // odometer over the params
	for i := range jobs {
		vals := make(map[string]string, len(s.Params))
		for k, p := range s.Params {
			vals[p.Name] = p.Values[idx[k]]
		}
		j := Job{Index: i, ID: fmt.Sprintf("job-%0*d", width, i+1), Params: vals}
		if len(t.args) > 0 || s.Program != "" {
			// The exec executor takes the program's name as the first
			// argument (protocols: Job.args[0]), as argv[0].
			j.Args = make([]string, 0, len(t.args)+1)
			if s.Program != "" {
				j.Args = append(j.Args, s.Program)
			}
			for _, a := range t.args {
				j.Args = append(j.Args, a.expand(vals))
			}
		}
		if len(t.env) > 0 {
			j.Env = make(map[string]string, len(t.env))
			for k, e := range t.env {
				j.Env[k] = e.expand(vals)
			}
		}
		if len(t.inputs) > 0 {
			j.InputPaths = make([]string, len(t.inputs))
			for k, in := range t.inputs {
				j.InputPaths[k] = s.Path(in.expand(vals))
			}
		}
		jobs[i] = j
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < len(s.Params[k].Values) {
				break
			}
			idx[k] = 0
		}
	}
	return jobs, nil
}

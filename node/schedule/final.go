package schedule

// Final reports whether job id has ended (done, or failed for good) and,
// when it failed, why. The client uses it after Failed and WorkerGone to
// learn which jobs just ended without scanning all of them.
func (s *Scheduler) Final(id int) (ended bool, reason error) {
	if !s.known(id) || !s.isFinal(id) {
		return false, nil
	}
	if s.jobs[id].state == failed {
		return true, s.jobs[id].reason
	}
	return true, nil
}

;; A WASI command that traps at once (unreachable): the executor must
;; report JOB_TRAP and the client must not retry it elsewhere.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") unreachable))

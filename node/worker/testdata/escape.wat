;; escape.wasm: tries to leave the preopened directory (fd 3) the raw way,
;; without a libc cleaning paths. Exit code 0: every attempt was refused;
;; 1: path_open "../../../../../../etc/passwd" succeeded; 2: path_symlink
;; "../../../../../../etc" -> "l" succeeded.
;; Rebuild with: wat2wasm escape.wat -o escape.wasm
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "../../../../../../etc/passwd")  ;; 28 bytes
  (data (i32.const 64) "l")
  (func (export "_start")
    ;; path_open(fd=3, dirflags=1 follow, path, len, oflags=0, rights=all, inherit=all, fdflags=0, &fd)
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 1) (i32.const 0) (i32.const 28)
                   (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 128)))
      (then (call $proc_exit (i32.const 1))))
    ;; path_symlink(old="../../../../../../etc" (21 bytes), fd=3, new="l")
    (if (i32.eqz (call $path_symlink (i32.const 0) (i32.const 21) (i32.const 3) (i32.const 64) (i32.const 1)))
      (then (call $proc_exit (i32.const 2))))))

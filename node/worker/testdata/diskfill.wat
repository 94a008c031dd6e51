;; diskfill.wasm: creates "fill" in the preopened directory (fd 3) and
;; writes 64 KiB to it for ever, ignoring every error: only the worker's
;; disk quota can stop it.
;; Rebuild with: wat2wasm diskfill.wat -o diskfill.wasm
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "fill")
  ;; iovec at 16: 64 KiB from offset 65536
  (data (i32.const 16) "\00\00\01\00\00\00\01\00")
  (func (export "_start")
    ;; path_open(fd=3, dirflags=0, "fill", oflags=CREAT|TRUNC, rights=all, inherit=all, fdflags=0, &fd=32)
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4)
      (i32.const 9) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 32)))
    (loop $write
      (drop (call $fd_write (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 40)))
      (br $write))))

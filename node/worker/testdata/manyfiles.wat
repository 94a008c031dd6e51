;; manyfiles.wasm: creates a million empty files (five-letter names) in the
;; preopened directory (fd 3), ignoring every error: only the worker's file
;; cap can stop it.
;; Rebuild with: wat2wasm manyfiles.wat -o manyfiles.wasm
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $k i32) (local $n i32)
    (loop $files
      ;; the name at 0: i in base 26, five letters
      (local.set $n (local.get $i))
      (local.set $k (i32.const 0))
      (loop $digits
        (i32.store8 (local.get $k) (i32.add (i32.const 97) (i32.rem_u (local.get $n) (i32.const 26))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 26)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $digits (i32.lt_u (local.get $k) (i32.const 5))))
      ;; path_open(fd=3, 0, name, 5, oflags=CREAT|EXCL, all, all, 0, &fd=16)
      (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 5)
            (i32.const 5) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 16)))
        (then (drop (call $fd_close (i32.load (i32.const 16))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $files (i32.lt_u (local.get $i) (i32.const 1000000))))))

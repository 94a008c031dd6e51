;; mkdirs.wasm: creates a million directories (five-letter names) in the
;; preopened directory (fd 3), ignoring every error. Directories are not
;; outputs, so the output guard lets them through: only the worker's file
;; cap (max_files) can stop it.
;; Rebuild with: wat2wasm mkdirs.wat -o mkdirs.wasm
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $k i32) (local $n i32)
    (loop $dirs
      ;; the name at 0: i in base 26, five letters
      (local.set $n (local.get $i))
      (local.set $k (i32.const 0))
      (loop $digits
        (i32.store8 (local.get $k) (i32.add (i32.const 97) (i32.rem_u (local.get $n) (i32.const 26))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 26)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $digits (i32.lt_u (local.get $k) (i32.const 5))))
      (drop (call $mkdir (i32.const 3) (i32.const 0) (i32.const 5)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $dirs (i32.lt_u (local.get $i) (i32.const 1000000))))))

;; badimport.wasm: imports a host function no worker provides.
;; Rebuild with: wat2wasm badimport.wat -o badimport.wasm
(module
  (import "env" "escape_sandbox" (func $escape (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $escape))))

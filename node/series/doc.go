// Package series reads a series spec (sweep.yaml) and expands its parameter
// sweep into jobs. It is pure apart from Load, which reads one file: Parse
// takes bytes and validates strictly (unknown keys, wrong types and bad
// values are *Error values with the field path and, where known, the line),
// and Expand lists the jobs of the cartesian product of the params in the
// order written, with {param} placeholders substituted in args, env and
// input paths ("{{" and "}}" stand for literal braces). The client
// (node/client, cmd/p2pnode) imports it.
//
// A spec:
//
//	name: pi-sweep              # [a-z0-9._-], 1..64; Load defaults it to the file's base name
//	module: pi.wasm             # relative to the spec file, or builtin:<name>
//	executor: wasm              # wasm (default) | exec
//	program: convert            # exec only, instead of module: a name in the workers' worker.exec_allow
//	args: ["-seed", "{seed}"]   # quote braces inside flow lists: {..} is YAML
//	env: {MODE: fast}
//	stdin: ""                   # or stdin_file: path
//	params:
//	  seed: {from: 1, to: 50}             # inclusive, step default 1, may be negative
//	  ratio: {from: 0.1, to: 1, step: 0.1} # exact decimal steps: 0.1 0.2 0.3 ... 1
//	  samples: [1000000]
//	inputs: ["data/{seed}.txt"]
//	outputs: [result.json]
//	resources: {memory: 64MiB, timeout: 30s, max_output: 4MiB}
//	max_price: 10               # per job; 0 = any
//	strategy: balanced          # cheapest | fastest | balanced | reputation
//	retries: 3                  # attempts beyond the first
//	workers: 0                  # 0 = as many as bid
//	results: results            # relative to the spec file; jobs in <results>/<name>/<job>/
package series

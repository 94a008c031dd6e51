// Package exec runs jobs for the worker service: a [Wasm] executor (wazero,
// WASI preview 1, the default) and an [Exec] executor for programs from the
// operator's allowlist (off unless configured). Both implement [Executor].
//
// A job gets args, env, stdin and input files and returns stdout, stderr,
// its exit code and declared output files. Failures are typed
// *protocols.RemoteError values (JOB_TRAP, JOB_TIMEOUT, JOB_MEMORY,
// JOB_OUTPUT_TOO_LARGE, JOB_OUTPUT_MISSING, MODULE_MISSING, MODULE_INVALID,
// EXECUTOR_MISSING, BAD_REQUEST); a non-zero exit code is not an error.
//
// Only the worker service and the CLI import this package.
package exec

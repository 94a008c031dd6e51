// Package exec runs jobs for the worker service: a [Wasm] executor (wazero,
// WASI preview 1, the default) and an [Exec] executor for programs from the
// operator's allowlist (off unless configured). Both implement [Executor].
//
// A job gets args, env, stdin and input files and returns stdout, stderr,
// its exit code and declared output files. Failures are typed
// *protocols.RemoteError values (JOB_TRAP, JOB_TIMEOUT, JOB_MEMORY,
// JOB_PIDS, JOB_DISK_QUOTA, JOB_OUTPUT_TOO_LARGE, JOB_OUTPUT_MISSING,
// MODULE_MISSING, MODULE_INVALID, EXECUTOR_MISSING, ENV_REFUSED,
// LIMIT_EXCEEDED, BAD_REQUEST); a non-zero exit code is not an error.
//
// Every job runs under ceilings (output, disk bytes and files, memory,
// time) and leaves nothing behind. WASM jobs are confined by the sandbox
// (their writes counted by a quota filesystem, quotafs.go); exec jobs by
// a jail, the p2pnode binary re-executed as [JailArg] in the job's own
// namespaces and cgroups with Landlock and rlimits (jail_linux.go,
// cgroup_linux.go). The binary's main, and TestMain of any package whose
// tests run exec jobs, must call [MaybeRunJail] first.
//
// Only the worker service and the CLI import this package.
package exec

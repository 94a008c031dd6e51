package main

// crashEnv names the crash point of the crash tests (ledger_crash_test.go):
// with P2PNODE_TEST_KILL_BEFORE_STORE=N the process SIGKILLs itself when the
// Nth block its home authority countersigned for it arrives, before the
// block is stored — the one moment a random kill rarely hits, which the
// account's resync exists for. Unset: no effect. The hook that reads it
// (crashpoint.go) is compiled only into the binary the tests build (-tags
// p2pnode_testhooks, e2e_test.go): a release binary ignores the variable
// (crashpoint_off.go).
const crashEnv = "P2PNODE_TEST_KILL_BEFORE_STORE"

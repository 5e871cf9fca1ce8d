//! mailbridge benchmarks. Each binary in `src/bin/` measures one path of mailbridge
//! and the same path in a peer, in the same run, and prints both with their ratio.
//! Run them with `bench/run <name>` (release build); see `bench/README.md`.

"""What the tests share and that is not a test: images built in memory (imagefactory), the real tools
(realtools), tree snapshots (treesnap), the CLI run in-process (cli), in a child process (childproc)
and behind a slow pipe (slowpipe). tests/hostile/ keeps its own helpers (its case table, harness,
fuzzing and terminal checks) beside the tests that use them."""

"""The kit's plumbing, shared by every stage: runs and their files, manifests, pins, locks, hashing,
errors, child processes and Make's edge checks. Knows no particular backend: it asks the
registry (bench.backends)."""

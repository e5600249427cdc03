"""Property-based fuzzing of the HTTP surface and the config loader, bounded to run in CI (< 60 s total)."""

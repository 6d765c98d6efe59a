"""Unit tests: fast, real SQLite files in tmp_path, no network peers."""

"""Runs: the work units kyros executes and the parsing of their model output."""

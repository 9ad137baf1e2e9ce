"""The `kyros` command line. Imports stay light: each command loads what it needs when it runs,
so `kyros --help` and shell completion never pay for httpx, pydantic or the core."""

"""The orchestration core: runs, jobs, events, AI routing and the store. Knows no HTTP or UI."""

"""The daemon: HTTP/SSE API over the core, its security guard, and the server process."""

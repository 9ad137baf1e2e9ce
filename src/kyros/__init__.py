"""kyros — a terminal-first suite for running AI coding agents."""

__version__ = "0.1.0"

#: Version of the daemon's HTTP API. A client and a daemon that disagree ask for a restart.
API_VERSION = "1"

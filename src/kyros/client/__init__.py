"""The kyros SDK: talk to a daemon over its Unix socket or TCP, starting a local one on demand.

Imports nothing heavy (httpx only); the CLI and the console use it, never the core.
"""

from kyros.client.api import Client
from kyros.client.discovery import DaemonTarget, connect, resolve_target

__all__ = ["Client", "DaemonTarget", "connect", "resolve_target"]

"""The kyros console (`kyros tui`): runs, agents, approvals and a run's detail, live.

A face like the CLI: it talks to the daemon only through :mod:`kyros.client`, from worker
threads, and never imports the core or the daemon. Importing this package loads nothing;
:mod:`kyros.tui.app` loads textual.
"""

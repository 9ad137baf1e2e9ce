"""The worker pool that executes jobs from the durable queue."""

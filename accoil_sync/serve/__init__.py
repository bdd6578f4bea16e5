"""``accoil-sync serve``: the card backend, health and metrics endpoints, the scheduler and alerts."""

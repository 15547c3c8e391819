"""time-to-dispatch: weekly-trained estimates of how long an order takes to dispatch."""

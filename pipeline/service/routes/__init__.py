"""The app's routes, a module per resource: estimates, the model served, health."""

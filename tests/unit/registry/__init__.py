"""The store and the published models."""

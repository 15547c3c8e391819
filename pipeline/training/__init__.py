"""The training stage's steps, each a function with a typed result (pipeline/train_model.py
calls them in order)."""

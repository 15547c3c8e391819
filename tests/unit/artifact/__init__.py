"""The served model's plain-number artifact."""

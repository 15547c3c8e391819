"""The week's tranche: its name, how it is read and validated, and its drift from the last."""

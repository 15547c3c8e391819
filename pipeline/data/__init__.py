"""The week's tranche: its name, how it is read and validated, its outliers and its drift."""

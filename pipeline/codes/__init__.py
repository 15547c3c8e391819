"""Product codes, in one place: how they are stored (product_codes: numpy only, what the
service loads) and how a tranche's codes are numbered and matched (numbering: training only,
with pandas and pyarrow). Every look-up, one request's or a catalogue's, is
ProductCodes.find or find_many."""

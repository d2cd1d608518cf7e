"""Reading, validating and preparing MMRec-format datasets."""

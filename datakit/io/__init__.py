"""Reading datasets from disk and writing them back atomically."""

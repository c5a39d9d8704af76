"""`datakit review`: a local web app where a person decides what `datakit fix` cannot, and the decisions file it writes."""

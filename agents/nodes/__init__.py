"""One module per stage of the research loop; each exposes `make(lab)` returning the node function."""

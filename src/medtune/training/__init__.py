"""Training: the train task, Trainer arguments from the typed config, metric callbacks."""

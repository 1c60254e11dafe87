"""A run's machinery, shared by training (`paper_alexnet.train`) and evaluation
(`paper_alexnet.evaluate`): the loop's callbacks, metrics.jsonl, checkpoints, result.json,
start-up checks, DDP, precision, signals and the stall watchdog. None of it is the paper; the
paper's parts (the model, LRN, the input pipeline, SGD, the loop) are the modules one folder up."""

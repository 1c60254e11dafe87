"""data_prep: raw ILSVRC / CIFAR-10 / Fashion-MNIST files -> verified prepared-dataset directories.

PIL and numpy only (no torch, nothing of paper_alexnet), so preparation runs on any CPU box.
This package owns the on-disk format: the writer and the reader.
"""

"""The engine: trains a population of S seeds × A optimizer arms in stacked tensors (trainer.py), with the base
optimizers (optimizers.py) and the checks that turn a composed run config into an arm (config.py)."""

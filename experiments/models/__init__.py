"""The networks the tasks stack over seeds and arms: mlp.py, the paper's one-hidden-layer ReLU MLP."""

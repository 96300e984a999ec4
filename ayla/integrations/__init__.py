"""Helpers for training stacks that call `optimizer.step()` without the loss. Each module imports its framework,
so import the one you use: `ayla.integrations.lightning` (AYLACallback), `ayla.integrations.huggingface`
(AYLATrainer). Plain PyTorch, DDP and GradScaler need none of them: see ayla.wrapper."""

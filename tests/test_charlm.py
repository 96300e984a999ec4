"""Beyond the MLPs, a transformer: the character-level language model (tasks/text.py, models/transformer.py) on a
generated corpus trains through the one trainer, with arms of a seed sharing weights and batches and AYLA's
update equal to `ayla.AYLA`."""

import hashlib
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import PROJECT, adam_and_ayla_trained, make_config, plain_ayla_loop

from experiments.engine.config import DTYPES
from experiments.models import stack, transformer
from experiments.presets import compose_run
from experiments.tasks import TASKS, text

SMALL = ["hidden=8", "epochs=1", "experiment.corpus.train_chars=8000", "experiment.corpus.test_chars=2000",
         "experiment.model.context=16", "batch_size=16"]


def test_the_corpus_is_the_same_text_on_every_machine():
    """Drawn by random.Random(seed).random() alone (a sequence Python keeps fixed across versions and platforms):
    the same text from a fresh stream, pinned by its hash; the held-out stream is another text."""
    first, again = text.Grammar(0).text(20_000), text.Grammar(0).text(20_000)
    assert first == again and len(first) == 20_000
    assert hashlib.sha256(first.encode()).hexdigest()[:16] == "843e374fa0bd0b48"
    held_out = text.corpus(text.HELD_OUT_STREAM, 20_000)
    assert held_out[:200] != first[:200]
    sentences = first.replace("\n", " ").split(". ")
    assert all(s[0].isupper() for s in sentences[:-1]) and set(first) <= set("abcdefghijklmnopqrstuvwxyzAEFMNOST .,\n")
    assert text.inflected("catch", False, False) == "catches" and text.inflected("catch", True, True) == "caught"
    assert text.plural_of("city") == "cities" and text.plural_of("box") == "boxes" and text.plural_of("day") == "days"


def test_the_transformer_is_causal_and_the_size_it_states():
    net = transformer.network(vocab=36, width=32)
    assert sum(p.numel() for p in net.parameters()) == 29_860
    assert sum(p.numel() for p in transformer.network(vocab=36, width=64).parameters()) == 108_836
    tokens = torch.randint(0, 36, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 36
    torch.testing.assert_close(net(tokens)[:, :6], net(changed)[:, :6])  # position t sees characters ≤ t only
    assert not torch.allclose(net(tokens)[:, 6:], net(changed)[:, 6:])


def test_arms_of_a_seed_share_weights_and_windows():
    cfg = make_config("experiment=charlm", *SMALL, "data.val_size=40")
    task = TASKS["charlm"](cfg, torch.device("cpu"), DTYPES[cfg.dtype])
    assert task.n_train == len(task.y) - 40 and task.test_x.shape[1] == 16
    params, _ = task.init_params([5, 6], 3)
    assert all(torch.equal(p[:, 0], p[:, a]) for p in params for a in (1, 2))
    assert not torch.equal(params[0][0, 0], params[0][1, 0])  # the embedding is the seed's
    pool = task.train_pool([5, 6])
    assert not set(pool[0].tolist()) & set(task.val_rows[0].tolist())  # held-out windows never train
    x, y = task.rows_of(pool[:, :4])
    assert x.shape == (2, 4, 16) and torch.equal(x[..., 1:], y[..., :-1])  # the next characters
    loss, correct = task.train_losses(params, pool[:, :4])
    assert loss.shape == correct.shape == (2, 3) and torch.equal(loss[:, 0], loss[:, 2])
    assert ((0 <= correct) & (correct <= 4)).all()  # characters right per window, over 4 windows
    metrics = task.evaluate(params)
    assert set(metrics) == {"test_loss", "test_acc", "val_loss", "val_acc"}
    assert (metrics["test_acc"] <= 1).all() and torch.allclose(metrics["test_loss"][:, 0], metrics["test_loss"][:, 1])
    glance = TASKS["charlm"](make_config("experiment=charlm", *SMALL, "data.test_subset=20"), torch.device("cpu"),
                             DTYPES[cfg.dtype])  # a sweep's trials score the first held-out windows only
    assert torch.equal(glance.test_x, task.test_x[:20]) and torch.equal(glance.test_y, task.test_y[:20])


def test_the_trainer_equals_ayla_wrapper_on_the_transformer():
    """Two arms (Adam, AYLA on Adam) of one seed through the trainer, in float64; the AYLA arm ends where
    AYLA(torch.optim.Adam) in a plain loop over the same module and windows ends."""
    seed = 7
    cfg, task, trained = adam_and_ayla_trained("charlm", SMALL, seed)

    module = text.model(cfg, seed, len(task.alphabet), torch.float64)

    def loss_of(rows):
        x, y = task.rows_of(rows)
        return F.cross_entropy(module(x).flatten(0, 1), y.flatten())
    losses = plain_ayla_loop(task, seed, cfg.epochs, module.parameters(), loss_of)
    assert max(losses) > 1  # AYLA's N2 branch (the loss starts near ln 36)
    mine = stack.arm_module(task.stacked, trained.params, 0, 1)
    for name, p in module.state_dict().items():
        torch.testing.assert_close(mine.state_dict()[name], p.detach(), rtol=1e-8, atol=1e-10)
    assert not torch.equal(trained.params[0][0, 0], trained.params[0][0, 1])  # Adam's arm went elsewhere


@pytest.mark.slow
def test_run_py_trains_the_language_model(tmp_path):
    """The issue's command, on a short corpus: it learns (the loss per character falls well below ln 36)."""
    result = subprocess.run([sys.executable, str(PROJECT / "run.py"), "experiment=charlm", "optimizer=ayla", "N1=0.1",
                             "epochs=2", "experiment.corpus.train_chars=40000", f"hydra.run.dir={tmp_path}/run"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["experiment"].eq("charlm").all() and metrics["ayla"].all()
    assert metrics["test_loss"].iloc[-1] < 3.0 < 3.58  # ln 36 = 3.58: chance


def test_the_language_model_has_a_fingerprint_of_its_own():
    from experiments import fingerprint as fp
    files = fp.working_tree()
    assert fp.own_sources(files, "charlm") == {
        "conf/experiment/charlm.yaml", "experiments/tasks/text.py", "experiments/tasks/vision.py",
        "experiments/tasks/images.py",
        "experiments/tasks/data.py", "experiments/models/mlp.py", "experiments/models/stack.py",
        "experiments/models/transformer.py"}
    cfg = compose_run(["experiment=charlm", "hidden=32"])
    # per character, the linear layers' multiply-adds (2 layers of 12 d², the head d · 36) × 2 forward × 3 with the
    # backward pass; per window, attention's 2 layers × 2 products of 64² · d, likewise × 2 × 3
    d, T = 32, 64
    assert text.training_flops(cfg) == 6 * (2 * 12 * d * d + d * 36) * T + 2 * 2 * T * T * d * 6

"""Character-level language modelling with any torch module: the task of a preset with `experiment.task: text`
(conf/experiment/charlm.yaml: the small transformer of models/transformer.py, beyond the paper).

The corpus is generated, not downloaded: English-like sentences from a small probabilistic grammar (determiners,
adjectives, nouns with their plurals, verbs agreeing with their subject in the present or past, prepositional
phrases, relative and joined clauses), drawn by Python's random.Random(seed).random() alone, whose sequence Python
guarantees across versions and platforms. The training text comes from stream `experiment.corpus.seed`, the
held-out text (scored as "test": the language model's validation loss) from a second stream, so the two share a
sentence only by chance. The sizes are `experiment.corpus.train_chars` and `test_chars`. Characters are the tokens
(the two texts' alphabet, sorted).

A row is a window of `context` characters and its next characters, the windows laid end to end over the text (one
epoch: every window once, in the seed's shuffled order). Tuning holds out `data.val_size` windows per seed (the
MLP task's split). Loss: cross-entropy per token; accuracy: the share of next characters predicted right.
"""

import random
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from experiments.errors import ConfigError
from experiments.models import mlp, stack
from experiments.tasks import images, vision

EVAL_WINDOWS = 256  # windows per evaluation chunk

DET = {"one": ["the", "a", "every", "one", "this", "that", "no", "each"],
       "many": ["the", "some", "many", "few", "these", "those", "all", "no", "two", "three"]}
ADJECTIVES = ("small large old young quiet loud bright dark cold warm green red blue yellow heavy light quick slow "
              "happy sad clever strange famous hidden broken golden wooden silver gentle angry busy empty").split()
NOUNS = ("cat dog bird horse farmer teacher child king queen river mountain city garden house window door tree "
         "forest road ship sailor doctor student book letter song story box glass knife mouse wolf fox baker "
         "painter village castle bridge lamp clock table chair stone flower field ocean island boat person").split()
IRREGULAR_PLURALS = {"child": "children", "mouse": "mice", "wolf": "wolves", "knife": "knives", "person": "people"}
TRANSITIVE = ("see watch find follow carry push pull open close build paint draw visit help call love hate "
              "catch chase teach know hear fix wash miss guard").split()
INTRANSITIVE = "sleep walk sing run wait laugh cry dance swim rest fall smile".split()
IRREGULAR_PAST = {"see": "saw", "find": "found", "build": "built", "draw": "drew", "catch": "caught",
                  "teach": "taught", "know": "knew", "hear": "heard", "sleep": "slept", "sing": "sang",
                  "run": "ran", "swim": "swam", "fall": "fell"}
ADVERBS = "slowly quickly quietly loudly often never again today together alone softly early late".split()
PREPOSITIONS = "near behind under over beside inside across beyond with without".split()
JOINS = [", and ", ", but ", " because ", " while ", ", so "]


class Grammar:
    """Draws sentences from one random stream (only its random(), whose sequence Python keeps fixed)."""

    def __init__(self, seed: int):
        self.random = random.Random(seed).random

    def pick(self, options):
        return options[int(self.random() * len(options))]

    def chance(self, p: float) -> bool:
        return self.random() < p

    def noun_phrase(self, plural: bool, depth: int) -> str:
        words = [self.pick(DET["many" if plural else "one"])]
        words += [self.pick(ADJECTIVES) for _ in range(self.pick([0, 0, 1, 1, 2]))]
        noun = self.pick(NOUNS)
        words.append(plural_of(noun) if plural else noun)
        phrase = " ".join(words)
        if depth < 2 and self.chance(0.2):
            phrase += f" {self.pick(PREPOSITIONS)} {self.noun_phrase(self.chance(0.4), depth + 1)}"
        elif depth < 1 and self.chance(0.1):
            phrase += f" that {self.verb_phrase(plural, self.chance(0.5), depth + 1)}"
        return phrase

    def verb_phrase(self, plural: bool, past: bool, depth: int) -> str:
        if self.chance(0.7):
            verb = inflected(self.pick(TRANSITIVE), plural, past)
            return f"{verb} {self.noun_phrase(self.chance(0.4), depth + 1)}"
        verb = inflected(self.pick(INTRANSITIVE), plural, past)
        return f"{verb} {self.pick(ADVERBS)}" if self.chance(0.5) else verb

    def clause(self) -> str:
        plural, past = self.chance(0.4), self.chance(0.5)
        return f"{self.noun_phrase(plural, 0)} {self.verb_phrase(plural, past, 0)}"

    def sentence(self) -> str:
        text = self.clause()
        if self.chance(0.3):
            text += self.pick(JOINS) + self.clause()
        return text[0].upper() + text[1:] + "."

    def text(self, characters: int) -> str:
        """At least `characters` characters of paragraphs (4 to 8 sentences each), cut to exactly that many."""
        paragraphs, size = [], 0
        while size < characters:
            paragraph = " ".join(self.sentence() for _ in range(4 + int(self.random() * 5)))
            paragraphs.append(paragraph)
            size += len(paragraph) + 1
        return "\n".join(paragraphs)[:characters]


def plural_of(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def inflected(verb: str, plural: bool, past: bool) -> str:
    """The present (third person: 'sees' for one, 'see' for several) or the past ('saw', 'walked')."""
    if past:
        if verb in IRREGULAR_PAST:
            return IRREGULAR_PAST[verb]
        return verb + "d" if verb.endswith("e") else verb + "ed"
    if plural:
        return verb
    if verb.endswith(("s", "x", "sh", "ch", "o")):
        return verb + "es"
    return verb + "s"


@cache
def corpus(seed: int, characters: int) -> str:
    """`characters` characters of the grammar's text from stream `seed`."""
    return Grammar(seed).text(characters)


HELD_OUT_STREAM = 1_000_003  # the held-out text's stream: corpus_seed + this


def texts(cfg) -> tuple[str, str]:
    spec = cfg.experiment.corpus
    return corpus(int(spec.seed), int(spec.train_chars)), corpus(int(spec.seed) + HELD_OUT_STREAM, int(spec.test_chars))


def alphabet(cfg) -> list[str]:
    """The characters of the training and held-out texts, sorted: the tokens."""
    train, test = texts(cfg)
    return sorted(set(train) | set(test))


def model(cfg, seed: int, vocab: int, dtype=torch.float32) -> torch.nn.Module:
    """The preset's model for a `vocab`-character alphabet with the initial weights of `seed` (vision.model)."""
    return vision.model(cfg, seed, dtype, vocab=vocab)


def training_flops(cfg) -> int:
    """FLOPs of one training row (a window of `context` characters), forward and backward: the linear layers' as
    torch's FlopCounterMode counts them, and attention's two T × T products per layer (scores and weighted values,
    the whole square as the kernel computes it), which the counter leaves out on the CPU: 2 · 2T²d forward, twice
    that backward."""
    spec = cfg.experiment.model
    context, width = int(spec.context), int(spec.width)
    net = model(cfg, 0, len(alphabet(cfg)))
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(2, context, dtype=torch.long)).sum().backward()
    return counter.get_total_flops() // 2 + int(spec.layers) * 12 * context ** 2 * width


class LanguageModel(images.ImageClassification):
    """The MLP task's split into training and held-out rows and its evaluation, with windows of text as rows."""

    def __init__(self, cfg, device, dtype):
        train, test = texts(cfg)
        self.alphabet = alphabet(cfg)
        lookup = {c: i for i, c in enumerate(self.alphabet)}
        self.context = int(cfg.experiment.model.context)
        self.train_tokens = torch.tensor([lookup[c] for c in train], device=device)
        test_tokens = torch.tensor([lookup[c] for c in test], device=device)
        self.y = self.windows(self.train_tokens)[0]  # one row per window (the split and the epochs count rows)
        self.test_x, self.test_y = (w.view(-1, self.context) for w in self.windows(test_tokens)[1:])
        subset = int(cfg.data.test_subset or 0)  # a sweep's trials score the first windows only: a glance
        if subset > len(self.test_x):
            raise ConfigError(f"data.test_subset={subset} exceeds the {len(self.test_x)} held-out windows "
                              f"(experiment.corpus.test_chars={cfg.experiment.corpus.test_chars})")
        if subset:
            self.test_x, self.test_y = self.test_x[:subset], self.test_y[:subset]
        self.val_size = int(cfg.data.val_size)
        if self.val_size >= len(self.y):
            raise ConfigError(f"data.val_size={self.val_size} leaves no training windows of {len(self.y)} (experiment."
                              f"corpus.train_chars={cfg.experiment.corpus.train_chars}, context {self.context})")
        self.n_train = len(self.y) - self.val_size
        self.batch_size = int(cfg.batch_size)
        self.cfg, self.loss_kind, self.device, self.dtype = cfg, "ce", device, dtype
        self.val_rows, self.stacked = None, None

    def windows(self, tokens):
        """Start offsets of the windows laid end to end, their characters (N, T) and the next ones (N, T)."""
        starts = torch.arange(0, len(tokens) - self.context, self.context, device=tokens.device)
        offsets = starts[:, None] + torch.arange(self.context, device=tokens.device)
        return starts, tokens[offsets], tokens[offsets + 1]

    def init_params(self, seeds, arms):
        modules = [model(self.cfg, seed, len(self.alphabet), self.dtype).to(self.device) for seed in seeds]
        self.stacked, params, arm_shapes = stack.stack(modules, arms)
        return params, arm_shapes

    def rows_of(self, rows):
        """Characters and next characters (…, T) of windows `rows` (…)."""
        offsets = (rows * self.context)[..., None] + torch.arange(self.context, device=rows.device)
        return self.train_tokens[offsets], self.train_tokens[offsets + 1]

    def losses(self, params, x, y, train: bool):
        """Per-arm mean cross-entropy per token (S, A) and characters predicted right per window (S, A)."""
        logits = stack.forward(self.stacked, params, x, train)  # (S, A, B, T, V)
        S, A, B, T, V = logits.shape
        loss, correct = mlp.classification_loss(logits.reshape(S, A, B * T, V), y.reshape(-1, B * T), "ce")
        return loss, correct / T

    def train_losses(self, params, rows):
        return self.losses(params, *self.rows_of(rows), True)

    def score(self, params, x, y, prefix):
        """Mean loss per token and accuracy over windows x (N, T) shared by all seeds, or (S, N, T) per seed."""
        S, n = params[0].shape[0], x.shape[-2]
        loss_sum = correct = 0
        for start in range(0, n, EVAL_WINDOWS):
            xs, ys = x[..., start:start + EVAL_WINDOWS, :], y[..., start:start + EVAL_WINDOWS, :]
            if xs.dim() == 2:
                xs, ys = xs.expand(S, *xs.shape), ys.expand(S, *ys.shape)
            loss, right = self.losses(params, xs, ys, False)
            loss_sum = loss_sum + loss * xs.shape[-2]
            correct = correct + right
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": correct.double() / n}


def build(cfg, device, dtype) -> LanguageModel:
    return LanguageModel(cfg, device, dtype)

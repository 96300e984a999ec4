"""The paper's four experiments: each module builds the Task (data, model, metrics) the trainer runs."""

from experiments import cifar100, curvefit, mnist, polynomial

TASKS = {"polynomial": polynomial.build, "curvefit": curvefit.build, "mnist": mnist.build,
         "cifar100": cifar100.build}
DATASETS = {"mnist": mnist.SPEC, "cifar100": cifar100.SPEC}

"""Plan, launch and write runs: runner.py (run configs → a trained population → its folder), units.py (a figure's
population at one hidden size, resumable), reproduce.py (`make reproduce`), fair.py (`make fair`'s tuning and
retraining), launch.py (populations as submitit jobs), progress.py (one progress bar)."""

"""From the run folders' CSVs to verdicts, figures and reports; nothing here trains or imports a pipeline:
stats.py (paired comparisons, collapsed runs), claims.py (the paper's claims checked as the presets declare),
figures.py, report.py (REPORT.md, the README's results block), fair.py (the fair comparisons' sections),
speed.py (BENCH.md), compare.py (a rerun against the committed results)."""

"""`make bench`: how fast an epoch trains, four ways, against the machine's real GEMM peak (bench.py)."""

"""Benchmark script: grukit vs torch.nn.GRU on this machine (same as `grukit bench`).

python benchmarks/bench.py                      # full grid, prints the table
python benchmarks/bench.py --quick              # smoke run
python benchmarks/bench.py --json benchmarks/results/cpu-2core.json --plot benchmarks/results/cpu-2core.png
"""

from grukit.cli.main import main

if __name__ == "__main__":
    main(["bench", *__import__("sys").argv[1:]], prog_name="grukit")

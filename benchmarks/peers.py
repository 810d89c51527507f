"""Benchmark script: grukit against the other GRU engines on this machine (same as `grukit bench --peers`).

pip install 'grukit[bench]'                     # ONNX Runtime, OpenVINO, JAX (each optional)
python benchmarks/peers.py                      # full grid, 1 and 2 threads, prints the table
python benchmarks/peers.py --quick              # smoke run
python benchmarks/peers.py --json benchmarks/results/peers.json --plot benchmarks/results/peers.png
"""

from grukit.cli.main import main

if __name__ == "__main__":
    main(["bench", "--peers", *__import__("sys").argv[1:]], prog_name="grukit")

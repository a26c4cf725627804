"""vaultd's benchmark harness: throughput and latency per RPC, with baselines measured in the
same run on the same machine (issue 8). Run it with `python -m bench --help`; bench/RESULTS.md
holds a run's numbers and how to read them."""

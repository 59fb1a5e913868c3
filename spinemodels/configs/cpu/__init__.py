"""The small CPU configs (``pkg:cpu/NAME``): what ``spine demo``, the tests and the benchmarks train."""

"""Everything that runs models and needs torch: the workload runner, NVTX ranges, environment."""

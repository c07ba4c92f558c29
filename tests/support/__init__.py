"""Everything the tests, the proofs and the benchmark start for real: ports, proxies, servers, databases."""

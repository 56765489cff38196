"""The reliability and security suite's toolkit: connector profiles, host processes, raw gRPC, results."""

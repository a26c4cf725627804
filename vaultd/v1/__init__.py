"""Generated gRPC stubs for vaultd.v1 (protos/generate.py); never edit by hand."""

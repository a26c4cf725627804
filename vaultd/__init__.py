"""vaultd: a self-hosted gRPC vault for encrypted objects and data keys."""
